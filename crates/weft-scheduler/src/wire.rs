//! The wire format of forwarded ingress (docs/lattice.md, "Forwarded ingress"). A request or a
//! response is a sequence of frames, one per NATS message: a 4-byte big-endian head length, the
//! head as JSON, then a chunk of the body (at most [`CHUNK`] bytes). Every frame carries the
//! head; its [`Part`] says which chunk it is. Frames come from the network (any NATS client that
//! may publish on the subjects): [`decode`] turns every malformed input into a [`FrameError`],
//! and an [`Assembler`] puts chunks back together within bounds (open sequences, total size,
//! order, age). Property tests below and the `forward_frame` fuzz target check both.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The largest head a frame may carry.
pub const MAX_HEAD: usize = 64 << 10;

/// The largest body chunk one frame carries (well under NATS's default 1 MiB `max_payload`).
pub const CHUNK: usize = 256 << 10;

/// The largest forwarded request or response body (413 / 502 past it).
pub const MAX_FORWARD_BODY: usize = 16 << 20;

/// Sequences a host assembles at once; more are refused (503).
pub const MAX_ASSEMBLING: usize = 64;

/// A sequence with no new chunk for this long is dropped.
pub const ASSEMBLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Which chunk of a body a frame carries: sequence `id` (the reply inbox), chunk `seq` from 0,
/// `last` on the final one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub id: String,
    pub seq: u32,
    pub last: bool,
}

/// A head that may be one part of a sequence.
pub trait Framed {
    fn part(&self) -> Option<&Part>;
}

impl Framed for RequestHead {
    fn part(&self) -> Option<&Part> {
        self.part.as_ref()
    }
}

impl Framed for ResponseHead {
    fn part(&self) -> Option<&Part> {
        self.part.as_ref()
    }
}

/// What an [`Assembler`] made of one frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled<H> {
    /// More chunks to come.
    Pending,
    /// The whole message: the first frame's head and every chunk in order.
    Complete(H, Vec<u8>),
    /// The sequence is dropped: an HTTP status and why (400 out of order, 413 too large, 503
    /// too many open).
    Refused(u16, String),
}

struct Partial<H> {
    head: H,
    body: Vec<u8>,
    next: u32,
    updated: Instant,
}

/// Puts chunked frames back together, within bounds: at most `max_open` sequences at once,
/// at most `max_body` bytes each, chunks in order from 0, none older than `stale_after`.
pub struct Assembler<H> {
    open: HashMap<String, Partial<H>>,
    max_open: usize,
    max_body: usize,
    stale_after: Duration,
}

impl<H: Framed> Assembler<H> {
    pub fn new(max_open: usize, max_body: usize, stale_after: Duration) -> Assembler<H> {
        Assembler {
            open: HashMap::new(),
            max_open,
            max_body,
            stale_after,
        }
    }

    /// Sequences being assembled.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// Drops the sequences with no chunk for `stale_after`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.open.len();
        let stale = self.stale_after;
        self.open
            .retain(|_, p| now.saturating_duration_since(p.updated) < stale);
        before - self.open.len()
    }

    /// Takes one frame. A frame without a [`Part`] is a whole message by itself.
    pub fn offer(&mut self, head: H, chunk: &[u8], now: Instant) -> Assembled<H> {
        let Some(part) = head.part().cloned() else {
            if chunk.len() > self.max_body {
                return Assembled::Refused(413, format!("a body over {} bytes", self.max_body));
            }
            return Assembled::Complete(head, chunk.to_vec());
        };
        let partial = match self.open.remove(&part.id) {
            Some(p) if p.next == part.seq => p,
            Some(p) => {
                return Assembled::Refused(
                    400,
                    format!("chunk {} where {} was due", part.seq, p.next),
                );
            }
            None if part.seq != 0 => {
                return Assembled::Refused(
                    400,
                    format!("chunk {} of an unknown sequence", part.seq),
                );
            }
            None if self.open.len() >= self.max_open => {
                return Assembled::Refused(
                    503,
                    format!("{} sequences are being assembled already", self.max_open),
                );
            }
            None => Partial {
                head,
                body: Vec::new(),
                next: 0,
                updated: now,
            },
        };
        let mut partial = partial;
        if partial.body.len().saturating_add(chunk.len()) > self.max_body {
            return Assembled::Refused(413, format!("a body over {} bytes", self.max_body));
        }
        partial.body.extend_from_slice(chunk);
        partial.next = partial.next.saturating_add(1);
        partial.updated = now;
        if part.last {
            return Assembled::Complete(partial.head, partial.body);
        }
        self.open.insert(part.id, partial);
        Assembled::Pending
    }
}

