//! Calls from a workload's components into its long-lived WASI 0.3 service (see
//! docs/service.md, "The service as a provider").
//!
//! A component lives in its own store (one per request); the service lives in its own
//! long-lived store, driven by `run_concurrent`. wasmtime 48 has no call from one store into
//! another, so each function a component imports from the service is a host function
//! (`LinkerInstance::func_new_async`) that sends the call, its arguments as `Val`s, over a
//! channel to the service's run loop and awaits the reply: the caller's store waits, like any
//! async host call. The run loop runs each call as a concurrent task of the service's instance
//! (`Func::call_concurrent`), next to `run` and the front door's requests.
//!
//! Only plain data crosses: numbers, strings, lists, records, tuples, variants, enums,
//! options, results and flags. Resources, streams, futures and error contexts belong to one
//! store, so interfaces whose functions carry them are refused at deploy ([`check_plain`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, oneshot};
use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::{Component, ComponentExportIndex, Linker, LinkerInstance, Val};
use wasmtime::{Engine, component::ResourceType};

/// Ids of calls in the service's deadline table: apart from the front door's request ids.
const CALL_ID_BIT: u64 = 1 << 63;

/// Why a call into the service failed. The component sees it as a trap of its host call.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the workload's service `{service}` is not serving calls: {why}")]
    Unavailable { service: String, why: String },
    #[error(
        "the workload's service `{service}` has {limit} calls in its instance \
         (spec.service.maxConcurrency) and no slot freed within {waited:?}"
    )]
    Overloaded {
        service: String,
        limit: usize,
        waited: Duration,
    },
    #[error("the workload's service `{service}` did not answer `{func}` within {timeout:?}")]
    Timeout {
        service: String,
        func: String,
        timeout: Duration,
    },
    #[error("the workload's service `{service}` failed in `{func}`: {message}")]
    Failed {
        service: String,
        func: String,
        message: String,
    },
}

/// Why an import cannot be satisfied by the service. Messages name the component, the
/// interface, the function and the type.
#[derive(Debug, thiserror::Error)]
pub enum ServiceLinkError {
    #[error(
        "component `{component}` imports `{import}` from the workload's service `{service}`, \
         but {problem}; only plain data (numbers, strings, lists, records, variants, enums, \
         options, results, flags) crosses into the service's instance, which lives in a store \
         of its own (hint: keep handles inside the service and pass ids or data, or move the \
         provider into a component)"
    )]
    NotPlain {
        component: String,
        import: String,
        service: String,
        problem: String,
    },
    #[error(
        "component `{component}` imports `{import}` from the workload's service `{service}`, \
         which is a WASI 0.2 command: its `run` holds its instance for as long as it runs, so \
         nothing else can call into it (hint: build the service for WASI 0.3, exporting \
         wasi:cli/run@0.3.0 next to `{export}`, e.g. with wit-bindgen's async `run`)"
    )]
    P2Service {
        component: String,
        import: String,
        service: String,
        export: String,
    },
    #[error(
        "component `{component}` imports `{import}` from the workload's service `{service}`, \
         which does not export {what}"
    )]
    Missing {
        component: String,
        import: String,
        service: String,
        what: String,
    },
    #[error("cannot link component `{component}` to the workload's service: {message}")]
    Wasmtime { component: String, message: String },
}

/// One call on its way into the service's instance.
pub(crate) struct ServiceCall {
    pub id: u64,
    pub slot: usize,
    pub args: Vec<Val>,
    pub deadline: Instant,
    pub reply: oneshot::Sender<Result<Vec<Val>, String>>,
}

/// The functions the service offers to components, and the door into its current instance.
pub struct ServiceCalls {
    service: String,
    /// (export, function) per slot; the function is empty for a top-level function export.
    funcs: Vec<(String, String)>,
    /// Where each slot's function is in the service's component.
    indices: Vec<ComponentExportIndex>,
    /// The current attempt's call channel; `None` while the service is (re)starting, failed
    /// or stopped.
    door: Mutex<Option<mpsc::UnboundedSender<ServiceCall>>>,
    /// Why the door is closed (the service's status), for errors.
    closed_why: Mutex<String>,
    /// Shared with the front door: `maxConcurrency` tasks in the instance at once.
    in_flight: Arc<Semaphore>,
    limit: usize,
    queue_timeout: Duration,
    next_id: AtomicU64,
}

