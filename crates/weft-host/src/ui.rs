//! The dashboard at `/ui` on the admin address: static assets compiled into the binary, a
//! login that trades the admin token (in a POST body, never a URL) for a session cookie
//! (`HttpOnly; SameSite=Strict`), and two read-only JSON endpoints the page polls. See
//! docs/observability.md ("The dashboard").
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | /ui, /ui/app.js, /ui/style.css | the page (no session needed: it shows the login form) |
//! | POST | /ui/login | `{"token": "..."}` (JSON only) -> 204 and the session cookie, or 401 |
//! | POST | /ui/logout | ends the session |
//! | GET | /ui/api/overview | host, workloads with counters, recent deploys (session needed) |
//! | GET | /ui/api/logs?workload=NAME | recent log lines of one workload, or all (session needed) |

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};
use weft_runtime::WasiBody;
use weft_stats::WorkloadStats;

use crate::host::Host;
use crate::server::bytes_response;

const INDEX_HTML: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const STYLE_CSS: &str = include_str!("../ui/style.css");

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "weft_session";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; logging in past it drops the oldest.
pub const MAX_SESSIONS: usize = 256;
/// Log lines returned by `/ui/api/logs`.
pub const LOG_LINES: usize = 200;
/// Largest accepted login body.
const MAX_LOGIN_BODY: usize = 4096;
/// Delay before answering a wrong token.
const WRONG_TOKEN_DELAY: Duration = Duration::from_millis(300);

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Where this host listens, shown on the dashboard.
#[derive(Debug, Clone, Default)]
pub struct HostAddrs {
    pub ingress: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    pub otlp_endpoint: Option<String>,
}

/// The dashboard's state: the token to check logins against, and the live sessions.
pub struct Dashboard {
    host: Arc<Host>,
    token: Arc<str>,
    addrs: HostAddrs,
    sessions: Mutex<HashMap<String, Instant>>,
}

impl Dashboard {
    pub fn new(host: Arc<Host>, token: Arc<str>, addrs: HostAddrs) -> Self {
        Self {
            host,
            token,
            addrs,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        match self.sessions.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// True if the request carries a live session cookie.
    fn session_ok(&self, request: &http::Request<WasiBody>) -> bool {
        let Some(id) = session_id(request.headers()) else {
            return false;
        };
        let mut sessions = self.sessions();
        match sessions.get(id) {
            Some(&expires) if expires > Instant::now() => true,
            Some(_) => {
                sessions.remove(id);
                false
            }
            None => false,
        }
    }

    fn new_session(&self) -> Result<String, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut sessions = self.sessions();
        sessions.retain(|_, expires| *expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), now + SESSION_TTL);
        Ok(id)
    }

    /// Answers a request whose path starts with `/ui`.
    pub async fn handle(&self, request: http::Request<WasiBody>) -> http::Response<WasiBody> {
        let path = request.uri().path().to_string();
        let method = request.method().clone();
        match (method, path.as_str()) {
            (Method::GET | Method::HEAD, "/ui" | "/ui/" | "/ui/index.html") => {
                asset("text/html; charset=utf-8", INDEX_HTML)
            }
            (Method::GET | Method::HEAD, "/ui/app.js") => {
                asset("text/javascript; charset=utf-8", APP_JS)
            }
            (Method::GET | Method::HEAD, "/ui/style.css") => {
                asset("text/css; charset=utf-8", STYLE_CSS)
            }
            (Method::POST, "/ui/login") => self.login(request).await,
            (Method::POST, "/ui/logout") => {
                if !same_origin(&request) {
                    return error(StatusCode::FORBIDDEN, "cross-origin request refused");
                }
                if let Some(id) = session_id(request.headers()) {
                    self.sessions().remove(id);
                }
                let mut r = json_response(StatusCode::OK, &json!({ "loggedOut": true }));
                r.headers_mut().insert(
                    header::SET_COOKIE,
                    HeaderValue::from_static(
                        "weft_session=; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=0",
                    ),
                );
                r
            }
            (Method::GET, "/ui/api/overview") => {
                if !self.session_ok(&request) {
                    return unauthorized();
                }
                json_response(StatusCode::OK, &self.overview())
            }
            (Method::GET, "/ui/api/logs") => {
                if !self.session_ok(&request) {
                    return unauthorized();
                }
                let workload = query_param(request.uri().query().unwrap_or(""), "workload");
                match self.logs(workload.as_deref()) {
                    Ok(v) => json_response(StatusCode::OK, &v),
                    Err(e) => error(e.status(), e.to_string()),
                }
            }
            (
                _,
                "/ui" | "/ui/" | "/ui/login" | "/ui/logout" | "/ui/api/overview" | "/ui/api/logs",
            ) => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            _ => error(StatusCode::NOT_FOUND, format!("no such page: {path}")),
        }
    }

