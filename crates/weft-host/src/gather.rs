//! Gathering a response body before its head goes out, so that a small response leaves in one
//! write (docs/benchmarks.md, "One write per small response").
//!
//! hyper's HTTP/1 dispatcher flushes whatever it has each time the body it is sending has
//! nothing ready: a guest that returns its response first and then writes the body (the usual
//! shape of a WASI P3 handler, and of a P2 one that sets its `response-outparam` before writing)
//! gets its head, its data and its end-of-body sent as up to three TCP segments, each a `write`
//! on the server and a wake-up on the client. [`gather`] polls the body for what is ready now,
//! lets the guest run a little (`YIELDS` turns of the scheduler, no timer), and hands hyper the
//! frames it has with the rest behind them. A body that ended while gathered gets an exact size,
//! so hyper sends it with `Content-Length` instead of chunked framing.
//!
//! Gathering never waits for a body that is not producing: at most `YIELDS` scheduler turns
//! and [`GATHER_MAX_BYTES`], then whatever is ready goes out and the rest streams as before.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use weft_runtime::WasiBody;
use weft_runtime::http::BodyError;

/// Most bytes gathered before the head goes out; past it the body streams.
pub const GATHER_MAX_BYTES: usize = 64 << 10;

/// Scheduler turns a gather gives a body that has nothing ready (each a `yield_now`).
const YIELDS: u32 = 2;

/// Most frames gathered (a body of empty frames that are always ready stops here too).
const GATHER_MAX_FRAMES: usize = 64;

/// Polls `body` for the frames it has ready (see the module docs) and returns a body that
/// yields them first, then the rest of `body`.
pub async fn gather(mut body: WasiBody) -> WasiBody {
    if body.is_end_stream() {
        return body;
    }
    // A length the guest declared (its `content-length`, which hyper will send as is): an
    // ended body is given an exact size only when it is that length; one that ended short or
    // long is a failed body, cut like any other (docs/security.md, "Honest truncation").
    let declared = body.size_hint().exact();
    let mut frames = VecDeque::new();
    let mut queued = 0usize;
    let mut yields = 0;
    let tail = loop {
        let polled =
            std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    queued = queued.saturating_add(data.len());
                }
                frames.push_back(frame);
                if queued >= GATHER_MAX_BYTES || frames.len() >= GATHER_MAX_FRAMES {
                    break Tail::Rest(body);
                }
            }
            Poll::Ready(Some(Err(err))) => break Tail::Failed(Some(err)),
            Poll::Ready(None) => match declared {
                Some(length) if length != queued as u64 => {
                    break Tail::Failed(Some(BodyError::HttpResponseBodySize(Some(queued as u64))));
                }
                _ => break Tail::Ended,
            },
            Poll::Pending => {
                if yields == YIELDS {
                    break Tail::Rest(body);
                }
                yields += 1;
                tokio::task::yield_now().await;
            }
        }
    };
    if frames.is_empty()
        && let Tail::Rest(body) = tail
    {
        return body;
    }
    Gathered { frames, tail }.boxed_unsync()
}

/// What follows the gathered frames.
enum Tail {
    /// The body ended while it was gathered.
    Ended,
    /// The body failed while it was gathered: this error follows the frames (once).
    Failed(Option<BodyError>),
    /// The body had not ended: it follows the frames.
    Rest(WasiBody),
}

/// Gathered frames, then the tail.
struct Gathered {
    frames: VecDeque<Frame<Bytes>>,
    tail: Tail,
}

impl Gathered {
    /// Data bytes still in `frames`.
    fn queued(&self) -> u64 {
        self.frames
            .iter()
            .filter_map(Frame::data_ref)
            .map(|data| data.len() as u64)
            .sum()
    }
}

impl Body for Gathered {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(frame) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match &mut self.tail {
            Tail::Ended => Poll::Ready(None),
            Tail::Failed(err) => Poll::Ready(err.take().map(Err)),
            Tail::Rest(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
            && match &self.tail {
                Tail::Ended => true,
                Tail::Failed(err) => err.is_none(),
                Tail::Rest(body) => body.is_end_stream(),
            }
    }

    fn size_hint(&self) -> SizeHint {
        let queued = self.queued();
        match &self.tail {
            // Exact only without trailers: HTTP/1.1 sends trailers with chunked framing only.
            Tail::Ended if self.frames.iter().all(|f| f.is_data()) => SizeHint::with_exact(queued),
            Tail::Ended | Tail::Failed(_) => {
                let mut hint = SizeHint::new();
                hint.set_lower(queued);
                hint
            }
            Tail::Rest(body) => {
                let inner = body.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower().saturating_add(queued));
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper.saturating_add(queued));
                }
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn full(data: &'static [u8]) -> WasiBody {
        Full::new(Bytes::from_static(data))
            .map_err(|never| match never {})
            .boxed_unsync()
    }

    /// A body fed by a channel: frames arrive when the test sends them.
    fn channel() -> (
        tokio::sync::mpsc::UnboundedSender<Result<Frame<Bytes>, BodyError>>,
        WasiBody,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        (tx, StreamBody::new(stream).boxed_unsync())
    }

