//! The prune state check: plans, sweep records, session markers and the prune lock.
//!
//! A plan or sweep record that fails its signature or does not decode is an error, since
//! prune and backup ignore it (a forged plan must not steer anything) and an operator must
//! restore it from a mirror or remove it. Markers steer which sweeps wait, so a damaged
//! one is an error too. What is only a leftover (a session that stopped heartbeating
//! without ending, a lock no prune releases, the record of a sweep whose plan is gone) is a
//! warning: the next prune copes with it, but someone may want to know why.

use std::collections::HashMap;

use super::structure::Checker;
use super::{reason, Problem, ProblemKind as K};
use crate::backend::layout::{self, HostDir};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::id::{Id, Id16};
use crate::prune::lock;
use crate::session::{SessionMarker, SessionState};

/// A session still "running" whose newest marker is older than this has died without
/// saying so (prune's default `--dead-session`).
pub(super) const STALE_SESSION_MS: i64 = 7 * 24 * 3_600_000;

impl Checker<'_> {
    /// Checks every plan, sweep record and session marker, and the prune lock.
    pub(super) fn check_prune_state(&mut self) -> Result<()> {
        self.check_plans_and_sweeps()?;
        self.cancel_point()?;
        self.check_sessions(SystemClock.now_ms())?;
        if let Some(holder) = lock::holder(self.repo)? {
            self.report.add(Problem::new(
                K::PruneLocked,
                layout::PRUNE_LOCK,
                format!(
                    "a prune holds the prune lock ({holder}); if no prune is running, it \
                     died: run `cairn unlock`"
                ),
            ));
        }
        Ok(())
    }

    fn check_plans_and_sweeps(&mut self) -> Result<()> {
        let (plans, bad_plans) = self.repo.load_plans()?;
        let (sweeps, bad_sweeps) = self.repo.load_sweep_records()?;
        for (kind, dir, bad) in [
            (K::PlanDamaged, layout::PLANS, bad_plans),
            (K::SweepRecordDamaged, layout::SWEEPS, bad_sweeps),
        ] {
            for e in bad {
                let path = error_path(&e).unwrap_or_else(|| dir.to_owned());
                self.report.add(Problem::new(kind, path, reason(&e)));
            }
        }
        // Sweep removes the plans and records of earlier generations only after writing
        // its own record, so the newest record always has its plan beside it; the plan's
        // condemned packs being gone is what a finished sweep looks like.
        if let Some((name, r)) = sweeps.last() {
            if !plans.iter().any(|(_, p)| p.gen == r.gen) {
                self.report.add(Problem::new(
                    K::SweepRecordWithoutPlan,
                    layout::admin_file(layout::SWEEPS, name),
                    format!(
                        "newest sweep record (generation {}) has no plan of its generation \
                         (plan {} was removed or failed to verify)",
                        r.gen, r.plan
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Every host's markers: each must open and decode; the newest of each session says
    /// whether it is still running.
    fn check_sessions(&mut self, now_ms: i64) -> Result<()> {
        let mut newest: HashMap<(Id16, Id16), (SessionMarker, Id)> = HashMap::new();
        for (host, name) in std::mem::take(&mut self.sessions) {
            self.cancel_point()?;
            let keys = self.repo.host_keys_of(host);
            let m = match self.repo.load_session_marker(&keys, &name) {
                Ok(m) => m,
                Err(e) => {
                    let path = layout::host_file(&host, HostDir::Sessions, &name);
                    self.report
                        .add(Problem::new(K::SessionMarkerDamaged, path, reason(&e)));
                    continue;
                }
            };
            // The same order prune uses: an ended session's last word beats any
            // heartbeat, however the clocks of the markers compare.
            let rank = |m: &SessionMarker| (m.state != SessionState::Running, m.at_ms);
            match newest.get_mut(&(host, m.sid)) {
                Some(e) if rank(&m) <= rank(&e.0) => {}
                Some(e) => *e = (m, name),
                None => {
                    newest.insert((host, m.sid), (m, name));
                }
            }
        }
        let mut stale: Vec<_> = newest
            .into_iter()
            .filter(|(_, (m, _))| {
                m.state == SessionState::Running
                    && now_ms.saturating_sub(m.at_ms) > STALE_SESSION_MS
            })
            .collect();
        stale.sort_by_key(|((host, sid), _)| (*host, *sid));
        for ((host, sid), (m, name)) in stale {
            let seen = chrono::DateTime::from_timestamp_millis(m.at_ms)
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| m.at_ms.to_string());
            self.report.add(Problem::new(
                K::StaleSession,
                layout::host_file(&host, HostDir::Sessions, &name),
                format!(
                    "backup session {sid} of host {host} still says running, but its last \
                     heartbeat was {seen} ({} days ago): the backup died; prune treats it \
                     as dead and its next sweep removes the marker",
                    now_ms.saturating_sub(m.at_ms) / (24 * 3_600_000)
                ),
            ));
        }
        Ok(())
    }
}

/// The repository path an error names, for problems found by a loader that reads a whole
/// directory.
fn error_path(e: &Error) -> Option<String> {
    match e {
        Error::Corrupt { name, .. } => Some(name.clone()),
        Error::Backend(b) => Some(b.path.clone()),
        _ => None,
    }
}
