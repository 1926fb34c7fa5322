//! The admin API: JSON over HTTP on loopback, every call authenticated with the bearer token
//! from `<data dir>/admin-token`.
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | /v1/workloads | list |
//! | GET | /v1/workloads/{name} | one workload |
//! | POST | /v1/workloads | deploy `{"path": ABSOLUTE_MANIFEST_PATH, "manifest": TEXT}` |
//! | DELETE | /v1/workloads/{name} | delete (drains in-flight requests) |
//! | GET | /v1/workloads/{name}/logs?follow=true | log lines, streamed when following |
//! | GET | /v1/requests | the last failed ingress requests (404s and errors), with details |
//! | GET | /v1/requests/{id} | a failed request by its `x-request-id`: status, workload, details |
//!
//! Paths under `/ui` are the dashboard (`ui`), which authenticates with its own session
//! cookie; the `/v1` API accepts only the bearer token.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited, StreamBody};
use serde_json::{Value, json};
use weft_runtime::WasiBody;

use crate::host::{Host, HostError};
use crate::server::{Handler, bytes_response};
use crate::ui::{Dashboard, HostAddrs};

/// Largest accepted request body (a manifest).
pub const MAX_BODY: usize = 4 << 20;

#[derive(Clone)]
pub struct AdminApi {
    host: Arc<Host>,
    token: Arc<str>,
    dashboard: Arc<Dashboard>,
}

impl AdminApi {
    pub fn new(host: Arc<Host>, token: String) -> Self {
        Self::with_addrs(host, token, HostAddrs::default())
    }

    /// [`AdminApi::new`], telling the dashboard where the host listens.
    pub fn with_addrs(host: Arc<Host>, token: String, addrs: HostAddrs) -> Self {
        let token: Arc<str> = token.into();
        Self {
            dashboard: Arc::new(Dashboard::new(host.clone(), token.clone(), addrs)),
            host,
            token,
        }
    }
}

fn json_response(status: StatusCode, value: &Value) -> http::Response<WasiBody> {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    bytes_response(status, "application/json", text)
}

fn error(status: StatusCode, message: impl Into<String>) -> http::Response<WasiBody> {
    json_response(status, &json!({ "error": message.into() }))
}

fn host_error(e: HostError) -> http::Response<WasiBody> {
    error(e.status(), e.to_string())
}

impl Handler for AdminApi {
    async fn handle(&self, request: http::Request<WasiBody>) -> http::Response<WasiBody> {
        let path = request.uri().path();
        if path == "/ui" || path.starts_with("/ui/") {
            return self.dashboard.handle(request).await;
        }
        if !crate::token::bearer_ok(
            request.headers().get(http::header::AUTHORIZATION),
            &self.token,
        ) {
            return error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (the token is in the host's data dir: admin-token)",
            );
        }
        let method = request.method().clone();
        let path = request.uri().path().trim_end_matches('/').to_string();
        let query = request.uri().query().unwrap_or("").to_string();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match (method, segments.as_slice()) {
            (Method::GET, ["v1", "workloads"]) => json_response(StatusCode::OK, &self.host.list()),
            (Method::GET, ["v1", "workloads", name]) => match self.host.get(name) {
                Ok(v) => json_response(StatusCode::OK, &v),
                Err(e) => host_error(e),
            },
            (Method::DELETE, ["v1", "workloads", name]) => match self.host.delete(name) {
                Ok(v) => json_response(StatusCode::OK, &v),
                Err(e) => host_error(e),
            },
            (Method::POST, ["v1", "workloads"]) => self.deploy(request).await,
            (Method::GET, ["v1", "workloads", name, "logs"]) => {
                let follow = query
                    .split('&')
                    .any(|kv| kv == "follow=true" || kv == "follow=1" || kv == "follow");
                self.logs(name, follow)
            }
            (Method::GET, ["v1", "requests"]) => json_response(
                StatusCode::OK,
                &json!({ "requests": self.host.failures().recent(crate::front::FAILURES_KEPT) }),
            ),
            (Method::GET, ["v1", "requests", id]) => {
                let found = self.host.failures().get(id);
                if found.is_empty() {
                    error(
                        StatusCode::NOT_FOUND,
                        format!(
                            "no failed request with id `{id}` among the last {} failures",
                            crate::front::FAILURES_KEPT
                        ),
                    )
                } else {
                    json_response(StatusCode::OK, &json!({ "requests": found }))
                }
            }
            (_, ["v1", "workloads" | "requests", ..]) => {
                error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
        }
    }
}

impl AdminApi {
    async fn deploy(&self, request: http::Request<WasiBody>) -> http::Response<WasiBody> {
        let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("could not read the request body (at most {MAX_BODY} bytes): {e}"),
                );
            }
        };
        let parsed: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")),
        };
        let (Some(path), Some(text)) = (
            parsed.get("path").and_then(Value::as_str),
            parsed.get("manifest").and_then(Value::as_str),
        ) else {
            return error(
                StatusCode::BAD_REQUEST,
                "expected {\"path\": \"/abs/manifest.yaml\", \"manifest\": \"TEXT\"}",
            );
        };
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return error(
                StatusCode::BAD_REQUEST,
                "path must be absolute (images resolve relative to it)",
            );
        }
        match self.host.apply(&path, text).await {
            Ok(list) => json_response(StatusCode::OK, &json!({ "workloads": list })),
            Err(e) => host_error(e),
        }
    }

    fn logs(&self, name: &str, follow: bool) -> http::Response<WasiBody> {
        let sink = match self.host.logs(name) {
            Ok(s) => s,
            Err(e) => return host_error(e),
        };
        // Subscribe before the snapshot so no line falls between them (a line may repeat).
        let live = sink.subscribe();
        let mut text = String::new();
        for line in sink.snapshot() {
            text.push_str(&line.render());
            text.push('\n');
        }
        if !follow {
            return bytes_response(StatusCode::OK, "text/plain; charset=utf-8", text);
        }
        let head = futures::stream::once(async move { Bytes::from(text) });
        let tail = futures::stream::unfold(live, |mut rx| async move {
            let chunk = match rx.recv().await {
                Ok(line) => {
                    let mut s = line.render();
                    s.push('\n');
                    s
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    format!("... {n} lines dropped (reader too slow)\n")
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            };
            Some((Bytes::from(chunk), rx))
        });
        let stream = head
            .chain(tail)
            .map(|b| Ok::<_, weft_runtime::http::BodyError>(hyper::body::Frame::data(b)));
        let mut response = http::Response::new(StreamBody::new(stream).boxed_unsync());
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}
