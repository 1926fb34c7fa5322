//! Nothing of one request's instance reaches the next: the pooling allocator reuses linear
//! memory slots, and resets each (with PAGEMAP_SCAN, only the pages the instance dirtied,
//! kept resident) before the next instance gets it. The `escape` guest's `/taint` fills a
//! static buffer and a heap allocation with 0xAB after checking that both start out zero.

use crate::host::Host;

#[test]
fn no_request_sees_what_an_earlier_instance_left_in_memory() {
    let _serial = crate::serial();
    let host = Host::start(&[]);
    host.deploy_escape(
        "tainter",
        "        memoryLimitMb: 64\n        timeoutMs: 10000\n",
        "",
    );
    // Sizes below and above the 1 MiB kept resident per slot, sequential (the same slot
    // again and again) and from four clients at once (slots handed between instances).
    for mb in [0, 1, 4, 16] {
        for i in 0..20 {
            let (status, body) = host.get("tainter", &format!("/taint?mb={mb}"));
            assert_eq!(
                (status, body.as_str()),
                (200, "static clean; heap clean"),
                "sequential request {i} with {mb} MiB"
            );
        }
    }
    let view = host.view();
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                for i in 0..25 {
                    let mb = [0, 1, 4, 16][(t + i) % 4];
                    let (status, body) = view.get("tainter", &format!("/taint?mb={mb}"));
                    assert_eq!(
                        (status, body.as_str()),
                        (200, "static clean; heap clean"),
                        "client {t}, request {i} with {mb} MiB"
                    );
                }
            });
        }
    });
}

/// The control: the check sees leftovers when there are any. `weft serve
/// --max-instance-reuse-count 2` hands one instance two requests on purpose, and the second
/// finds the first one's 0xAB in the static buffer.
#[test]
fn the_taint_check_sees_a_reused_instance() {
    let _serial = crate::serial();
    let server = crate::common::Server::start(
        &crate::common::guest("escape.wasm"),
        &["--max-instance-reuse-count", "2"],
    );
    let first = server.get("/taint?mb=1");
    assert_eq!(
        (first.status, first.text().as_str()),
        (200, "static clean; heap clean")
    );
    let second = server.get("/taint?mb=1");
    assert_eq!(second.status, 200);
    assert!(
        second.text().starts_with("static TAINTED"),
        "a reused instance must show the first request's bytes: {}",
        second.text()
    );
}
