// Link with wasm-component-ld's "proxy" preview 1 adapter: std then imports only what the
// wasi:http/proxy world allows (stdio, clocks, random), not wasi:filesystem,
// wasi:cli/environment or wasi:cli/exit, so the component needs no grant beyond wasi:http.
fn main() {
    println!("cargo:rustc-link-arg=--wasi-adapter=proxy");
}
