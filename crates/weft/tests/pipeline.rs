//! WASI 0.3 streams across components: `pipeline.wasm` is `pipe-stage -> pipe-stage ->
//! p3-service` fused into one component (tests/fixtures/build-guests.sh). Each stage streams the
//! request body to the next with every byte incremented; the last echoes it. 64 MiB go through
//! all three with bounded memory, and clients that hang up mid-stream leave nothing behind.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A `/proc/PID/status` field in KiB (`VmHWM`: peak RSS, `VmRSS`: current).
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Streams `total` bytes (byte i = i * 7 mod 256) to `/echo` and checks every response byte is
/// the request byte plus `shift`, without holding either body in memory.
fn stream_through(addr: std::net::SocketAddr, total: usize, shift: u8) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: {total}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 256) as u8).collect();
        let mut sent = 0;
        while sent < total {
            let n = chunk.len().min(total - sent);
            s.write_all(&chunk[..n]).unwrap();
            sent += n;
        }
    });
    // Read the head, then the chunked body, checking bytes as they come.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        reader.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut got = 0usize;
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut pending = Vec::new();
    loop {
        let n = reader.read(&mut buf).expect("body");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        // Decode complete chunks out of `raw`.
        while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
            let size_line = String::from_utf8_lossy(&raw[..eol]).to_string();
            let size = usize::from_str_radix(size_line.trim(), 16).expect("chunk size");
            if raw.len() < eol + 2 + size + 2 {
                break;
            }
            pending.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
            raw.drain(..eol + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
        for b in pending.drain(..) {
            let want = ((got * 7 % 256) as u8).wrapping_add(shift);
            assert_eq!(b, want, "byte {got} differs");
            got += 1;
        }
    }
    writer.join().unwrap();
    assert_eq!(got, total, "response body length");
}

#[test]
fn sixty_four_mib_through_three_components_with_bounded_memory() {
    let server = Server::start(&guest("pipeline.wasm"), &[]);
    let pid = server.child.id();
    // Warm up (compiles, first instance), then measure.
    stream_through(server.addr, 1 << 20, 2);
    let before = proc_kib(pid, "VmHWM:");
    stream_through(server.addr, 64 << 20, 2);
    let after = proc_kib(pid, "VmHWM:");
    // The kernel's RSS counters are per-CPU and read approximately, so with several threads a
    // later VmHWM can read a little lower than an earlier one: that is no growth.
    let grew = after.saturating_sub(before);
    eprintln!(
        "pipeline: peak RSS {} KiB before, {} KiB after streaming 64 MiB (+{} KiB)",
        before, after, grew
    );
    assert!(
        grew < 32 * 1024,
        "peak RSS grew by {grew} KiB while streaming 64 MiB: the body is being buffered"
    );
}

#[test]
fn cancelling_mid_stream_leaks_nothing() {
    let server = Server::start(&guest("pipeline.wasm"), &[]);
    let pid = server.child.id();
    stream_through(server.addr, 1 << 20, 2);
    let start = proc_kib(pid, "VmRSS:");
    for _ in 0..20 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        write!(
            s,
            "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            64 << 20
        )
        .unwrap();
        let chunk = vec![1u8; 64 * 1024];
        for _ in 0..64 {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
        // Hang up with 4 MiB of 64 sent and the response unread.
        drop(s);
    }
    // The host keeps serving, correctly.
    std::thread::sleep(Duration::from_millis(500));
    stream_through(server.addr, 4 << 20, 2);
    let end = proc_kib(pid, "VmRSS:");
    eprintln!("pipeline: RSS {start} KiB before 20 cancelled streams, {end} KiB after");
    assert!(
        end < start + 32 * 1024,
        "RSS grew by {} KiB over 20 cancelled 64 MiB streams",
        end.saturating_sub(start)
    );
}

/// `examples/pipeline/weft.yaml` deployed with `weft up`: the link plan (explicit `links`) and
/// automatic composition give the same transformation as the fixture composed by wasm-tools.
#[test]
fn the_pipeline_example_composes_and_streams_under_weft_up() {
    let dir = tempfile::tempdir().unwrap();
    for (guest_file, name) in [
        ("pipe-stage.wasm", "pipe-stage.wasm"),
        ("p3-service.wasm", "p3-service.wasm"),
    ] {
        std::fs::copy(guest(guest_file), dir.path().join(name)).unwrap();
    }
    let manifest =
        std::fs::read_to_string(repo_root().join("examples/pipeline/weft.yaml")).unwrap();
    let file = dir.path().join("weft.yaml");
    std::fs::write(&file, manifest).unwrap();
    let up = common::up::Up::start(&dir.path().join("data"));
    up.deploy_ok(&file);
    let r = request(
        up.http,
        "POST",
        "/echo",
        &[("Host", "pipeline.localhost")],
        b"abc",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "cde");
    // 8 MiB with the same streaming check as the fixture.
    let big: Vec<u8> = (0..8usize << 20).map(|i| (i * 7 % 256) as u8).collect();
    let r = request(
        up.http,
        "POST",
        "/echo",
        &[("Host", "pipeline.localhost")],
        &big,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), big.len());
    assert!(
        r.body
            .iter()
            .zip(&big)
            .all(|(o, i)| *o == i.wrapping_add(2)),
        "the composed pipeline changed the body differently"
    );
}
