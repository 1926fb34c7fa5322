//! Judging liveness on the observer's own monotonic clock. Pure: every function takes `now`
//! from the caller; nothing here reads a clock.
//!
//! - [`Liveness`]: when did I last see each host's record change? A host unchanged for the
//!   timeout is a suspect. After the observer's own outage, everyone gets a fresh start
//!   ([`Liveness::grace_all`]), so an observer that lost NATS never declares the fleet dead.
//! - [`LeaseClock`]: the same for the leader lease's revision.
//! - [`Freshness`]: may this host serve its lattice replicas locally? Only while its last
//!   acknowledged heartbeat was sent less than half the host timeout ago (docs/lattice.md,
//!   "Fencing").

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// When an observer last saw each host's record change.
#[derive(Debug, Clone)]
pub struct Liveness {
    timeout: Duration,
    seen: BTreeMap<String, Seen>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    revision: u64,
    at: Instant,
}

impl Liveness {
    /// A view that judges a host suspect after `timeout` without a change.
    pub fn new(timeout: Duration) -> Liveness {
        Liveness {
            timeout,
            seen: BTreeMap::new(),
        }
    }

    /// The timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Records that `host`'s record is at `revision`, seen at `now`. Only a new revision (or a
    /// host not seen before) moves the instant: re-reading the same value is not a heartbeat.
    pub fn observe(&mut self, host: &str, revision: u64, now: Instant) {
        match self.seen.get_mut(host) {
            Some(s) if s.revision == revision => {}
            Some(s) => *s = Seen { revision, at: now },
            None => {
                self.seen
                    .insert(host.to_string(), Seen { revision, at: now });
            }
        }
    }

    /// Forgets a host (its record was deleted).
    pub fn forget(&mut self, host: &str) {
        self.seen.remove(host);
    }

    /// Keeps only these hosts (after a re-list).
    pub fn retain(&mut self, hosts: &[&str]) {
        self.seen.retain(|h, _| hosts.contains(&h.as_str()));
    }

    /// Restarts every host's clock at `from` (at the earliest): after the observer reconnects,
    /// it judges nobody on time it was not listening. `from` may lie ahead of the present (the
    /// observer adds the time its peers need to be back): nobody is silent before it.
    pub fn grace_all(&mut self, from: Instant) {
        for s in self.seen.values_mut() {
            s.at = s.at.max(from);
        }
    }

    /// The revision last seen for `host`.
    pub fn revision(&self, host: &str) -> Option<u64> {
        self.seen.get(host).map(|s| s.revision)
    }

    /// How long `host`'s record has been unchanged at `now`.
    pub fn silent_for(&self, host: &str, now: Instant) -> Option<Duration> {
        self.seen
            .get(host)
            .map(|s| now.saturating_duration_since(s.at))
    }

    /// Hosts whose record has not changed for longer than the timeout at `now`, with the
    /// revision seen (the leader marks them lost with a compare-and-set at that revision).
    pub fn suspects(&self, now: Instant) -> Vec<(String, u64)> {
        self.seen
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.at) > self.timeout)
            .map(|(h, s)| (h.clone(), s.revision))
            .collect()
    }
}

/// A contender's view of the leader lease: the revision of the lease entry and when it last
/// changed. The lease is expired when that revision has not changed for the TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseClock {
    ttl: Duration,
    seen: Option<(Option<u64>, Instant)>,
}

impl LeaseClock {
    /// A lease of `ttl`.
    pub fn new(ttl: Duration) -> LeaseClock {
        LeaseClock { ttl, seen: None }
    }

    /// Records the lease entry's revision (`None`: no entry) as seen at `now`.
    pub fn observe(&mut self, revision: Option<u64>, now: Instant) {
        match self.seen {
            Some((r, _)) if r == revision => {}
            _ => self.seen = Some((revision, now)),
        }
    }

    /// Restarts the clock at `from` (after the observer's own outage; may lie ahead of the
    /// present, as for [`Liveness::grace_all`]).
    pub fn grace(&mut self, from: Instant) {
        if let Some((_, at)) = &mut self.seen {
            *at = (*at).max(from);
        }
    }

    /// Whether a contender may try to take the lease at `now`: there is no entry, or its
    /// revision has not changed for the TTL. Returns the revision to compare-and-set against
    /// (`None`: create).
    pub fn takeover(&self, now: Instant) -> Option<Option<u64>> {
        match self.seen {
            Some((None, _)) => Some(None),
            Some((Some(rev), at)) if now.saturating_duration_since(at) > self.ttl => {
                Some(Some(rev))
            }
            _ => None,
        }
    }
}

/// A host's own view of whether it may serve its lattice replicas locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    window: Duration,
    last_ack_sent: Option<Instant>,
    outage_since: Option<Instant>,
}