    async fn login(&self, request: http::Request<WasiBody>) -> http::Response<WasiBody> {
        if !same_origin(&request) {
            return error(StatusCode::FORBIDDEN, "cross-origin login refused");
        }
        let json_body = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if !json_body {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the token as JSON: {\"token\": \"...\"}",
            );
        }
        let body = match Limited::new(request.into_body(), MAX_LOGIN_BODY)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "login body too large"),
        };
        let presented = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_default();
        let header_value = HeaderValue::from_str(&format!("Bearer {}", presented.trim())).ok();
        if !crate::token::bearer_ok(header_value.as_ref(), &self.token) {
            tokio::time::sleep(WRONG_TOKEN_DELAY).await;
            return error(
                StatusCode::UNAUTHORIZED,
                "wrong token (it is in the host's data dir: admin-token)",
            );
        }
        let id = match self.new_session() {
            Ok(id) => id,
            Err(e) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot create a session: {e}"),
                );
            }
        };
        let cookie = format!(
            "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/ui; Max-Age={}",
            SESSION_TTL.as_secs()
        );
        let mut r = json_response(StatusCode::OK, &json!({ "loggedIn": true }));
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    }

    fn overview(&self) -> Value {
        let host = &self.host;
        let list = host.list();
        let stats: HashMap<String, Arc<WorkloadStats>> = host
            .workload_stats()
            .into_iter()
            .map(|w| (w.name, w.stats))
            .collect();
        let workloads: Vec<Value> = list["workloads"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|mut w| {
                let name = w["name"].as_str().unwrap_or("").to_string();
                if let Some(s) = stats.get(&name) {
                    w["stats"] = stats_json(s);
                }
                w
            })
            .collect();
        let deploys: Vec<Value> = host
            .deploy_events()
            .into_iter()
            .rev()
            .map(|e| {
                json!({
                    "time": unix(e.time),
                    "path": e.path.display().to_string(),
                    "workloads": e.workloads,
                    "ok": e.error.is_none(),
                    "error": e.error,
                })
            })
            .collect();
        let started = unix(host.started());
        let now = unix(SystemTime::now());
        let hs = host.stats();
        json!({
            "now": now,
            "hosts": [{
                "name": hostname(),
                "version": env!("CARGO_PKG_VERSION"),
                "pid": std::process::id(),
                "started": started,
                "uptimeSeconds": (now - started).max(0.0),
                "rssBytes": rss_bytes(),
                "ingress": self.addrs.ingress.map(|a| a.to_string()),
                "admin": self.addrs.admin.map(|a| a.to_string()),
                "metrics": self.addrs.metrics.map(|a| a.to_string()),
                "otlpEndpoint": self.addrs.otlp_endpoint,
                "workloads": workloads.len(),
                "unroutedRequests": hs.unrouted.get(),
                "deploysOk": hs.deploys_ok.get(),
                "deploysRefused": hs.deploys_refused.get(),
                "compileCacheHits": hs.cache_hits.get(),
                "compileCacheMisses": hs.cache_misses.get(),
            }],
            "workloads": workloads,
            "deploys": deploys,
        })
    }

    fn logs(&self, workload: Option<&str>) -> Result<Value, crate::host::HostError> {
        let names: Vec<String> = match workload {
            Some(w) if !w.is_empty() => vec![w.to_string()],
            _ => self
                .host
                .workload_stats()
                .into_iter()
                .map(|w| w.name)
                .collect(),
        };
        let mut lines = Vec::new();
        for name in &names {
            let sink = self.host.logs(name)?;
            let snapshot = sink.snapshot();
            let skip = snapshot.len().saturating_sub(LOG_LINES);
            for line in snapshot.into_iter().skip(skip) {
                lines.push((line.time, name.clone(), line));
            }
        }
        lines.sort_by_key(|(t, _, _)| *t);
        let skip = lines.len().saturating_sub(LOG_LINES);
        let lines: Vec<Value> = lines
            .into_iter()
            .skip(skip)
            .map(|(t, w, l)| {
                json!({
                    "time": unix(t),
                    "workload": w,
                    "component": l.component,
                    "stream": l.stream,
                    "message": l.message,
                })
            })
            .collect();
        Ok(json!({ "lines": lines }))
    }
}

