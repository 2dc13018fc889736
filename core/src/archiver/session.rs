//! The backup side of the prune protocol: session markers with heartbeats, so a Sweep
//! waits for this backup instead of the backup waiting for a lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::clock::Clock;
use crate::error::Result;
use crate::id::{Id, Id16, SnapshotId};
use crate::repository::Repository;
use crate::session::{SessionMarker, SessionState};

/// Runs `backup` inside a session: a marker when it starts, one every `heartbeat`, and a
/// last one saying whether it committed. `gen_seen` is the newest plan generation the
/// backup honoured (see [`Repository::apply_plans`]).
pub fn with_session<T>(
    repo: &Repository,
    clock: &dyn Clock,
    gen_seen: u64,
    heartbeat: Duration,
    backup: impl FnOnce() -> Result<(T, Option<SnapshotId>)>,
) -> Result<T> {
    let started_ms = clock.now_ms();
    let sid = Id16::random();
    let marker = |state, snapshot| SessionMarker {
        sid,
        started_ms,
        at_ms: clock.now_ms(),
        gen_seen,
        state,
        snapshot,
    };
    // Without its first marker no Sweep could see this backup: then it must not run.
    repo.save_session_marker(&marker(SessionState::Running, None))?;
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            let step = Duration::from_millis(200).min(heartbeat);
            let mut waited = Duration::ZERO;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(step);
                waited += step;
                if waited >= heartbeat {
                    waited = Duration::ZERO;
                    // A missed heartbeat only makes the session look older; the backup's
                    // own writes report a broken backend.
                    let _ = repo.save_session_marker(&marker(SessionState::Running, None));
                }
            }
        });
        let r = backup();
        done.store(true, Ordering::Relaxed);
        r
    });
    match result {
        Ok((v, snapshot)) => {
            let state = if snapshot.is_some() {
                SessionState::Committed
            } else {
                SessionState::Aborted
            };
            repo.save_session_marker(&marker(state, snapshot))?;
            Ok(v)
        }
        Err(e) => {
            let _ = repo.save_session_marker(&marker(SessionState::Aborted, None));
            Err(e)
        }
    }
}

/// After the commit: if a plan this backup had not seen was swept while it ran (possible
/// only when its heartbeats stopped for longer than prune's dead-session limit, e.g. a
/// suspended laptop), reloads the index and counts the blobs reachable from `tree` that
/// are gone. Zero means the snapshot is whole (invariant I3); otherwise the caller backs
/// up again with the fresh index, which stores the lost blobs anew.
pub fn swept_meanwhile(repo: &mut Repository, gen_seen: u64, tree: &Id) -> Result<usize> {
    let (sweeps, _) = repo.load_sweep_records()?;
    if !sweeps.iter().any(|(_, r)| r.gen > gen_seen) {
        return Ok(0);
    }
    // Damaged index files only make blobs look missing, which errs on the safe side.
    let _ = repo.load_index()?;
    repo.missing_blobs(tree)
}