impl Freshness {
    /// Fresh for `window` (half the host timeout) after each acknowledged heartbeat.
    pub fn new(window: Duration) -> Freshness {
        Freshness {
            window,
            last_ack_sent: None,
            outage_since: None,
        }
    }

    /// A heartbeat sent at `sent` was acknowledged: fresh, connected.
    pub fn acked(&mut self, sent: Instant) {
        self.last_ack_sent = Some(self.last_ack_sent.map_or(sent, |s| s.max(sent)));
        self.outage_since = None;
    }

    /// A heartbeat could not reach NATS (noticed at `now`): the outage starts, unless one
    /// already has.
    pub fn unreachable(&mut self, now: Instant) {
        self.outage_since.get_or_insert(now);
    }

    /// The host was fenced (its heartbeat compare-and-set failed): not fresh until the next ack.
    pub fn fenced(&mut self) {
        self.last_ack_sent = None;
        self.outage_since = None;
    }

    /// Whether the host may serve locally at `now`: its last acked heartbeat is younger than
    /// the window; or NATS is unreachable and it was fresh when the outage began (a host keeps
    /// serving while NATS is away).
    pub fn may_serve(&self, now: Instant) -> bool {
        let Some(sent) = self.last_ack_sent else {
            return false;
        };
        let at = self.outage_since.unwrap_or(now);
        at.saturating_duration_since(sent) < self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_suspect_only_after_a_full_timeout_without_change() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut l = Liveness::new(3 * s);
        l.observe("a", 1, t0);
        l.observe("b", 1, t0);
        l.observe("a", 1, t0 + 2 * s); // same revision: not a heartbeat
        l.observe("b", 2, t0 + 2 * s);
        assert!(l.suspects(t0 + 3 * s).is_empty());
        assert_eq!(l.suspects(t0 + 4 * s), vec![("a".to_string(), 1)]);
        // The observer was away: nobody is judged on that time.
        l.grace_all(t0 + 10 * s);
        assert!(l.suspects(t0 + 12 * s).is_empty());
        assert_eq!(l.suspects(t0 + 14 * s).len(), 2);
        l.forget("a");
        assert_eq!(l.revision("a"), None);
    }

    #[test]
    fn a_grace_ahead_of_the_present_waits_for_the_peers_to_be_back() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut l = Liveness::new(3 * s);
        l.observe("late", 1, t0);
        l.observe("early", 1, t0);
        // The observer is back at t0 + 10 s and gives its peers 2 s more to reconnect.
        l.grace_all(t0 + 12 * s);
        assert_eq!(l.silent_for("late", t0 + 10 * s), Some(Duration::ZERO));
        assert!(
            l.suspects(t0 + 15 * s).is_empty(),
            "timeout counted from the grace"
        );
        l.observe("early", 2, t0 + 13 * s);
        assert_eq!(
            l.suspects(t0 + 15 * s + s / 2),
            vec![("late".to_string(), 1)]
        );
        let mut c = LeaseClock::new(3 * s);
        c.observe(Some(4), t0);
        c.grace(t0 + 12 * s);
        assert_eq!(c.takeover(t0 + 15 * s), None);
        assert_eq!(c.takeover(t0 + 15 * s + s / 2), Some(Some(4)));
    }

    #[test]
    fn the_lease_is_taken_over_only_when_unchanged_for_the_ttl() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut c = LeaseClock::new(3 * s);
        assert_eq!(c.takeover(t0), None, "nothing seen yet");
        c.observe(None, t0);
        assert_eq!(c.takeover(t0), Some(None));
        c.observe(Some(5), t0);
        assert_eq!(c.takeover(t0 + 3 * s), None);
        c.observe(Some(6), t0 + 2 * s);
        assert_eq!(c.takeover(t0 + 4 * s), None);
        assert_eq!(c.takeover(t0 + 6 * s), Some(Some(6)));
        c.grace(t0 + 10 * s);
        assert_eq!(c.takeover(t0 + 12 * s), None);
    }

    #[test]
    fn a_host_serves_only_while_fresh_or_cut_off_while_fresh() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut f = Freshness::new(1500 * ms);
        assert!(!f.may_serve(t0), "never acked");
        f.acked(t0);
        assert!(f.may_serve(t0 + 1000 * ms));
        assert!(!f.may_serve(t0 + 1600 * ms), "paused: stale");
        // NATS went away 1 s after the last ack: keep serving, however long it lasts.
        f.unreachable(t0 + 1000 * ms);
        assert!(f.may_serve(t0 + 60_000 * ms));
        f.acked(t0 + 61_000 * ms);
        assert!(f.may_serve(t0 + 61_100 * ms));
        // An outage noticed only after a long pause does not make a stale host fresh.
        f.unreachable(t0 + 70_000 * ms);
        assert!(!f.may_serve(t0 + 70_001 * ms));
        f.fenced();
        assert!(!f.may_serve(t0 + 70_002 * ms));
    }
}
