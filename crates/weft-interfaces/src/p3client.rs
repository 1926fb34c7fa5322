//! The WASI 0.3 outgoing-HTTP override: `wasi:http/client@0.3.0#send`, shadowed with a wrapper
//! around wasmtime-wasi-http's own `send` that fixes two conformance gaps of wasmtime-wasi-http
//! 48 before the request reaches it (docs/conformance.md):
//!
//! - a request whose `path-with-query` is `none` is sent as `/` (WASI says an empty path is
//!   the root; wasmtime-wasi-http builds no URI from an authority without a path and fails
//!   with `HTTP-request-URI-invalid`);
//! - a request the allow-list refuses is refused here, before wasmtime-wasi-http takes it, by
//!   consuming its body with a failed transmission result: the future `request.new` gave the
//!   guest then reports `HTTP-request-denied` (wasmtime-wasi-http reports success for a
//!   request whose `send` failed before anything was transmitted).
//!
//! - a relative `path-with-query` (`a/b/c`, `../..`; allowed since wasi-http issue 178) is
//!   kept: wasmtime-wasi-http stores the value as an `http::uri::PathAndQuery`, which must
//!   start with `/` or `?`, so `[method]request.set-path-with-query` and `get-path-with-query`
//!   are shadowed (`weft_policy::path_query`): a relative reference is
//!   stored behind a marker only this process knows and read back without it; `send` refuses
//!   such a request with `HTTP-request-URI-invalid` (an origin-form request target must be
//!   absolute, and there is no base to resolve it against).
//!
//! The allow-list is still enforced where it always was (`state::OutgoingHttp::send_request`
//! and the connector's check of every resolved address); this is an earlier, cheaper answer
//! for the by-name refusal, not a replacement.

use http::uri::{PathAndQuery, Scheme};
use wasmtime::AsContextMut;
use wasmtime::component::{Access, Accessor, FutureReader, Linker, Resource};
use wasmtime_wasi_http::p3::Request;
use wasmtime_wasi_http::p3::bindings::http::client::HostWithStore as ClientHostWithStore;
use wasmtime_wasi_http::p3::bindings::http::types::{ErrorCode, HostRequestWithStore};
use wasmtime_wasi_http::{WasiHttp, WasiHttpView};
use weft_policy::path_query::{is_relative, parse_path_with_query, path_with_query_text};

use crate::outbound::OutgoingHttp;

/// The `wasi:http` package version of wasmtime-wasi-http 48's WASI 0.3 implementation.
const P3_HTTP: &str = "0.3.0";

/// Store data that sends outgoing HTTP through Weft's allow-list.
pub trait HasOutgoing: WasiHttpView + 'static {
    fn outgoing(&self) -> &OutgoingHttp;
}

/// What to do with a request before wasmtime-wasi-http sends it.
#[derive(Debug, PartialEq, Eq)]
pub enum Precheck {
    /// Hand it to wasmtime-wasi-http.
    Send,
    /// The allow-list refuses its scheme and authority.
    Deny,
    /// Its path is a relative reference: nothing can be sent.
    RelativePath,
}

/// Gives a request without a path the root path, and checks its scheme and authority against
/// the allow-list (a request without an authority, or with a scheme other than http/https, is
/// left to wasmtime-wasi-http, which fails it with the code WASI names for that).
pub fn precheck(request: &mut Request, outgoing: &OutgoingHttp) -> Precheck {
    match &request.path_with_query {
        None => request.path_with_query = Some(PathAndQuery::from_static("/")),
        Some(pq) if is_relative(pq) => return Precheck::RelativePath,
        Some(_) => {}
    }
    let Some(authority) = request.authority.clone() else {
        return Precheck::Send;
    };
    // wasmtime-wasi-http's default scheme is https.
    let scheme = request.scheme.clone().unwrap_or(Scheme::HTTPS);
    if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
        return Precheck::Send;
    }
    let uri = http::Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query("/")
        .build();
    match uri {
        Ok(uri) if outgoing.admits(&uri) => Precheck::Send,
        Ok(uri) => {
            tracing::warn!(
                %uri,
                "outgoing HTTP request denied: no allowed host matches (grant it with --allow-host HOST:PORT)"
            );
            outgoing.report_denied(&uri);
            Precheck::Deny
        }
        Err(_) => Precheck::Send,
    }
}

/// Shadows `wasi:http/client@0.3.0#send` (see the module docs). Call after
/// `wasmtime_wasi_http::p3::add_to_linker`.
pub fn add_p3_client_override<T: HasOutgoing>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut client = linker.instance(&format!("wasi:http/client@{P3_HTTP}"))?;
    client.func_wrap_concurrent(
        "send",
        |accessor: &Accessor<T>, (request,): (Resource<Request>,)| {
            Box::pin(async move {
                let check = accessor.with(|mut access| -> wasmtime::Result<Precheck> {
                    let data = access.data_mut();
                    let outgoing = data.outgoing().clone();
                    let req = data.http().table.get_mut(&request)?;
                    Ok(precheck(req, &outgoing))
                })?;
                let http = accessor.with_getter::<WasiHttp>(T::http);
                let refusal = match check {
                    Precheck::Send => None,
                    Precheck::Deny => Some(ErrorCode::HttpRequestDenied),
                    Precheck::RelativePath => Some(ErrorCode::HttpRequestUriInvalid),
                };
                if let Some(code) = refusal {
                    let failed_code = code.clone();
                    http.with(|mut access| -> wasmtime::Result<()> {
                        let failed = FutureReader::new(&mut access, async move {
                            Ok::<_, wasmtime::Error>(Err::<(), _>(failed_code))
                        })?;
                        let getter = access.getter();
                        let (mut body, mut trailers) =
                            <WasiHttp as HostRequestWithStore<T>>::consume_body(
                                Access::<T, WasiHttp>::new(access.as_context_mut(), getter),
                                request,
                                failed,
                            )?;
                        body.close(&mut access)?;
                        trailers.close(&mut access)?;
                        Ok(())
                    })?;
                    return Ok((Err(code),));
                }
                match <WasiHttp as ClientHostWithStore<T>>::send(&http, request).await {
                    Ok(response) => Ok((Ok(response),)),
                    Err(err) => Ok((Err(err.downcast()?),)),
                }
            })
        },
    )?;
    let mut types = linker.instance(&format!("wasi:http/types@{P3_HTTP}"))?;
    types.func_wrap(
        "[method]request.set-path-with-query",
        |mut store: wasmtime::StoreContextMut<'_, T>,
         (request, value): (Resource<Request>, Option<String>)| {
            let req = store.data_mut().http().table.get_mut(&request)?;
            let Some(value) = value else {
                req.path_with_query = None;
                return Ok((Ok(()),));
            };
            Ok((match parse_path_with_query(&value) {
                Some(pq) => {
                    req.path_with_query = Some(pq);
                    Ok(())
                }
                None => Err(()),
            },))
        },
    )?;
    types.func_wrap(
        "[method]request.get-path-with-query",
        |mut store: wasmtime::StoreContextMut<'_, T>, (request,): (Resource<Request>,)| {
            let req = store.data_mut().http().table.get(&request)?;
            Ok((req
                .path_with_query
                .as_ref()
                .map(|pq| path_with_query_text(pq).to_string()),))
        },
    )?;
    Ok(())
}
