//! The public front door's manners: every request gets a request id, is checked against
//! RFC 9112 before anything routes it (`weft_policy::ingress`), and every error it gets is
//! short and generic. The details of a failure (route table, error chain, guest backtrace) go
//! to the log line with the request id, to the workload's `weft logs`, and to the admin API
//! (`GET /v1/requests/{id}`), never to the client: a 404 must not list the host's tenants, a
//! 500 must not show a stranger the host's internals.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use http::{HeaderValue, StatusCode};
use serde_json::{Value, json};
use weft_policy::ingress::{self, Authority, Refusal};
use weft_runtime::WasiBody;

/// The request and response header that carries the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest request id accepted from a client.
pub const MAX_REQUEST_ID: usize = 128;

/// A request's id: the client's `x-request-id` when it is sane, else a fresh one. Stored in
/// the request's extensions by the server, set on the request the guest sees and on the
/// response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// The client's id if the request has exactly one `x-request-id` of 1-128 characters from
    /// `[A-Za-z0-9._:-]`, else a new id.
    pub fn for_request<B>(request: &http::Request<B>) -> RequestId {
        let mut values = request.headers().get_all(REQUEST_ID_HEADER).iter();
        match (values.next(), values.next()) {
            (Some(v), None) if is_sane(v.as_bytes()) => {
                RequestId(String::from_utf8_lossy(v.as_bytes()).into_owned())
            }
            _ => RequestId::new(),
        }
    }

    /// A fresh id: 16 hex digits, unique in this process, unpredictable across processes.
    pub fn new() -> RequestId {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let seed = *SEED.get_or_init(|| {
            let mut bytes = [0u8; 8];
            match getrandom::fill(&mut bytes) {
                Ok(()) => u64::from_le_bytes(bytes),
                // No OS randomness: ids stay unique, only less unpredictable.
                Err(_) => SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0x5eed),
            }
        });
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // splitmix64 of seed + n * gamma: a bijection of n, so ids never repeat in a process.
        let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        RequestId(format!("{:016x}", z ^ (z >> 31)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a header value (always valid: only sane characters).
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_str(&self.0).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }

    /// The request's id as set by the server, or a fresh one (a handler called directly).
    pub fn of<B>(request: &http::Request<B>) -> RequestId {
        request
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId::for_request(request))
    }
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId::new()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_sane(v: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&v.len())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// What the ingress reads from a request before routing it: RFC 9112's authority and the
/// routing path, or the refusal.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub authority: Option<Authority>,
    pub path: String,
}

/// Checks a request head against RFC 9112 (`weft_policy::ingress::decide`).
pub fn admit<B>(request: &http::Request<B>) -> Result<Admitted, Refusal> {
    let version = if request.version() == http::Version::HTTP_10 {
        ingress::Version::Http10
    } else {
        ingress::Version::Http11
    };
    let target = request.uri().to_string();
    let hosts: Vec<&[u8]> = request
        .headers()
        .get_all(http::header::HOST)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let headers = request.headers();
    if headers.contains_key(http::header::CONTENT_LENGTH)
        && headers.contains_key(http::header::TRANSFER_ENCODING)
    {
        return Err(Refusal::LengthAndEncoding);
    }
    let decision = ingress::decide(request.method().as_str(), &target, version, &hosts)?;
    Ok(Admitted {
        authority: decision.authority,
        path: decision.path.to_string(),
    })
}

/// A short, generic error response: the status line's reason and the request id, nothing
/// about the host or the guest.
pub fn generic_error(status: StatusCode, id: &RequestId) -> http::Response<WasiBody> {
    let reason = status.canonical_reason().unwrap_or("Error");
    text_response(
        status,
        format!("{} {reason}\nrequest id: {id}\n", status.as_u16()),
    )
}

