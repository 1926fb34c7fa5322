// Link with wasm-component-ld's "proxy" preview 1 adapter so that std only pulls in the
// wasi:cli stdio/clocks/random imports that the proxy world allows (no wasi:filesystem,
// wasi:cli/environment or wasi:cli/exit).
fn main() {
    println!("cargo:rustc-link-arg=--wasi-adapter=proxy");
}
