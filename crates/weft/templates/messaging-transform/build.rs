// Link with wasm-component-ld's "proxy" preview 1 adapter: std then imports only what the
// wasi:http/proxy world allows (stdio, clocks, random), not wasi:filesystem,
// wasi:cli/environment or wasi:cli/exit: the component needs no grant beyond
// wasmcloud:messaging.
fn main() {
    println!("cargo:rustc-link-arg=--wasi-adapter=proxy");
    println!("cargo:rerun-if-changed=wit");
}