/// The chunks of `body` (one empty chunk for an empty body), with their parts in sequence `id`.
pub fn chunks<'a>(id: &'a str, body: &'a [u8]) -> impl Iterator<Item = (Part, &'a [u8])> + 'a {
    let n = body.len().div_ceil(CHUNK).max(1);
    (0..n).map(move |i| {
        let start = (i * CHUNK).min(body.len());
        let end = ((i + 1) * CHUNK).min(body.len());
        (
            Part {
                id: id.to_string(),
                seq: u32::try_from(i).unwrap_or(u32::MAX),
                last: i + 1 == n,
            },
            &body[start..end],
        )
    })
}

/// A forwarded request's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestHead {
    pub method: String,
    /// The request target (origin form: path and query).
    pub uri: String,
    /// Header names and values; values as latin-1 strings ([`value_to_string`]).
    pub headers: Vec<(String, String)>,
    /// The forwarding host.
    pub origin: String,
    /// Which chunk of the body this frame carries (absent: the whole body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<Part>,
    /// Where the response's chunks after the first go (the first is the reply to the
    /// request's last frame).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more: Option<String>,
}

/// A forwarded response's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The serving host's own 421: it does not run the deployment (any other 421 is the
    /// workload's and is passed on).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub misdirected: bool,
    /// Which chunk of the body this frame carries (absent: the whole body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<Part>,
}

/// Why a frame does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a forwarded frame of {0} bytes is shorter than its 4-byte head length")]
    Short(usize),
    #[error("a forwarded frame's head is {0} bytes, more than the {MAX_HEAD} allowed")]
    HeadTooLarge(usize),
    #[error("a forwarded frame's head of {head} bytes runs past the frame's {frame} bytes")]
    Truncated { head: usize, frame: usize },
    #[error("a forwarded frame's head does not decode: {0}")]
    Head(String),
}

