//! `wasi:config/store`: each component reads its own `localResources.config`, nothing else.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::Linker;
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};

use super::{BindContext, Binding, HostPlugin, PluginError, PluginInstances, PluginView};

pub struct ConfigPlugin;

/// Per-instance state: the component's variables (shared, immutable).
pub type Instance = Arc<WasiConfigVariables>;

struct Bound {
    per_component: HashMap<String, Arc<WasiConfigVariables>>,
    empty: Arc<WasiConfigVariables>,
}

impl<T: PluginView + 'static> HostPlugin<T> for ConfigPlugin {
    fn package(&self) -> &'static str {
        "wasi:config"
    }
    fn interfaces(&self) -> &'static [&'static str] {
        &["wasi:config/store"]
    }
    fn bind(&self, ctx: &BindContext<'_>) -> Result<Arc<dyn Binding<T>>, PluginError> {
        let mut per_component = HashMap::new();
        let spec = &ctx.manifest.spec;
        let all = spec
            .components
            .iter()
            .map(|c| (&c.name, &c.local_resources))
            .chain(spec.service.iter().map(|s| (&s.name, &s.local_resources)));
        for (name, res) in all {
            let vars: WasiConfigVariables = res
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            per_component.insert(name.clone(), Arc::new(vars));
        }
        Ok(Arc::new(Bound {
            per_component,
            empty: Arc::new(WasiConfigVariables::new()),
        }))
    }
}

impl<T: PluginView + 'static> Binding<T> for Bound {
    fn add_to_linker(&self, linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wasmtime_wasi_config::add_to_linker(linker, |h: &mut T| {
            match &h.plugins().instances.config {
                Some(vars) => WasiConfig::from(&**vars),
                None => WasiConfig::from(&*EMPTY),
            }
        })
    }
    fn instance(&self, component: &str, instances: &mut PluginInstances) {
        instances.config = Some(
            self.per_component
                .get(component)
                .cloned()
                .unwrap_or_else(|| self.empty.clone()),
        );
    }
}

static EMPTY: std::sync::LazyLock<WasiConfigVariables> =
    std::sync::LazyLock::new(WasiConfigVariables::new);
