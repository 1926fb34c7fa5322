//! One consistent-enough read of a lattice's state: every bucket re-listed and decoded. Values
//! that do not decode are logged (once per revision) and left out; they never stop a host.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use weft_scheduler::records::{self, Desired, HostRecord, LEASE_KEY, LeaseRecord, ReportRecord};
use weft_scheduler::{Host, Placement, Report, State};

use crate::connect::{Lattice, snapshot};

/// The decoded state of a lattice, with the revisions that compare-and-set writes need.
#[derive(Debug, Default)]
pub struct View {
    pub desired: BTreeMap<String, Desired>,
    pub hosts: BTreeMap<String, (Host, HostRecord, u64)>,
    pub reports: BTreeMap<String, (Report, ReportRecord)>,
    pub placements: BTreeMap<(String, String), (Placement, u64)>,
    pub lease: Option<(LeaseRecord, u64)>,
    /// The revision of the lease key even when its value does not decode, so a malformed
    /// lease is taken over like an expired one instead of blocking leadership forever.
    pub lease_revision: Option<u64>,
}

/// Remembers which malformed values were already logged, so a bad value is logged once per
/// revision, not on every re-list.
#[derive(Debug, Default)]
pub struct BadValues(Mutex<BTreeSet<(&'static str, String, u64)>>);

impl BadValues {
    fn report(
        &self,
        bucket: &'static str,
        key: &str,
        revision: u64,
        error: &dyn std::fmt::Display,
    ) {
        let mut seen = match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if seen.len() > 10_000 {
            seen.clear();
        }
        if seen.insert((bucket, key.to_string(), revision)) {
            tracing::warn!(bucket, key = %key.escape_default(), revision, error = %error, "malformed lattice value ignored");
        }
    }
}

impl View {
    /// Re-lists and decodes every bucket.
    pub async fn read(lattice: &Lattice, bad: &BadValues) -> Result<View, String> {
        let mut view = View::default();
        for (key, v) in snapshot(&lattice.desired).await? {
            match records::decode_desired(&key, &v.bytes) {
                Ok(d) => {
                    view.desired.insert(key, d);
                }
                Err(e) => bad.report("desired", &key, v.revision, &e),
            }
        }
        for (key, v) in snapshot(&lattice.hosts).await? {
            match records::decode_host(&key, &v.bytes) {
                Ok((h, r)) => {
                    view.hosts.insert(key, (h, r, v.revision));
                }
                Err(e) => bad.report("hosts", &key, v.revision, &e),
            }
        }
        for (key, v) in snapshot(&lattice.status).await? {
            match records::decode_report(&key, &v.bytes) {
                Ok(r) => {
                    view.reports.insert(key, r);
                }
                Err(e) => bad.report("status", &key, v.revision, &e),
            }
        }
        for (key, v) in snapshot(&lattice.placements).await? {
            match records::decode_placement(&key, &v.bytes) {
                Ok((p, _epoch)) => {
                    view.placements
                        .insert((p.workload.clone(), p.host.clone()), (p, v.revision));
                }
                Err(e) => bad.report("placements", &key, v.revision, &e),
            }
        }
        for (key, v) in snapshot(&lattice.lease).await? {
            if key == LEASE_KEY {
                view.lease_revision = Some(v.revision);
            }
            match records::decode_lease(&key, &v.bytes) {
                Ok(l) if key == LEASE_KEY => view.lease = Some((l, v.revision)),
                Ok(_) => {}
                Err(e) => bad.report("lease", &key, v.revision, &e),
            }
        }
        Ok(view)
    }

    /// What the scheduler decides from. Reports of hosts whose current instance did not write
    /// them (a host that registered again) are left out.
    pub fn state(&self) -> State {
        State::from_parts(
            self.desired.values().map(|d| d.deployment.clone()),
            self.hosts.values().map(|(h, _, _)| h.clone()),
            self.placements.values().map(|(p, _)| p.clone()),
            self.reports
                .iter()
                .filter(|(name, (_, r))| {
                    self.hosts
                        .get(*name)
                        .is_some_and(|(_, hr, _)| hr.id == r.id)
                })
                .map(|(name, (report, _))| (name.clone(), report.clone())),
        )
    }
}
