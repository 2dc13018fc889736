//! `prune`: runs whichever phase is due, or both at once with `instant`.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::census::Census;
use super::lock::{LockOwner, PruneLock};
use super::mark;
use super::payback::{Action, Estimate, Policy};
use super::plan::Plan;
use super::price::PriceProfile;
use super::sweep;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::id::{Id, Id16};
use crate::repository::Repository;
use crate::session::{SessionMarker, SessionState};

/// How to prune.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// How long a plan waits before Sweep (ms).
    pub grace_ms: u64,
    /// A running session whose last heartbeat is older than this is dead (ms).
    pub dead_session_ms: u64,
    /// Mark and Sweep at once (single-writer repositories); refused while a backup runs.
    pub instant: bool,
    /// Plan and price, change nothing.
    pub dry_run: bool,
    /// Repack limits and horizon.
    pub policy: Policy,
    /// Prices.
    pub price: PriceProfile,
    /// Who takes the prune lock.
    pub owner: LockOwner,
    /// Each delete lists the file's versions first ([`crate::backend::Properties`]'s
    /// `deletes_versions`): the estimate counts those listings.
    pub delete_lists_versions: bool,
}

/// Hooks into a prune run; every method has a default.
pub trait PruneHooks {
    /// Whether the prune that holds the lock has ended (it ran on this machine and its
    /// process is gone); its lock is then taken over.
    fn lock_holder_is_dead(&self, _holder: &LockOwner) -> bool {
        false
    }
    /// Sweep starts changing the repository (what follows is what the estimate priced).
    fn sweep_started(&self) {}
    /// Sweep is done changing the repository.
    fn sweep_finished(&self) {}
}

/// A backup session that keeps Sweep from running.
#[derive(Clone, Debug, Serialize)]
pub struct BlockingSession {
    /// Host name (from its newest snapshot) or id.
    pub host: String,
    /// Host id.
    pub host_id: String,
    /// Session id.
    pub session: String,
    /// When it started (ms).
    pub started_ms: i64,
    /// Its last heartbeat (ms).
    pub last_seen_ms: i64,
}

/// What happens to one pack.
#[derive(Clone, Debug, Serialize)]
pub struct PackDecision {
    /// Pack name.
    pub pack: String,
    /// Host id.
    pub host: String,
    /// Stored length.
    pub len: u64,
    /// Bytes of used blobs in it.
    pub used: u64,
    /// The decision.
    #[serde(flatten)]
    pub action: Action,
}

/// What a prune run did or, dry, would do.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    /// Phases run, in order: `mark`, `sweep`; or `waiting`, `blocked`, `dry-run`.
    pub phases: Vec<&'static str>,
    /// Generation of the plan swept or published last.
    pub plan_gen: Option<u64>,
    /// Blobs the newest plan condemned.
    pub condemned_blobs: u64,
    /// When the pending plan may be swept (ms).
    pub sweep_due_ms: Option<i64>,
    /// Sessions that keep Sweep waiting.
    pub blocked_by: Vec<BlockingSession>,
    /// Condemned blobs that new snapshots referenced again, kept.
    pub rescued: u64,
    /// The cost model's estimate of the sweep (run or, dry, planned).
    pub estimate: Option<Estimate>,
    /// Per pack.
    pub packs: Vec<PackDecision>,
    /// New packs written by repacking.
    pub packs_written: u64,
    /// Index files written and removed.
    pub index_files_written: u64,
    /// Stored bytes before and after.
    pub bytes_before: u64,
    /// Stored bytes after (`None` on a dry run).
    pub bytes_after: Option<u64>,
    /// Prices used.
    pub price_profile: String,
    /// Plans or sweep records ignored because they failed to verify.
    pub warnings: Vec<String>,
}

/// The prune state files a run knows of: (name, generation) of plans and sweep records.
#[derive(Default)]
pub struct StateFiles {
    /// Plans that verified.
    pub plans: Vec<(Id, u64)>,
    /// Sweep records that verified.
    pub sweeps: Vec<(Id, u64)>,
    /// (month, bytes) prunes downloaded in the month of the newest sweep record.
    pub month_egress: (u32, u64),
    /// The newest plan, swept or not (what the next Mark learns unlisted packs from).
    pub newest_plan: Option<Plan>,
}

impl StateFiles {
    /// Bytes prunes already downloaded in the month of `now_ms`.
    pub fn egress_this_month(&self, now_ms: i64) -> u64 {
        if self.month_egress.0 == super::plan::month_of(now_ms) {
            self.month_egress.1
        } else {
            0
        }
    }
}

