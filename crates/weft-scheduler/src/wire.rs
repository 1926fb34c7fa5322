//! The wire format of forwarded ingress (docs/lattice.md, "Forwarded ingress"): one request
//! or response per NATS message, as a frame: a 4-byte big-endian head length, the head as JSON,
//! then the body. Frames come from the network (any NATS client that may publish on the
//! subjects): [`decode`] turns every malformed input into a [`FrameError`]; property tests
//! below and the `forward_frame` fuzz target check it.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The largest head a frame may carry.
pub const MAX_HEAD: usize = 64 << 10;

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
}

/// A forwarded response's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Vec<(String, String)>,
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

    proptest! {
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