/// The answer to a refused request: 400 (405 for CONNECT) with the reason, which is about the
/// client's own request and tells nothing about the host.
pub fn refusal_response(refusal: &Refusal, id: &RequestId) -> http::Response<WasiBody> {
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut response = text_response(
        status,
        format!(
            "{} {reason}: {refusal}\nrequest id: {id}\n",
            status.as_u16()
        ),
    );
    // The connection is closed after it: what follows a refused head (a body, a smuggled
    // second request) is never read as a request.
    response
        .headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A plain-text response (the front door's own, so that `server` may use this module without
/// an import cycle).
fn text_response(status: StatusCode, body: String) -> http::Response<WasiBody> {
    use http_body_util::BodyExt;
    let mut response = http::Response::new(
        http_body_util::Full::new(bytes::Bytes::from(body))
            .map_err(|never: std::convert::Infallible| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Failures kept for the admin API.
pub const FAILURES_KEPT: usize = 1024;

/// The last [`FAILURES_KEPT`] failed requests of a host, with their details, for
/// `GET /v1/requests[/{id}]` on the admin API.
#[derive(Default)]
pub struct Failures {
    ring: Mutex<VecDeque<Value>>,
}

impl Failures {
    /// Records a failed request: its id, status, workload (if routed), and the details.
    pub fn record(&self, id: &RequestId, status: StatusCode, workload: Option<&str>, detail: &str) {
        let time = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let entry = json!({
            "requestId": id.as_str(),
            "time": time,
            "status": status.as_u16(),
            "workload": workload,
            "detail": detail,
        });
        let mut ring = match self.ring.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if ring.len() >= FAILURES_KEPT {
            ring.pop_front();
        }
        ring.push_back(entry);
    }

    /// Every recorded failure with this id (a client may reuse an id), oldest first.
    pub fn get(&self, id: &str) -> Vec<Value> {
        let ring = match self.ring.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        ring.iter()
            .filter(|v| v["requestId"].as_str() == Some(id))
            .cloned()
            .collect()
    }

    /// The most recent failures, newest last.
    pub fn recent(&self, limit: usize) -> Vec<Value> {
        let ring = match self.ring.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let skip = ring.len().saturating_sub(limit);
        ring.iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req(ids: &[&[u8]]) -> http::Request<()> {
        let mut r = http::Request::new(());
        for id in ids {
            if let Ok(v) = HeaderValue::from_bytes(id) {
                r.headers_mut().append(REQUEST_ID_HEADER, v);
            }
        }
        r
    }

    #[test]
    fn ids_are_taken_from_the_client_only_when_sane() {
        assert_eq!(
            RequestId::for_request(&req(&[b"abc-123:x.y_z"])).as_str(),
            "abc-123:x.y_z"
        );
        for bad in [&b""[..], b"a b", b"<script>", b"a/b", &[b'a'; 129][..]] {
            let id = RequestId::for_request(&req(&[bad]));
            assert_ne!(id.as_str().as_bytes(), bad);
            assert_eq!(id.as_str().len(), 16);
        }
        let two = RequestId::for_request(&req(&[b"one", b"two"]));
        assert!(two.as_str() != "one" && two.as_str() != "two");
    }

    #[test]
    fn fresh_ids_do_not_repeat() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| RequestId::new().0).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn failures_are_bounded_and_found_by_id() {
        let f = Failures::default();
        for i in 0..FAILURES_KEPT + 5 {
            f.record(
                &RequestId(format!("id{i}")),
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("w"),
                "boom",
            );
        }
        assert!(f.get("id0").is_empty(), "the oldest fell out");
        assert_eq!(f.get("id5")[0]["status"], 500);
        assert_eq!(f.recent(3).len(), 3);
        assert_eq!(f.recent(10_000).len(), FAILURES_KEPT);
    }

    proptest! {
        #[test]
        fn an_accepted_id_is_always_a_valid_header(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let id = RequestId::for_request(&req(&[&bytes]));
            prop_assert!(is_sane(id.as_str().as_bytes()));
            let value = id.header_value();
            prop_assert_eq!(value.as_bytes(), id.as_str().as_bytes());
        }
    }
}