/// The newest verified plan no sweep record closes (with its name), the newest
/// generation, and the state files.
type Pending = (Option<(Id, Plan)>, u64, StateFiles);

fn pending(repo: &Repository, warnings: &mut Vec<String>) -> Result<Pending> {
    let (plans, bad) = repo.load_plans()?;
    let (sweeps, bad2) = repo.load_sweep_records()?;
    for e in bad.into_iter().chain(bad2) {
        warnings.push(format!("ignored: {e}"));
    }
    let state = StateFiles {
        plans: plans.iter().map(|(n, p)| (*n, p.gen)).collect(),
        sweeps: sweeps.iter().map(|(n, r)| (*n, r.gen)).collect(),
        month_egress: sweeps
            .last()
            .map(|(_, r)| (r.month, r.month_egress))
            .unwrap_or_default(),
        newest_plan: plans.last().map(|(_, p)| p.clone()),
    };
    let swept: HashSet<u64> = sweeps.iter().map(|(_, r)| r.gen).collect();
    let top = plans.last().map(|(_, p)| p.gen).unwrap_or(0);
    let top_swept = sweeps.last().map(|(_, r)| r.gen).unwrap_or(0);
    let open = plans
        .into_iter()
        .rev()
        .find(|(_, p)| !swept.contains(&p.gen));
    Ok((open, top.max(top_swept), state))
}

/// Stored bytes of every listed pack.
fn pack_bytes(hosts: &std::collections::BTreeMap<Id16, crate::repository::HostFiles>) -> u64 {
    hosts.values().flat_map(|h| &h.packs).map(|p| p.1).sum()
}

/// A session: its host, newest marker, that marker's name, and all its markers' names.
pub type Session = (Id16, SessionMarker, Id, Vec<Id>);

/// The newest marker of every session of every host.
fn sessions(repo: &Repository, census: &Census) -> Result<Vec<Session>> {
    let mut out = Vec::new();
    for (host, files) in &census.hosts {
        let keys = repo.host_keys_of(*host);
        let mut by_sid: HashMap<Id16, (SessionMarker, Id, Vec<Id>)> = HashMap::new();
        for name in &files.sessions {
            let m = repo.load_session_marker(&keys, name)?;
            let e = by_sid
                .entry(m.sid)
                .or_insert_with(|| (m.clone(), *name, Vec::new()));
            e.2.push(*name);
            let newer = (m.state != SessionState::Running, m.at_ms)
                > (e.0.state != SessionState::Running, e.0.at_ms);
            if newer {
                e.0 = m;
                e.1 = *name;
            }
        }
        out.extend(by_sid.into_values().map(|(m, n, all)| (*host, m, n, all)));
    }
    Ok(out)
}

fn blocking(
    census: &Census,
    sessions: &[Session],
    gen: Option<u64>,
    now_ms: i64,
    dead_ms: u64,
) -> Vec<BlockingSession> {
    sessions
        .iter()
        .filter(|(_, m, _, _)| {
            m.state == SessionState::Running
                && gen.is_none_or(|g| m.gen_seen < g)
                && now_ms.saturating_sub(m.at_ms) < dead_ms as i64
        })
        .map(|(h, m, _, _)| BlockingSession {
            host: census.host_name(h),
            host_id: h.to_hex(),
            session: m.sid.to_hex(),
            started_ms: m.started_ms,
            last_seen_ms: m.at_ms,
        })
        .collect()
}

/// Runs prune: Sweep when a plan is due and nothing blocks it, then Mark. Holds the
/// prune lock unless it is a dry run.
pub fn prune(
    repo: &mut Repository,
    opts: &PruneOptions,
    clock: &dyn Clock,
    progress: &dyn PruneHooks,
) -> Result<PruneReport> {
    if opts.dry_run {
        return prune_locked(repo, opts, clock, progress);
    }
    let mut owner = opts.owner.clone();
    owner.since_ms = clock.now_ms();
    let lock = PruneLock::acquire(repo, &owner, &|o| progress.lock_holder_is_dead(o))?;
    let r = prune_locked(repo, opts, clock, progress);
    // Released on failure too: whatever a failed run left, the next prune finishes.
    let released = lock.release();
    let r = r?;
    released?;
    Ok(r)
}

