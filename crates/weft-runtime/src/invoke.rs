//! `weft run MANIFEST --invoke 'f(1, 2)'`: calls one function of a workload once, outside
//! HTTP. Loads and plans the components (`plan.rs`), composes them or links them at run time
//! per `spec.compose` (`compose.rs`, `link.rs`), and prints the results in WAVE syntax.

use wasmtime::Engine;
use wasmtime::component::wasm_wave::untyped::UntypedFuncCall;
use wasmtime::component::wasm_wave::wasm::{DisplayFuncResults, WasmFunc};
use wasmtime::component::{Component, Val};
use weft_inspect::{LinkPlan, Provider};
use weft_manifest::Manifest;

use crate::compose::{self, Strategy};
use crate::link::{Wired, base_linker, base_linker_p2, linking_engine, plain_store};
use crate::plan::{load_components, needed_by, plan_manifest, service_from_image};
use crate::run::RunError;
use weft_engine::cache::CompileCache;
use weft_engine::engine::WeftEngine;
use weft_engine::world::find_export;

/// Which component of a workload exports the function a `--invoke` call names: the one that no
/// other component imports from when several do.
pub fn invoke_root(
    engine: &Engine,
    names: &[String],
    components: &[Component],
    plan: &LinkPlan,
    func: &str,
) -> Result<usize, String> {
    let found: Vec<usize> = (0..components.len())
        .filter(|&i| find_export(engine, &components[i], func).is_ok())
        .collect();
    let roots: Vec<usize> = found
        .iter()
        .copied()
        .filter(|&i| !plan.is_consumed(i))
        .collect();
    match (found.as_slice(), roots.as_slice()) {
        ([], _) => Err(format!(
            "no component of the workload exports a function `{func}` (components: {})",
            names.join(", ")
        )),
        ([only], _) | (_, [only]) => Ok(*only),
        _ => Err(format!(
            "`{func}` is exported by several components ({}); keep one of them",
            found
                .iter()
                .map(|&i| format!("`{}`", names[i]))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Calls one function of a workload once (`weft run MANIFEST --invoke 'f(1, 2)'`): loads and
/// plans its components, composes them or links them at run time (per `spec.compose`), and
/// returns the results in WAVE syntax.
pub async fn invoke_workload(
    engine: &WeftEngine,
    cache: Option<&CompileCache>,
    manifest: &Manifest,
    invoke: &str,
) -> Result<String, RunError> {
    let setup = |e: String| RunError::Setup(e);
    let call = UntypedFuncCall::parse(invoke).map_err(|e| {
        setup(format!(
            "cannot parse --invoke `{invoke}`: {e}. Write a call in WAVE syntax, e.g. `add(1, 2)`"
        ))
    })?;
    let loaded = load_components(engine, cache, manifest).map_err(|e| setup(e.to_string()))?;
    let service = service_from_image(manifest).map_err(|e| setup(e.to_string()))?;
    let plan = plan_manifest(manifest, &loaded.plan_components, service.as_ref())
        .map_err(|e| setup(format!("spec.components: {e}")))?;
    let names: Vec<String> = loaded.infos.iter().map(|c| c.name.clone()).collect();
    let e = engine.engine();
    let root = invoke_root(e, &names, &loaded.compiled, &plan, call.name()).map_err(setup)?;
    // The service runs only under `weft up`: a call that needs it cannot be made here.
    for i in needed_by(&plan, root) {
        if let Some(r) = plan.resolutions[i]
            .iter()
            .find(|r| matches!(r.provider, Provider::Service { .. }))
        {
            return Err(setup(format!(
                "component `{}` imports `{}` from the workload's service `{}`, which `weft run \
                 MANIFEST --invoke` does not start (hint: deploy the workload with `weft up` \
                 and call it through a component that serves HTTP)",
                names[i],
                r.import,
                service
                    .as_ref()
                    .map(|s| s.name.as_str())
                    .unwrap_or_default()
            )));
        }
    }
    let strategy = compose::choose(engine, cache, manifest, &loaded, &plan, root)
        .map_err(|e| setup(e.to_string()))?;
    let component = match &strategy {
        Strategy::Composed(c) => c,
        _ => &loaded.compiled[root],
    };
    let (index, func_ty) = find_export(e, component, call.name()).map_err(setup)?;
    let param_types = WasmFunc::params(&func_ty).collect::<Vec<_>>();
    let params: Vec<Val> = call
        .to_wasm_params(&param_types)
        .map_err(|e| setup(format!("invalid arguments in --invoke `{invoke}`: {e}")))?;
    let mut results = vec![Val::Bool(false); func_ty.results().len()];
    if let Strategy::Linked = strategy {
        // Recompile on the linking engine (no concurrency), then link and call with call_async.
        let engine = linking_engine().map_err(|e| setup(format!("{e:#}")))?;
        let e = engine.engine();
        let loaded = load_components(&engine, cache, manifest).map_err(|e| setup(e.to_string()))?;
        let base = base_linker_p2(e).map_err(|e| setup(format!("{e:#}")))?;
        let wired = Wired::new(e, &base, &names, &loaded.compiled, &plan, root)
            .map_err(|e| setup(e.to_string()))?;
        let (index, _) = find_export(e, &loaded.compiled[root], call.name()).map_err(setup)?;
        let mut store = plain_store(e);
        let instance = wired
            .instantiate(&mut store)
            .await
            .map_err(|e| RunError::Trap(format!("{e:?}")))?;
        let func = instance
            .get_func(&mut store, index)
            .ok_or_else(|| setup(format!("export `{}` is not a function", call.name())))?;
        func.call_async(&mut store, &params, &mut results)
            .await
            .map_err(|e| RunError::Trap(format!("{e:?}")))?;
        return Ok(DisplayFuncResults(&results).to_string());
    }
    let base = base_linker(e).map_err(|e| setup(format!("{e:#}")))?;
    let mut store = plain_store(e);
    let instance = base
        .instantiate_async(&mut store, component)
        .await
        .map_err(|e| RunError::Trap(format!("{e:?}")))?;
    let func = instance
        .get_func(&mut store, index)
        .ok_or_else(|| setup(format!("export `{}` is not a function", call.name())))?;
    store
        .run_concurrent(async |store| func.call_concurrent(store, &params, &mut results).await)
        .await
        .and_then(|r| r)
        .map_err(|e| RunError::Trap(format!("{e:?}")))?;
    Ok(DisplayFuncResults(&results).to_string())
}
