//! Pacing per workload:
//! - socket creation (`weft up --socket-rate`, `weft_runtime::net::SocketBudget`): a guest that
//!   opens and closes sockets in a tight loop is slowed to the workload's rate after a burst
//!   of its socket budget, and still gets every socket; an unpaced host lets it churn at full
//!   speed;
//! - response bodies (`weft up --max-response-rate`, `weft_runtime::limit::Limited`): a guest
//!   streaming forever to a client that reads as fast as it can sends no more than the burst
//!   plus the rate times the time.

use std::time::{Duration, Instant};

use crate::host::{Host, drain};

/// Sockets in the budget (the burst), the rate, and the sockets one request opens and closes.
const BUDGET: u64 = 64;
const RATE: u64 = 200;
const CHURN: u64 = 364;

fn run(rate: u64) -> (Duration, Host) {
    let host = Host::start_with(
        &[],
        &[
            "--socket-rate".into(),
            rate.to_string(),
            "--max-sockets-per-workload".into(),
            BUDGET.to_string(),
        ],
    );
    // A grant, so that sockets may be created at all (none is connected).
    host.deploy_escape(
        "churner",
        "        timeoutMs: 20000\n        sockets: [ { port: 9 } ]\n",
        "",
    );
    let start = Instant::now();
    let (status, body) = host.get("churner", &format!("/sockets?n={CHURN}&close=1"));
    let took = start.elapsed();
    assert_eq!(
        (status, body.as_str()),
        (200, format!("opened {CHURN} of {CHURN}").as_str()),
        "with --socket-rate {rate}: every socket is created, only later"
    );
    (took, host)
}

#[test]
fn socket_creation_past_the_burst_is_paced() {
    let _serial = crate::serial();
    let (paced, host) = run(RATE);
    let logs = host.up.cli(&["logs", "churner"]);
    let logs = String::from_utf8_lossy(&logs.stdout).into_owned();
    drop(host);
    let (unpaced, _host) = run(0);
    println!(
        "{CHURN} sockets opened and closed: {:.2} s at --socket-rate {RATE} (burst {BUDGET}), \
         {:.3} s unpaced",
        paced.as_secs_f64(),
        unpaced.as_secs_f64()
    );
    // The bucket starts with BUDGET tokens; each later creation waits 1/RATE s. A lower bound
    // only: the pacing must have made the guest wait at least that long.
    let floor = (CHURN - BUDGET) as f64 / RATE as f64;
    assert!(
        paced.as_secs_f64() >= floor * 0.95,
        "paced run took {paced:?}, expected at least {floor:.2} s of waiting"
    );
    assert!(
        unpaced < paced,
        "unpaced {unpaced:?} was not faster than paced {paced:?}"
    );
    assert_eq!(
        logs.matches("socket creation slowed").count(),
        1,
        "the pacing is logged once per component:\n{logs}"
    );
}

#[test]
fn response_bodies_are_paced_per_workload() {
    let _serial = crate::serial();
    const RATE_MIB: f64 = 16.0;
    // limit::response_burst: a quarter second's worth, at least 1 MiB.
    const BURST_MIB: f64 = 4.0;
    let host = Host::start_with(&[], &["--max-response-rate".into(), "16M".into()]);
    host.deploy_escape("streamer", "        timeoutMs: 2000\n", "");
    let d = drain(
        host.up.http,
        "streamer.localhost",
        "/body-forever",
        1 << 30,
        Duration::from_secs(10),
    );
    let mib = d.bytes as f64 / f64::from(1u32 << 20);
    let secs = d.elapsed.as_secs_f64();
    println!(
        "body forever at --max-response-rate 16M: {mib:.1} MiB in {secs:.2} s ({}, {})",
        d.status_line, d.ended
    );
    assert!(d.status_line.contains(" 200"), "{}", d.status_line);
    assert_eq!(d.ended, "closed by server", "cut off at the 2 s timeout");
    // One 64 KiB frame may overdraw the bucket; 1 MiB of slack covers it.
    let allowed = BURST_MIB + RATE_MIB * secs + 1.0;
    assert!(
        mib <= allowed,
        "{mib:.1} MiB in {secs:.2} s is more than the pace allows ({allowed:.1} MiB)"
    );
    assert!(
        mib >= RATE_MIB,
        "the body should flow at the pace: {mib:.1} MiB"
    );
}