fn stats_json(s: &WorkloadStats) -> Value {
    let codes = s.requests.nonzero();
    let mut classes = serde_json::Map::new();
    for (code, n) in &codes {
        let class = format!("{}xx", code / 100);
        let prev = classes.get(&class).and_then(Value::as_u64).unwrap_or(0);
        classes.insert(class, json!(prev + n));
    }
    let latency = s.latency.snapshot();
    json!({
        "requests": codes.iter().map(|(c, _)| c).zip(codes.iter().map(|(_, n)| n))
            .map(|(c, n)| (c.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "requestClasses": classes,
        "requestsTotal": s.requests.total(),
        "inFlight": s.in_flight.get(),
        "instancesAlive": s.instances_alive.get(),
        "memoryBytes": s.memory_bytes.get(),
        "latency": {
            "count": latency.count,
            "sumSeconds": latency.sum_seconds,
            // +Inf is written as null by serde_json; the page treats the last bucket as open.
            "buckets": latency.buckets.iter().map(|(b, n)| json!([if b.is_finite() { json!(b) } else { Value::Null }, n])).collect::<Vec<_>>(),
        },
    })
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "this host".into())
}

/// This process's resident set size, from /proc (Linux); `None` elsewhere.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The value of the `weft_session` cookie, if any.
fn session_id(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A state-changing request must come from the page itself: when the browser sends `Origin`,
/// it must be `http://HOST` for the request's own `Host`.
fn same_origin(request: &http::Request<WasiBody>) -> bool {
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        return true;
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    match (origin.to_str().ok(), host) {
        (Some(o), Some(h)) => o == format!("http://{h}"),
        _ => false,
    }
}

/// The value of `key` in a query string (`a=1&b=2`), percent-decoded.
fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && let Some(&[h, l]) = bytes.get(i + 1..i + 3)
            && let (Some(h), Some(l)) = (hex_digit(h), hex_digit(l))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(if b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn security_headers(r: &mut http::Response<WasiBody>) {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
}

fn asset(content_type: &'static str, body: &'static str) -> http::Response<WasiBody> {
    let mut r = bytes_response(StatusCode::OK, content_type, body);
    security_headers(&mut r);
    r
}

fn json_response(status: StatusCode, value: &Value) -> http::Response<WasiBody> {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    let mut r = bytes_response(status, "application/json", text);
    security_headers(&mut r);
    r
}

fn error(status: StatusCode, message: impl Into<String>) -> http::Response<WasiBody> {
    json_response(status, &json!({ "error": message.into() }))
}

fn unauthorized() -> http::Response<WasiBody> {
    error(
        StatusCode::UNAUTHORIZED,
        "log in first: the dashboard needs a session (POST /ui/login with the admin token)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for c in cookies {
            h.append(
                header::COOKIE,
                HeaderValue::from_str(c).unwrap_or(HeaderValue::from_static("")),
            );
        }
        h
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        assert_eq!(session_id(&headers(&["weft_session=abc"])), Some("abc"));
        assert_eq!(
            session_id(&headers(&["a=1; weft_session=abc ; b=2"])),
            Some("abc")
        );
        assert_eq!(session_id(&headers(&["a=1", "weft_session=x"])), Some("x"));
        assert_eq!(session_id(&headers(&["weft_sessionx=abc"])), None);
        assert_eq!(session_id(&headers(&["weft_session="])), None);
        assert_eq!(session_id(&headers(&[])), None);
    }

    #[test]
    fn query_params_decode() {
        assert_eq!(
            query_param("workload=a%2Db&x=1", "workload"),
            Some("a-b".into())
        );
        assert_eq!(query_param("x=1", "workload"), None);
        assert_eq!(
            query_param("workload=%zz%", "workload"),
            Some("%zz%".into())
        );
        assert_eq!(query_param("workload=a+b", "workload"), Some("a b".into()));
        assert_eq!(query_param("workload=%+1", "workload"), Some("% 1".into()));
    }

    proptest::proptest! {
        #[test]
        fn percent_decode_inverts_encoding(s in "\\PC*") {
            let encoded: String = s.bytes().map(|b| format!("%{b:02X}")).collect();
            proptest::prop_assert_eq!(percent_decode(&encoded), s);
        }

        #[test]
        fn parsers_never_panic(q in "\\PC*", c in "[ -~]*") {
            let _ = query_param(&q, "workload");
            let _ = percent_decode(&q);
            if let Ok(v) = HeaderValue::from_str(&c) {
                let mut h = http::HeaderMap::new();
                h.insert(header::COOKIE, v);
                let _ = session_id(&h);
            }
        }
    }
}