impl ServiceCalls {
    /// Every function of `component`'s exports outside the `wasi` namespace.
    pub(crate) fn new(
        engine: &Engine,
        service: &str,
        component: &Component,
        in_flight: Arc<Semaphore>,
        limit: usize,
        queue_timeout: Duration,
    ) -> ServiceCalls {
        let mut funcs = Vec::new();
        let mut indices = Vec::new();
        for (name, item) in component.component_type().exports(engine) {
            if name.starts_with("wasi:") {
                continue;
            }
            let Some(outer) = component.get_export_index(None, name) else {
                continue;
            };
            match item.ty {
                ComponentItem::ComponentFunc(_) => {
                    funcs.push((name.to_string(), String::new()));
                    indices.push(outer);
                }
                ComponentItem::ComponentInstance(inst) => {
                    for (fname, fitem) in inst.exports(engine) {
                        if let ComponentItem::ComponentFunc(_) = fitem.ty
                            && let Some(idx) = component.get_export_index(Some(&outer), fname)
                        {
                            funcs.push((name.to_string(), fname.to_string()));
                            indices.push(idx);
                        }
                    }
                }
                _ => {}
            }
        }
        ServiceCalls {
            service: service.to_string(),
            funcs,
            indices,
            door: Mutex::new(None),
            closed_why: Mutex::new("it is starting".into()),
            in_flight,
            limit: limit.max(1),
            queue_timeout,
            next_id: AtomicU64::new(0),
        }
    }

    /// The slot of function `func` of export `export` (empty `func`: `export` is a function).
    pub fn slot(&self, export: &str, func: &str) -> Option<usize> {
        self.funcs
            .iter()
            .position(|(e, f)| e == export && f == func)
    }

    /// Where each slot's function is in the service's component.
    pub(crate) fn indices(&self) -> &[ComponentExportIndex] {
        &self.indices
    }

    fn describe(&self, slot: usize) -> String {
        match self.funcs.get(slot) {
            Some((e, f)) if f.is_empty() => e.clone(),
            Some((e, f)) => format!("{e}#{f}"),
            None => format!("#{slot}"),
        }
    }

    pub(crate) fn open(&self, door: mpsc::UnboundedSender<ServiceCall>) {
        *self.door.lock().unwrap_or_else(|e| e.into_inner()) = Some(door);
    }

    /// Closes the door; calls fail at once with `why` until it opens again.
    pub(crate) fn close(&self, why: String) {
        self.door.lock().unwrap_or_else(|e| e.into_inner()).take();
        *self.closed_why.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    fn unavailable(&self) -> CallError {
        CallError::Unavailable {
            service: self.service.clone(),
            why: self
                .closed_why
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// Calls function `slot` of the service with `args`; waits at most `timeout` in all (for a
    /// concurrency slot, then for the answer). Fails at once while the service is not running.
    pub async fn call(
        &self,
        slot: usize,
        args: Vec<Val>,
        timeout: Duration,
    ) -> Result<Vec<Val>, CallError> {
        let started = Instant::now();
        let door = self.door.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(door) = door else {
            return Err(self.unavailable());
        };
        let wait = self.queue_timeout.min(timeout);
        let permit = match self.in_flight.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(self.unavailable()),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                match tokio::time::timeout(wait, self.in_flight.clone().acquire_owned()).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return Err(self.unavailable()),
                    Err(_) => {
                        return Err(CallError::Overloaded {
                            service: self.service.clone(),
                            limit: self.limit,
                            waited: wait,
                        });
                    }
                }
            }
        };
        let deadline = started.checked_add(timeout).unwrap_or(started + wait);
        let (reply, answer) = oneshot::channel();
        let id = CALL_ID_BIT | self.next_id.fetch_add(1, Ordering::Relaxed);
        let call = ServiceCall {
            id,
            slot,
            args,
            deadline,
            reply,
        };
        if door.send(call).is_err() {
            return Err(self.unavailable());
        }
        let left = timeout.saturating_sub(started.elapsed());
        let answer = tokio::time::timeout(left, answer).await;
        drop(permit);
        match answer {
            Err(_) => Err(CallError::Timeout {
                service: self.service.clone(),
                func: self.describe(slot),
                timeout,
            }),
            Ok(Err(_)) => Err(CallError::Failed {
                service: self.service.clone(),
                func: self.describe(slot),
                message: "its instance stopped before it answered; it is restarting".into(),
            }),
            Ok(Ok(Err(message))) => Err(CallError::Failed {
                service: self.service.clone(),
                func: self.describe(slot),
                message,
            }),
            Ok(Ok(Ok(values))) => Ok(values),
        }
    }
}

/// What one component imports from the service: (import name, service export) pairs, the
/// calls' door and each call's deadline.
#[derive(Clone)]
pub struct ServiceImports {
    pub calls: Arc<ServiceCalls>,
    pub imports: Vec<(String, String)>,
    pub timeout: Duration,
    /// Where a failed call is reported, under the importing component's name (a P2 HTTP
    /// handler's trap reaches its client only as a 500).
    pub logs: Option<(weft_engine::logs::LogSink, String)>,
}

