//! The config blob of a Wasm artifact (`application/vnd.wasm.config.v0+json`): what `wkg` and
//! `wash` write, read from the component itself with `weft-inspect`.

use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WasmConfig {
    created: String,
    architecture: &'static str,
    os: &'static str,
    layer_digests: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    component: Option<ComponentInfo>,
}

#[derive(Serialize)]
struct ComponentInfo {
    exports: Vec<String>,
    imports: Vec<String>,
    target: Option<String>,
}

/// The config JSON for `wasm`: `os: wasip2` with the component's imports and exports, or
/// `os: wasip1` for a core module.
pub fn wasm_config(wasm: &[u8]) -> Result<Vec<u8>, String> {
    let info = weft_inspect::inspect(wasm).map_err(|e| format!("cannot read the Wasm: {e}"))?;
    let component = matches!(info.kind, weft_inspect::WasmKind::Component);
    let config = WasmConfig {
        created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        architecture: "wasm",
        os: if component { "wasip2" } else { "wasip1" },
        layer_digests: vec![crate::digest_of(wasm).to_string()],
        component: component.then(|| ComponentInfo {
            exports: info.exports.iter().map(|i| i.name.clone()).collect(),
            imports: info.imports.iter().map(|i| i.name.clone()).collect(),
            target: None,
        }),
    };
    serde_json::to_vec(&config).map_err(|e| format!("cannot encode the config: {e}"))
}