    /// Collects until the end or an error, never polling past either.
    async fn collect(body: WasiBody) -> (Vec<u8>, Option<http::HeaderMap>, Option<BodyError>) {
        let mut body = body;
        let mut data = Vec::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(d) => data.extend_from_slice(&d),
                    Err(frame) => trailers = frame.into_trailers().ok(),
                },
                Err(err) => return (data, trailers, Some(err)),
            }
        }
        (data, trailers, None)
    }

    #[tokio::test]
    async fn an_ended_body_gets_its_exact_size() {
        let (tx, body) = channel();
        tx.send(Ok(Frame::data(Bytes::from_static(b"hello "))))
            .unwrap();
        tx.send(Ok(Frame::data(Bytes::from_static(b"world"))))
            .unwrap();
        drop(tx);
        let gathered = gather(body).await;
        assert_eq!(gathered.size_hint().exact(), Some(11));
        assert!(!gathered.is_end_stream());
        let (data, trailers, err) = collect(gathered).await;
        assert_eq!(data, b"hello world");
        assert!(trailers.is_none() && err.is_none());
    }

    #[tokio::test]
    async fn a_body_written_a_little_later_is_still_gathered() {
        let (tx, body) = channel();
        // The writer runs on the same (current-thread) scheduler, after the gather starts.
        tokio::spawn(async move {
            tx.send(Ok(Frame::data(Bytes::from_static(b"late"))))
                .unwrap();
        });
        let gathered = gather(body).await;
        assert_eq!(gathered.size_hint().exact(), Some(4));
        assert_eq!(collect(gathered).await.0, b"late");
    }

    #[tokio::test]
    async fn a_body_that_is_not_producing_is_not_waited_for() {
        let (tx, body) = channel();
        tx.send(Ok(Frame::data(Bytes::from_static(b"first"))))
            .unwrap();
        let gathered = tokio::time::timeout(std::time::Duration::from_secs(5), gather(body))
            .await
            .expect("gather must not wait for a body with nothing ready");
        assert_eq!(gathered.size_hint().exact(), None);
        assert_eq!(gathered.size_hint().lower(), 5);
        tx.send(Ok(Frame::data(Bytes::from_static(b" second"))))
            .unwrap();
        drop(tx);
        assert_eq!(collect(gathered).await.0, b"first second");
    }

    #[tokio::test]
    async fn trailers_keep_the_size_open() {
        let (tx, body) = channel();
        let mut map = http::HeaderMap::new();
        map.insert("x-check", http::HeaderValue::from_static("1"));
        tx.send(Ok(Frame::data(Bytes::from_static(b"abc"))))
            .unwrap();
        tx.send(Ok(Frame::trailers(map))).unwrap();
        drop(tx);
        let gathered = gather(body).await;
        assert_eq!(gathered.size_hint().exact(), None);
        let (data, trailers, err) = collect(gathered).await;
        assert_eq!(data, b"abc");
        let check = trailers.and_then(|t| t.get("x-check").cloned());
        assert_eq!(check, Some(http::HeaderValue::from_static("1")));
        assert!(err.is_none());
    }

    #[tokio::test]
    async fn an_error_follows_the_gathered_data_once() {
        let (tx, body) = channel();
        tx.send(Ok(Frame::data(Bytes::from_static(b"partial"))))
            .unwrap();
        tx.send(Err(BodyError::InternalError(Some("boom".into()))))
            .unwrap();
        let gathered = gather(body).await;
        assert_eq!(gathered.size_hint().exact(), None);
        let mut gathered = gathered;
        let first = gathered.frame().await.expect("data").expect("ok");
        assert_eq!(first.into_data().ok().as_deref(), Some(&b"partial"[..]));
        assert!(matches!(gathered.frame().await, Some(Err(_))));
        assert!(gathered.frame().await.is_none());
        drop(tx);
    }

    #[tokio::test]
    async fn a_large_body_streams_past_the_cap() {
        let (tx, body) = channel();
        let chunk = Bytes::from(vec![7u8; GATHER_MAX_BYTES / 2]);
        for _ in 0..4 {
            tx.send(Ok(Frame::data(chunk.clone()))).unwrap();
        }
        drop(tx);
        let gathered = gather(body).await;
        // Two chunks reach the cap; the other two stream behind them.
        assert_eq!(gathered.size_hint().exact(), None);
        assert_eq!(gathered.size_hint().lower(), GATHER_MAX_BYTES as u64);
        assert_eq!(collect(gathered).await.0.len(), 2 * GATHER_MAX_BYTES);
    }

    /// `inner` with a declared length, as a guest's `content-length` gives a P3 body.
    struct Declared {
        inner: WasiBody,
        length: u64,
    }

    impl Body for Declared {
        type Data = Bytes;
        type Error = BodyError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
            Pin::new(&mut self.inner).poll_frame(cx)
        }
        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(self.length)
        }
    }

    #[tokio::test]
    async fn a_body_that_ends_short_of_its_declared_length_fails() {
        for (declared, sent) in [(10u64, &b"short"[..]), (3, b"longer"), (4, b"")] {
            let (tx, body) = channel();
            if !sent.is_empty() {
                tx.send(Ok(Frame::data(Bytes::copy_from_slice(sent))))
                    .unwrap();
            }
            drop(tx);
            let gathered = gather(
                Declared {
                    inner: body,
                    length: declared,
                }
                .boxed_unsync(),
            )
            .await;
            assert_eq!(gathered.size_hint().exact(), None, "declared {declared}");
            let (data, _, err) = collect(gathered).await;
            assert_eq!(data, sent);
            assert!(
                matches!(err, Some(BodyError::HttpResponseBodySize(_))),
                "declared {declared}, sent {}: {err:?}",
                sent.len()
            );
        }
        // The declared length, exactly: the size stands.
        let (tx, body) = channel();
        tx.send(Ok(Frame::data(Bytes::from_static(b"12345"))))
            .unwrap();
        drop(tx);
        let gathered = gather(
            Declared {
                inner: body,
                length: 5,
            }
            .boxed_unsync(),
        )
        .await;
        assert_eq!(gathered.size_hint().exact(), Some(5));
        let (data, _, err) = collect(gathered).await;
        assert_eq!((data.as_slice(), err.is_none()), (&b"12345"[..], true));
    }

    #[tokio::test]
    async fn an_always_ready_stream_of_empty_frames_is_not_gathered_forever() {
        let (tx, body) = channel();
        for _ in 0..(GATHER_MAX_FRAMES * 2) {
            tx.send(Ok(Frame::data(Bytes::new()))).unwrap();
        }
        let gathered = gather(body).await;
        assert_eq!(gathered.size_hint().exact(), None);
        drop(tx);
        assert!(collect(gathered).await.0.is_empty());
    }

    #[tokio::test]
    async fn an_ended_body_is_passed_through() {
        let body = full(b"");
        assert!(body.is_end_stream());
        let gathered = gather(body).await;
        assert!(gathered.is_end_stream());
        let full_body = gather(full(b"xyz")).await;
        assert_eq!(full_body.size_hint().exact(), Some(3));
        assert_eq!(collect(full_body).await.0, b"xyz");
    }

    /// One step of a scripted body.
    #[derive(Debug, Clone)]
    enum Step {
        Data(Vec<u8>),
        /// Nothing ready this poll; ready again at the next (the waker is woken at once).
        Pending,
    }

    /// A body that plays `steps`, then ends with trailers, an error, or nothing; polled past
    /// its end (or after its error) it panics.
    struct Scripted {
        steps: std::collections::VecDeque<Step>,
        end: Option<bool>, // Some(true): trailers, Some(false): error, None: plain end
        /// 0: playing steps; 1: trailers sent, `None` next; 2: over.
        stage: u8,
    }

    impl Body for Scripted {
        type Data = Bytes;
        type Error = BodyError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
            match self.stage {
                0 => {}
                1 => {
                    self.stage = 2;
                    return Poll::Ready(None);
                }
                _ => panic!("polled past its end"),
            }
            match self.steps.pop_front() {
                Some(Step::Data(d)) => Poll::Ready(Some(Ok(Frame::data(Bytes::from(d))))),
                Some(Step::Pending) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                None => match self.end {
                    Some(true) => {
                        self.stage = 1;
                        let mut map = http::HeaderMap::new();
                        map.insert("x-end", http::HeaderValue::from_static("yes"));
                        Poll::Ready(Some(Ok(Frame::trailers(map))))
                    }
                    Some(false) => {
                        self.stage = 2;
                        Poll::Ready(Some(Err(BodyError::InternalError(None))))
                    }
                    None => {
                        self.stage = 2;
                        Poll::Ready(None)
                    }
                },
            }
        }
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            3 => proptest::collection::vec(any::<u8>(), 0..(GATHER_MAX_BYTES / 2)).prop_map(Step::Data),
            1 => Just(Step::Pending),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// Gathering changes when bytes leave, never what leaves: the same data, trailers and
        /// error in the same order; and a size is exact only when it is the whole body's.
        #[test]
        fn gathering_keeps_every_frame_and_claims_no_false_length(
            steps in proptest::collection::vec(step(), 0..12),
            end in proptest::option::of(proptest::bool::ANY),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let script = || Scripted { steps: steps.clone().into(), end, stage: 0 }.boxed_unsync();
            let (plain, gathered, hint) = rt.block_on(async {
                let plain = collect(script()).await;
                let gathered = gather(script()).await;
                let hint = gathered.size_hint();
                (plain, collect(gathered).await, hint)
            });
            proptest::prop_assert_eq!(&plain.0, &gathered.0);
            proptest::prop_assert_eq!(&plain.1, &gathered.1);
            proptest::prop_assert_eq!(plain.2.is_some(), gathered.2.is_some());
            let total = plain.0.len() as u64;
            if let Some(exact) = hint.exact() {
                proptest::prop_assert_eq!(exact, total);
                proptest::prop_assert!(end.is_none(), "no exact size with trailers or an error");
            }
            proptest::prop_assert!(hint.lower() <= total);
            if let Some(upper) = hint.upper() {
                proptest::prop_assert!(upper >= total);
            }
        }
    }
}
