//! Request admission, shared by the two things that serve a workload's HTTP requests: the
//! HTTP runner (`http.rs`, a component's worker pool) and the service's front door
//! (`service.rs`, one long-lived instance). Both cap the requests in flight ([`admit`]: a
//! request waits up to the queue timeout for a permit, then is `Overloaded`), refuse or cut off
//! request bodies past their limit ([`limit_request`]) and cut off and pace response bodies
//! ([`limit_response`]); a failed request is a [`HandleError`], which the edge maps to a status
//! code.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::WasiBody;

/// How long a request waits for a permit before it is `Overloaded`.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why one request failed. Each maps to a status code at the edge.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("too many requests in flight; try again later")]
    Overloaded,
    #[error("the handler did not respond within {0:?}")]
    Timeout(Duration),
    #[error("the handler trapped: {0}")]
    Trap(String),
    #[error("could not instantiate the handler: {0}")]
    Instantiate(String),
    #[error("the handler failed: {0}")]
    Guest(String),
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("the request body is larger than this host accepts ({0} bytes)")]
    TooLarge(u64),
    #[error("the workload's service is not serving: {0}")]
    Unavailable(String),
    #[error(
        "the instance handling this request was retired: another request on it ran past its deadline; retry"
    )]
    Retired,
}

impl HandleError {
    pub fn status(&self) -> StatusCode {
        match self {
            HandleError::Overloaded
            | HandleError::ShuttingDown
            | HandleError::Unavailable(_)
            | HandleError::Retired => StatusCode::SERVICE_UNAVAILABLE,
            HandleError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            HandleError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            HandleError::Trap(_) | HandleError::Instantiate(_) | HandleError::Guest(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// Takes one of the `in_flight` permits, waiting up to `queue_timeout` for one: the cap on
/// requests in flight. A closed semaphore means the handler is draining.
pub async fn admit(
    in_flight: &Arc<Semaphore>,
    queue_timeout: Duration,
) -> Result<tokio::sync::OwnedSemaphorePermit, HandleError> {
    match in_flight.clone().try_acquire_owned() {
        Ok(p) => Ok(p),
        Err(tokio::sync::TryAcquireError::Closed) => Err(HandleError::ShuttingDown),
        Err(tokio::sync::TryAcquireError::NoPermits) => {
            match tokio::time::timeout(queue_timeout, in_flight.clone().acquire_owned()).await {
                Ok(Ok(p)) => Ok(p),
                Ok(Err(_)) => Err(HandleError::ShuttingDown),
                Err(_) => Err(HandleError::Overloaded),
            }
        }
    }
}

/// Refuses a request whose declared body is over `max` bytes, and cuts off a streamed one
/// that grows past it.
pub fn limit_request(
    request: http::Request<WasiBody>,
    max: u64,
) -> Result<http::Request<WasiBody>, HandleError> {
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(HandleError::TooLarge(max));
    }
    Ok(request.map(|body| {
        use http_body_util::BodyExt;
        weft_engine::limit::Limited::new(body, max, weft_engine::limit::Direction::Request)
            .boxed_unsync()
    }))
}

/// Cuts off a guest's response body past `max` bytes, and paces it by `pace`.
pub fn limit_response(
    response: http::Response<WasiBody>,
    max: u64,
    pace: Option<Arc<weft_engine::limit::RateMeter>>,
) -> http::Response<WasiBody> {
    response.map(|body| {
        use http_body_util::BodyExt;
        weft_engine::limit::Limited::new(body, max, weft_engine::limit::Direction::Response)
            .paced(pace)
            .boxed_unsync()
    })
}