/// `head` and `body` as one frame.
pub fn encode<H: Serialize>(head: &H, body: &[u8]) -> Result<Vec<u8>, FrameError> {
    let head = serde_json::to_vec(head).map_err(|e| FrameError::Head(e.to_string()))?;
    if head.len() > MAX_HEAD {
        return Err(FrameError::HeadTooLarge(head.len()));
    }
    let len = u32::try_from(head.len()).map_err(|_| FrameError::HeadTooLarge(head.len()))?;
    let mut out = Vec::with_capacity(4 + head.len() + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(body);
    Ok(out)
}

/// A frame's head and body. Input from the network: every failure is a [`FrameError`].
pub fn decode<H: DeserializeOwned>(frame: &[u8]) -> Result<(H, &[u8]), FrameError> {
    let Some((len, rest)) = frame.split_first_chunk::<4>() else {
        return Err(FrameError::Short(frame.len()));
    };
    let head_len = u32::from_be_bytes(*len) as usize;
    if head_len > MAX_HEAD {
        return Err(FrameError::HeadTooLarge(head_len));
    }
    if head_len > rest.len() {
        return Err(FrameError::Truncated {
            head: head_len,
            frame: frame.len(),
        });
    }
    let (head, body) = rest.split_at(head_len);
    let head = serde_json::from_slice(head).map_err(|e| FrameError::Head(e.to_string()))?;
    Ok((head, body))
}

/// A header value as a string, byte for byte (latin-1): HTTP values may carry any byte but
/// control characters, which JSON strings cannot hold as raw bytes.
pub fn value_to_string(value: &[u8]) -> String {
    value.iter().map(|&b| char::from(b)).collect()
}

/// The bytes of a value written by [`value_to_string`]; `None` for a character above U+00FF
/// (not written by us).
pub fn string_to_value(s: &str) -> Option<Vec<u8>> {
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip() {
        let head = RequestHead {
            method: "POST".into(),
            uri: "/a?b=c".into(),
            headers: vec![("x-bin".into(), value_to_string(&[0x80, 0xff, b'a']))],
            origin: "h1".into(),
            part: Some(Part {
                id: "_INBOX.x".into(),
                seq: 3,
                last: false,
            }),
            more: Some("_INBOX.y.1".into()),
        };
        let frame = encode(&head, b"body").unwrap();
        let (back, body) = decode::<RequestHead>(&frame).unwrap();
        assert_eq!(back, head);
        assert_eq!(body, b"body");
        assert_eq!(
            string_to_value(&back.headers[0].1).unwrap(),
            vec![0x80, 0xff, b'a']
        );
    }

    #[test]
    fn bad_frames_are_errors() {
        assert_eq!(
            decode::<ResponseHead>(b"ab").unwrap_err(),
            FrameError::Short(2)
        );
        assert_eq!(
            decode::<ResponseHead>(&[0, 0, 0, 9, b'{']).unwrap_err(),
            FrameError::Truncated { head: 9, frame: 5 }
        );
        assert_eq!(
            decode::<ResponseHead>(&[0xff, 0xff, 0xff, 0xff]).unwrap_err(),
            FrameError::HeadTooLarge(u32::MAX as usize)
        );
        assert!(matches!(
            decode::<ResponseHead>(&[0, 0, 0, 2, b'{', b'}']).unwrap_err(),
            FrameError::Head(_)
        ));
        assert_eq!(string_to_value("\u{100}"), None);
    }

    fn response(part: Option<Part>) -> ResponseHead {
        ResponseHead {
            status: 200,
            headers: vec![],
            misdirected: false,
            part,
        }
    }

    fn part(id: &str, seq: u32, last: bool) -> Option<Part> {
        Some(Part {
            id: id.into(),
            seq,
            last,
        })
    }

    #[test]
    fn chunks_cover_the_body_and_mark_the_last() {
        let body = vec![7u8; CHUNK * 2 + 5];
        let parts: Vec<(Part, &[u8])> = chunks("i", &body).collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts.iter().map(|(_, c)| c.len()).sum::<usize>(),
            body.len()
        );
        assert!(parts[2].0.last && !parts[1].0.last);
        let empty: Vec<(Part, &[u8])> = chunks("i", &[]).collect();
        assert_eq!(empty.len(), 1);
        assert!(empty[0].0.last && empty[0].1.is_empty());
    }

    #[test]
    fn the_assembler_keeps_its_bounds() {
        let now = Instant::now();
        let mut a: Assembler<ResponseHead> = Assembler::new(1, 10, Duration::from_secs(1));
        assert_eq!(
            a.offer(response(part("a", 0, false)), b"12345", now),
            Assembled::Pending
        );
        // A second sequence while one is open, at most one: refused.
        assert!(matches!(
            a.offer(response(part("b", 0, false)), b"x", now),
            Assembled::Refused(503, _)
        ));
        // Out of order: the sequence is dropped.
        assert!(matches!(
            a.offer(response(part("a", 2, true)), b"x", now),
            Assembled::Refused(400, _)
        ));
        assert_eq!(a.open(), 0);
        // Too large.
        assert_eq!(
            a.offer(response(part("c", 0, false)), b"123456", now),
            Assembled::Pending
        );
        assert!(matches!(
            a.offer(response(part("c", 1, true)), b"123456", now),
            Assembled::Refused(413, _)
        ));
        // Whole and in order.
        assert_eq!(
            a.offer(response(part("d", 0, false)), b"ab", now),
            Assembled::Pending
        );
        assert_eq!(
            a.offer(response(part("d", 1, true)), b"cd", now),
            Assembled::Complete(response(part("d", 0, false)), b"abcd".to_vec())
        );
        // Stale sequences expire.
        assert_eq!(
            a.offer(response(part("e", 0, false)), b"ab", now),
            Assembled::Pending
        );
        assert_eq!(a.expire(now + Duration::from_secs(2)), 1);
        assert!(matches!(
            a.offer(response(part("e", 1, true)), b"x", now),
            Assembled::Refused(400, _)
        ));
        // A frame without a part is whole by itself.
        assert_eq!(
            a.offer(response(None), b"hi", now),
            Assembled::Complete(response(None), b"hi".to_vec())
        );
    }

    proptest! {
        /// Any sequence of frames (ids, sequence numbers, sizes): no panic, never more open
        /// sequences or bigger bodies than allowed, and a complete body is its chunks in order.
        #[test]
        fn the_assembler_never_exceeds_its_bounds(
            frames in proptest::collection::vec((0u8..4, 0u32..4, any::<bool>(), 0usize..8), 0..64)
        ) {
            let now = Instant::now();
            let mut a: Assembler<ResponseHead> = Assembler::new(2, 16, Duration::from_secs(1));
            let mut sent: HashMap<String, Vec<u8>> = HashMap::new();
            for (id, seq, last, len) in frames {
                let id = format!("s{id}");
                let chunk = vec![seq as u8; len];
                let expected_prefix = sent.get(&id).cloned().unwrap_or_default();
                match a.offer(response(part(&id, seq, last)), &chunk, now) {
                    Assembled::Pending => {
                        let mut body = if seq == 0 { Vec::new() } else { expected_prefix };
                        body.extend_from_slice(&chunk);
                        sent.insert(id, body);
                    }
                    Assembled::Complete(_, body) => {
                        let mut expected = if seq == 0 { Vec::new() } else { expected_prefix };
                        expected.extend_from_slice(&chunk);
                        prop_assert_eq!(body, expected);
                        sent.remove(&id);
                    }
                    Assembled::Refused(..) => {
                        sent.remove(&id);
                    }
                }
                prop_assert!(a.open() <= 2);
                prop_assert!(sent.values().all(|b| b.len() <= 16));
            }
        }


        /// Arbitrary bytes never panic the decoder; what decodes re-encodes to the same frame.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok((head, body)) = decode::<ResponseHead>(&bytes) {
                let again = encode(&head, body).unwrap();
                let (head2, body2) = decode::<ResponseHead>(&again).unwrap();
                prop_assert_eq!(head2, head);
                prop_assert_eq!(body2, body);
            }
            let _ = decode::<RequestHead>(&bytes);
        }

        /// Every header value survives the latin-1 mapping byte for byte.
        #[test]
        fn values_round_trip(value in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(string_to_value(&value_to_string(&value)), Some(value));
        }
    }
}
