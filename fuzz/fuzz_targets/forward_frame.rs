//! The wire format of forwarded ingress (`weft_scheduler::wire`): frames that any NATS client
//! allowed to publish on `weft.L.http.HOST` can send to a host, and replies it can send back.
//!
//! Input: raw frame bytes.
//!
//! Invariants: decoding never panics, as a request or as a response; a frame that decodes
//! re-encodes to a frame that decodes to the same head and body; a head over `MAX_HEAD` or a
//! head length past the end is refused; header values survive the latin-1 mapping byte for
//! byte; an `Assembler` fed the frames found in 64-byte windows of the input never holds more
//! open sequences or a bigger body than its bounds, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_scheduler::wire::{
    Assembled, Assembler, FrameError, MAX_HEAD, RequestHead, ResponseHead, decode, encode,
    string_to_value, value_to_string,
};

fuzz_target!(|data: &[u8]| {
    if let Some(len) = data.get(..4) {
        let head_len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if head_len > MAX_HEAD {
            assert_eq!(
                decode::<RequestHead>(data).unwrap_err(),
                FrameError::HeadTooLarge(head_len)
            );
        } else if head_len > data.len() - 4 {
            assert!(matches!(
                decode::<RequestHead>(data).unwrap_err(),
                FrameError::Truncated { .. }
            ));
        }
    }
    if let Ok((head, body)) = decode::<RequestHead>(data) {
        let again = encode(&head, body).expect("a decoded head re-encodes");
        let (head2, body2) = decode::<RequestHead>(&again).expect("a re-encoded frame decodes");
        assert_eq!(head2, head);
        assert_eq!(body2, body);
    }
    if let Ok((head, body)) = decode::<ResponseHead>(data) {
        let again = encode(&head, body).expect("a decoded head re-encodes");
        let (head2, body2) = decode::<ResponseHead>(&again).expect("a re-encoded frame decodes");
        assert_eq!(head2, head);
        assert_eq!(body2, body);
    }
    assert_eq!(
        string_to_value(&value_to_string(data)).as_deref(),
        Some(data)
    );
    let now = std::time::Instant::now();
    let mut assembler: Assembler<ResponseHead> =
        Assembler::new(2, 256, std::time::Duration::from_secs(10));
    for window in data.chunks(64) {
        if let Ok((head, chunk)) = decode::<ResponseHead>(window) {
            if let Assembled::Complete(_, body) = assembler.offer(head, chunk, now) {
                assert!(body.len() <= 256);
            }
            assert!(assembler.open() <= 2);
        }
    }
});