fn prune_locked(
    repo: &mut Repository,
    opts: &PruneOptions,
    clock: &dyn Clock,
    progress: &dyn PruneHooks,
) -> Result<PruneReport> {
    let mut r = PruneReport {
        price_profile: opts.price.name.clone(),
        ..PruneReport::default()
    };
    let (open, top_gen, mut state) = pending(repo, &mut r.warnings)?;
    let now = clock.now_ms();
    if let Some((_, plan)) = open.as_ref().filter(|_| !opts.dry_run && !opts.instant) {
        // The grace period is the admin's policy at sweep time: a cron job with the default
        // may sweep a plan marked by hand with a longer one, and `--grace` overrides.
        let due = plan.published_ms + opts.grace_ms as i64;
        if now < due {
            // Most daily runs end here: say so without reading every tree.
            r.phases.push("waiting");
            r.plan_gen = Some(plan.gen);
            r.condemned_blobs = plan.packs.iter().map(|p| p.ids.len() as u64).sum();
            r.sweep_due_ms = Some(due);
            r.bytes_before = pack_bytes(&repo.list_all_hosts()?);
            return Ok(r);
        }
    }
    let mut census = Census::take(repo)?;
    r.bytes_before = census.total_bytes;
    if opts.dry_run {
        r.phases.push("dry-run");
        // The plan pending, or the one Mark would publish now, swept now.
        let plan = match open {
            Some((_, p)) => p,
            None => mark::plan(
                &census,
                state.newest_plan.as_ref(),
                top_gen + 1,
                now,
                opts.grace_ms,
                opts.dead_session_ms,
            ),
        };
        r.plan_gen = Some(plan.gen);
        r.condemned_blobs = plan.packs.iter().map(|p| p.ids.len() as u64).sum();
        let sessions = sessions(repo, &census)?;
        sweep::plan(&census, &plan, opts, now, &sessions, &state, &mut r);
        return Ok(r);
    }
    let all_sessions = sessions(repo, &census)?;
    if opts.instant {
        let live = blocking(&census, &all_sessions, None, now, opts.dead_session_ms);
        if !live.is_empty() {
            r.blocked_by = live;
            return Err(Error::InvalidInput(format!(
                "--instant refused: a backup is running ({}); run prune without --instant, \
                 which never waits for or stops a backup",
                r.blocked_by
                    .iter()
                    .map(|b| format!("host {} session {}", b.host, &b.session[..8]))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let mut next_gen = top_gen + 1;
    if let Some((plan_name, plan)) = open {
        r.plan_gen = Some(plan.gen);
        r.condemned_blobs = plan.packs.iter().map(|p| p.ids.len() as u64).sum();
        let blocked = blocking(
            &census,
            &all_sessions,
            Some(plan.gen),
            now,
            opts.dead_session_ms,
        );
        if !blocked.is_empty() {
            r.phases.push("blocked");
            r.blocked_by = blocked;
            return Ok(r);
        }
        let work = sweep::plan(&census, &plan, opts, now, &all_sessions, &state, &mut r);
        progress.sweep_started();
        sweep::execute(
            repo, &census, &plan, plan_name, &work, now, &mut state, &mut r,
        )?;
        progress.sweep_finished();
        r.phases.push("sweep");
        census = Census::take(repo)?;
        next_gen = next_gen.max(plan.gen + 1);
    }
    let grace = if opts.instant { 0 } else { opts.grace_ms };
    let plan = mark::plan(
        &census,
        state.newest_plan.as_ref(),
        next_gen,
        clock.now_ms(),
        grace,
        opts.dead_session_ms,
    );
    if !mark::worth_publishing(&plan, state.newest_plan.as_ref()) {
        // Nothing unused: a plan would only make the next run wait for nothing.
        r.phases.push("clean");
        r.bytes_after = Some(census.total_bytes);
        return Ok(r);
    }
    let name = mark::publish(repo, &plan)?;
    state.plans.push((name, plan.gen));
    state.newest_plan = Some(plan.clone());
    r.phases.push("mark");
    r.plan_gen = Some(plan.gen);
    r.condemned_blobs = plan.packs.iter().map(|p| p.ids.len() as u64).sum();
    if opts.instant {
        let sessions = self::sessions(repo, &census)?;
        let now = clock.now_ms();
        let work = sweep::plan(&census, &plan, opts, now, &sessions, &state, &mut r);
        progress.sweep_started();
        sweep::execute(repo, &census, &plan, name, &work, now, &mut state, &mut r)?;
        progress.sweep_finished();
        r.phases.push("sweep");
    } else {
        r.sweep_due_ms = Some(plan.published_ms + grace as i64);
    }
    r.bytes_after = Some(pack_bytes(&repo.list_all_hosts()?));
    Ok(r)
}
