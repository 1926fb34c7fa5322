//! Byte limits on HTTP bodies crossing the host: a guest cannot stream a response forever, and a
//! client cannot push an endless request into a guest. Bodies stay streamed (never buffered);
//! the limiter only counts.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::Error;

/// Default cap on an incoming request body (`--max-request-body`).
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 256 << 20;
/// Default cap on a guest's response body (`--max-response-body`).
pub const DEFAULT_MAX_RESPONSE_BODY: u64 = 1 << 30;
/// Resource handles one store may hold (headers, bodies, streams, sockets...). wasmtime's own
/// default is 1,000,000; each `fields` handle may hold up to 128 KiB of headers, so this also
/// bounds what one instance can make the host allocate through handles.
pub const DEFAULT_MAX_RESOURCES: usize = 4096;

/// Which side a body is on: decides the error the reader gets past the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// A body that fails with a size error once more than `limit` bytes have passed.
pub struct Limited<B> {
    inner: B,
    seen: u64,
    limit: u64,
    direction: Direction,
}

impl<B> Limited<B> {
    pub fn new(inner: B, limit: u64, direction: Direction) -> Self {
        Limited {
            inner,
            seen: 0,
            limit,
            direction,
        }
    }

    fn error(&self) -> Error {
        match self.direction {
            Direction::Request => Error::HttpRequestBodySize(Some(self.limit)),
            Direction::Response => Error::HttpResponseBodySize(Some(self.limit)),
        }
    }
}

impl<B> Body for Limited<B>
where
    B: Body<Data = Bytes, Error = Error> + Unpin,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.seen > self.limit {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.seen = self.seen.saturating_add(data.len() as u64);
                    if self.seen > self.limit {
                        let (dir, limit) = (self.direction, self.limit);
                        tracing::warn!(?dir, limit, "HTTP body cut off at its size limit");
                        return Poll::Ready(Some(Err(self.error())));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.seen > self.limit || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test]
    async fn cuts_off_past_the_limit() {
        let chunks = (0..10).map(|_| Ok::<_, Error>(Frame::data(Bytes::from(vec![7u8; 100]))));
        let body = StreamBody::new(futures::stream::iter(chunks));
        let mut limited = Limited::new(body, 550, Direction::Response);
        let mut total = 0;
        let mut failed = false;
        while let Some(frame) = limited.frame().await {
            match frame {
                Ok(f) => total += f.data_ref().map_or(0, |d| d.len()),
                Err(e) => {
                    assert!(matches!(e, Error::HttpResponseBodySize(Some(550))), "{e:?}");
                    failed = true;
                }
            }
        }
        assert!(failed);
        assert_eq!(total, 500);
    }

    #[tokio::test]
    async fn passes_bodies_within_the_limit() {
        let chunks = (0..5).map(|_| Ok::<_, Error>(Frame::data(Bytes::from(vec![1u8; 100]))));
        let body = StreamBody::new(futures::stream::iter(chunks));
        let collected = Limited::new(body, 500, Direction::Request)
            .collect()
            .await
            .map(|c| c.to_bytes().len());
        assert_eq!(collected.ok(), Some(500));
    }
}