impl ServiceImports {
    /// Defines, in `linker`, a forwarder for every function `component` imports through
    /// `self.imports`. Imports the component does not have are skipped (a composed component
    /// keeps only those its parts left open).
    pub fn add_to_linker<T: Send + 'static>(
        &self,
        engine: &Engine,
        linker: &mut Linker<T>,
        component: &Component,
        name: &str,
    ) -> Result<(), ServiceLinkError> {
        let ty = component.component_type();
        let wasm = |e: wasmtime::Error| ServiceLinkError::Wasmtime {
            component: name.to_string(),
            message: format!("{e:#}"),
        };
        for (import, export) in &self.imports {
            let Some(item) = ty.get_import(engine, import) else {
                continue;
            };
            let missing = |what: String| ServiceLinkError::Missing {
                component: name.to_string(),
                import: import.clone(),
                service: self.calls.service.clone(),
                what,
            };
            match item.ty {
                ComponentItem::ComponentFunc(f) => {
                    let slot = self
                        .calls
                        .slot(export, "")
                        .ok_or_else(|| missing(format!("a function `{export}`")))?;
                    self.forward(&mut linker.root(), import, slot, f.async_())
                        .map_err(wasm)?;
                }
                ComponentItem::ComponentInstance(inst_ty) => {
                    let mut inst = linker.instance(import).map_err(wasm)?;
                    for (fname, fitem) in inst_ty.exports(engine) {
                        if let ComponentItem::ComponentFunc(f) = fitem.ty {
                            let slot = self.calls.slot(export, fname).ok_or_else(|| {
                                missing(format!("a function `{fname}` in `{export}`"))
                            })?;
                            self.forward(&mut inst, fname, slot, f.async_())
                                .map_err(wasm)?;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Defines `name` as a forwarder to the service's function `slot`: a blocking-style host
    /// function for a plain WIT function (the caller's task waits), a concurrent one for an
    /// `async func` (the caller's other tasks go on meanwhile).
    fn forward<T: Send + 'static>(
        &self,
        inst: &mut LinkerInstance<'_, T>,
        name: &str,
        slot: usize,
        is_async: bool,
    ) -> wasmtime::Result<()> {
        let call = Forward {
            calls: Arc::clone(&self.calls),
            slot,
            timeout: self.timeout,
            logs: self.logs.clone(),
        };
        if is_async {
            inst.func_new_concurrent(name, move |_accessor, _ty, params, results| {
                let call = call.clone();
                Box::pin(async move { call.run(params, results).await })
            })
        } else {
            inst.func_new_async(name, move |_store, _ty, params, results| {
                let call = call.clone();
                Box::new(async move { call.run(params, results).await })
            })
        }
    }
}

/// One forwarder's target.
#[derive(Clone)]
struct Forward {
    calls: Arc<ServiceCalls>,
    slot: usize,
    timeout: Duration,
    logs: Option<(weft_engine::logs::LogSink, String)>,
}

impl Forward {
    async fn run(&self, params: &[Val], results: &mut [Val]) -> wasmtime::Result<()> {
        let values = match self
            .calls
            .call(self.slot, params.to_vec(), self.timeout)
            .await
        {
            Ok(values) => values,
            Err(e) => {
                tracing::warn!(error = %e, "call into the workload's service failed");
                if let Some((logs, component)) = &self.logs {
                    logs.push(component, "error", &e.to_string());
                }
                return Err(wasmtime::format_err!("{e}"));
            }
        };
        if values.len() != results.len() {
            wasmtime::bail!(
                "the workload's service returned {} values where {} were expected",
                values.len(),
                results.len()
            );
        }
        for (slot, value) in results.iter_mut().zip(values) {
            *slot = value;
        }
        Ok(())
    }
}

/// Refuses an import from the service whose functions could carry anything but plain data:
/// a resource type in the interface, or a function whose parameters or results hold an
/// `own`/`borrow` handle, a `stream`, a `future` or an `error-context`.
pub fn check_plain(
    engine: &Engine,
    component: &Component,
    name: &str,
    import: &str,
    service: &str,
) -> Result<(), ServiceLinkError> {
    let not_plain = |problem: String| ServiceLinkError::NotPlain {
        component: name.to_string(),
        import: import.to_string(),
        service: service.to_string(),
        problem,
    };
    let ty = component.component_type();
    let Some(item) = ty.get_import(engine, import) else {
        return Ok(());
    };
    match item.ty {
        ComponentItem::ComponentFunc(f) => {
            check_func(&f, &[]).map_err(|t| not_plain(format!("function `{import}` {t}")))
        }
        ComponentItem::ComponentInstance(inst) => {
            let resources: Vec<(String, ResourceType)> = inst
                .exports(engine)
                .filter_map(|(n, i)| match i.ty {
                    ComponentItem::Resource(r) => Some((n.to_string(), r)),
                    _ => None,
                })
                .collect();
            for (fname, fitem) in inst.exports(engine) {
                if let ComponentItem::ComponentFunc(f) = fitem.ty {
                    check_func(&f, &resources)
                        .map_err(|t| not_plain(format!("its function `{fname}` {t}")))?;
                }
            }
            if let Some((r, _)) = resources.first() {
                return Err(not_plain(format!("it declares the resource type `{r}`")));
            }
            Ok(())
        }
        ComponentItem::Type(_) => Ok(()),
        _ => Err(not_plain("it is not an interface of functions".into())),
    }
}

/// `Err(what)` when a parameter or result of `f` is not plain data.
fn check_func(f: &ComponentFunc, resources: &[(String, ResourceType)]) -> Result<(), String> {
    for (pname, t) in f.params() {
        if let Some(what) = not_plain(&t, resources) {
            return Err(format!("takes `{pname}: {what}`"));
        }
    }
    for t in f.results() {
        if let Some(what) = not_plain(&t, resources) {
            return Err(format!("returns `{what}`"));
        }
    }
    Ok(())
}

/// The first part of `ty` that is not plain data, spelled as in WIT.
fn not_plain(ty: &Type, resources: &[(String, ResourceType)]) -> Option<String> {
    let named = |r: &ResourceType| {
        resources
            .iter()
            .find(|(_, t)| t == r)
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| "resource".into())
    };
    let inner = |t: &Type| not_plain(t, resources);
    match ty {
        Type::Own(r) => Some(format!("own<{}>", named(r))),
        Type::Borrow(r) => Some(format!("borrow<{}>", named(r))),
        Type::Future(_) => Some("future".into()),
        Type::Stream(_) => Some("stream".into()),
        Type::ErrorContext => Some("error-context".into()),
        Type::List(l) => inner(&l.ty()).map(|t| format!("list<{t}>")),
        Type::FixedLengthList(l) => inner(&l.ty()).map(|t| format!("list<{t}>")),
        Type::Map(m) => inner(&m.key()).or_else(|| inner(&m.value())),
        Type::Record(r) => r.fields().find_map(|f| inner(&f.ty)),
        Type::Tuple(t) => t.types().find_map(|t| inner(&t)),
        Type::Variant(v) => v.cases().find_map(|c| c.ty.and_then(|t| inner(&t))),
        Type::Option(o) => inner(&o.ty()).map(|t| format!("option<{t}>")),
        Type::Result(r) => r
            .ok()
            .and_then(|t| inner(&t))
            .or_else(|| r.err().and_then(|t| inner(&t))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks a component importing `x:y/z@1.0.0` with the instance type `body`.
    fn check(body: &str) -> Result<(), String> {
        let engine = weft_engine::engine::WeftEngine::new(&Default::default()).expect("engine");
        let wat = format!(r#"(component (import "x:y/z@1.0.0" (instance {body})))"#);
        let bytes = wat::parse_str(&wat).expect("wat");
        let component = Component::new(engine.engine(), &bytes).expect("component");
        check_plain(engine.engine(), &component, "c", "x:y/z@1.0.0", "svc").map_err(|e| {
            let text = e.to_string();
            let prefix =
                "component `c` imports `x:y/z@1.0.0` from the workload's service `svc`, but ";
            assert!(text.starts_with(prefix), "{text}");
            text[prefix.len()..]
                .split(';')
                .next()
                .unwrap_or_default()
                .to_string()
        })
    }

    #[test]
    fn plain_data_crosses() {
        assert_eq!(
            check(
                r#"(export "f" (func (param "a" string) (param "b" (list (tuple u8 s64)))
                     (result (result (option (list string)) (error char)))))
                   (export "g" (func))"#
            ),
            Ok(())
        );
    }

    #[test]
    fn handles_streams_and_futures_are_named() {
        assert_eq!(
            check(r#"(export "read" (func (param "s" (stream u8))))"#),
            Err("its function `read` takes `s: stream`".into())
        );
        assert_eq!(
            check(r#"(export "later" (func (result (future u32))))"#),
            Err("its function `later` returns `future`".into())
        );
        // (error-context is not enabled in Weft's engines, so no component can carry one.)
        assert_eq!(
            check(r#"(export "feed" (func (param "e" (option (list (stream u8))))))"#),
            Err("its function `feed` takes `e: option<list<stream>>`".into())
        );
        assert_eq!(
            check(
                r#"(export "cell" (type (sub resource)))
                   (export "sum" (func (param "cs" (list (borrow 0))) (result u32)))"#
            ),
            Err("its function `sum` takes `cs: list<borrow<cell>>`".into())
        );
        // A resource type alone (no function uses it) is still refused.
        assert_eq!(
            check(r#"(export "cell" (type (sub resource))) (export "f" (func))"#),
            Err("it declares the resource type `cell`".into())
        );
    }
}
