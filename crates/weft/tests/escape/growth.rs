//! The memory-growth meter (`weft up --memory-growth-rate`, `weft_runtime::limit::RateMeter`):
//! a component that grows and touches tens of MiB per request, request after request, is
//! slowed to the rate, and still gets its memory; an unmetered host lets it run at full speed.

use std::time::{Duration, Instant};

use crate::host::Host;

/// 40 MiB per request against a 64 MiB memory limit: 8 MiB of each is the store's free
/// allowance, 32 MiB is metered.
const ALLOC_MB: u64 = 40;
const RATE_MB: u64 = 32;
const REQUESTS: u32 = 4;

fn run(rate: &str) -> Duration {
    let host = Host::start_with(&[], &["--memory-growth-rate".into(), rate.into()]);
    host.deploy_escape(
        "grower",
        "        memoryLimitMb: 64\n        timeoutMs: 10000\n",
        "",
    );
    let path = format!("/alloc?mb={ALLOC_MB}");
    let start = Instant::now();
    for i in 0..REQUESTS {
        let (status, body) = host.get("grower", &path);
        assert_eq!(
            (status, body.as_str()),
            (200, format!("allocated {ALLOC_MB} MiB").as_str()),
            "request {i} with --memory-growth-rate {rate}"
        );
    }
    start.elapsed()
}

#[test]
fn memory_growth_past_the_free_allowance_is_metered() {
    let _serial = crate::serial();
    let metered = run(&format!("{RATE_MB}M"));
    let unmetered = run("0");
    println!(
        "{REQUESTS} x {ALLOC_MB} MiB: {:.2} s at --memory-growth-rate {RATE_MB}M, {:.2} s unmetered",
        metered.as_secs_f64(),
        unmetered.as_secs_f64()
    );
    // The bucket starts full (64 MiB, the memory limit): the first two requests' 32 MiB each
    // pass at once, each later one waits for 32 MiB at 32 MiB/s, about 1 s. A lower bound
    // only: the meter must have made the host wait at least that long.
    let metered_bytes = (ALLOC_MB - 8) * u64::from(REQUESTS);
    let wait_floor = (metered_bytes.saturating_sub(64)) as f64 / RATE_MB as f64;
    assert!(
        metered.as_secs_f64() >= wait_floor * 0.95,
        "metered run took {metered:?}, expected at least {wait_floor:.2} s of waiting"
    );
    assert!(
        unmetered < metered,
        "unmetered {unmetered:?} was not faster than metered {metered:?}"
    );
}
