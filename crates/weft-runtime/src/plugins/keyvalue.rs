//! `wasi:keyvalue` (0.2.0-draft: store, atomics, batch) with `memory` and `redb` backends.
//! (Being implemented: see docs/plugins.md.)

use std::sync::Arc;

use super::{BindContext, Binding, HostPlugin, PluginError};

#[derive(Default)]
pub struct KeyValuePlugin;

/// Per-instance state.
pub struct Instance;

impl HostPlugin for KeyValuePlugin {
    fn package(&self) -> &'static str {
        "wasi:keyvalue"
    }
    fn interfaces(&self) -> &'static [&'static str] {
        &[
            "wasi:keyvalue/store",
            "wasi:keyvalue/atomics",
            "wasi:keyvalue/batch",
        ]
    }
    fn bind(&self, ctx: &BindContext<'_>) -> Result<Arc<dyn Binding>, PluginError> {
        Err(PluginError {
            field: format!("spec.hostInterfaces[{}]", ctx.entry_index.unwrap_or(0)),
            message: "wasi:keyvalue is not available yet".into(),
            hint: "remove the entry".into(),
        })
    }
}
