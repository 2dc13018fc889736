//! `prune`: runs whichever phase is due, or both at once with `instant`.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::census::Census;
use super::mark;
use super::payback::{self, Action, Estimate, Policy};
use super::plan::{Plan, SweepRecord};
use super::price::PriceProfile;
use super::repack;
use super::sweep::{self, Touched};
use crate::backend::layout::{self, HostDir};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::id::{Id, Id16};
use crate::index::{IndexFile, IndexPack};
use crate::pack::PackKind;
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
}

/// Hooks into a prune run; every method defaults to nothing.
pub trait PruneProgress {
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

/// The newest verified plan and whether it was swept.
fn pending(repo: &Repository, warnings: &mut Vec<String>) -> Result<(Option<(Id, Plan)>, u64)> {
    let (plans, bad) = repo.load_plans()?;
    let (sweeps, bad2) = repo.load_sweep_records()?;
    for e in bad.into_iter().chain(bad2) {
        warnings.push(format!("ignored: {e}"));
    }
    let swept: HashSet<u64> = sweeps.iter().map(|(_, r)| r.gen).collect();
    let top = plans.last().map(|(_, p)| p.gen).unwrap_or(0);
    let top_swept = sweeps.last().map(|(_, r)| r.gen).unwrap_or(0);
    let open = plans
        .into_iter()
        .rev()
        .find(|(_, p)| !swept.contains(&p.gen));
    Ok((open, top.max(top_swept)))
}

/// A session: its host, newest marker, that marker's name, and all its markers' names.
type Session = (Id16, SessionMarker, Id, Vec<Id>);

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

/// Runs prune: Sweep when a plan is due and nothing blocks it, then Mark.
pub fn prune(
    repo: &mut Repository,
    opts: &PruneOptions,
    clock: &dyn Clock,
    progress: &dyn PruneProgress,
) -> Result<PruneReport> {
    let mut r = PruneReport {
        price_profile: opts.price.name.clone(),
        ..PruneReport::default()
    };
    let (open, top_gen) = pending(repo, &mut r.warnings)?;
    let mut census = Census::take(repo)?;
    r.bytes_before = census.total_bytes;
    let now = clock.now_ms();
    if opts.dry_run {
        r.phases.push("dry-run");
        // The plan pending, or the one Mark would publish now, swept now.
        let plan = match open {
            Some((_, p)) => p,
            None => Plan {
                gen: top_gen + 1,
                published_ms: now,
                grace_ms: opts.grace_ms,
                packs: mark::condemn(&census),
            },
        };
        r.plan_gen = Some(plan.gen);
        r.condemned_blobs = plan.packs.iter().map(|p| p.ids.len() as u64).sum();
        plan_sweep(&census, &plan, opts, now, &mut r);
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
        let due = plan.published_ms + plan.grace_ms as i64;
        r.plan_gen = Some(plan.gen);
        r.condemned_blobs = plan.packs.iter().map(|p| p.ids.len() as u64).sum();
        if now < due && !opts.instant {
            r.phases.push("waiting");
            r.sweep_due_ms = Some(due);
            return Ok(r);
        }
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
        progress.sweep_started();
        execute(
            repo,
            &census,
            &plan,
            plan_name,
            opts,
            now,
            &all_sessions,
            &mut r,
        )?;
        progress.sweep_finished();
        r.phases.push("sweep");
        census = Census::take(repo)?;
        next_gen = next_gen.max(plan.gen + 1);
    }
    let grace = if opts.instant { 0 } else { opts.grace_ms };
    if mark::condemn(&census).is_empty() {
        // Nothing unused: a plan would only make the next run wait for nothing.
        r.phases.push("clean");
        r.bytes_after = Some(census.total_bytes);
        return Ok(r);
    }
    let (name, plan) = mark::publish(repo, &census, next_gen, clock.now_ms(), grace)?;
    r.phases.push("mark");
    r.plan_gen = Some(plan.gen);
    r.condemned_blobs = plan.packs.iter().map(|p| p.ids.len() as u64).sum();
    if opts.instant {
        let sessions = self::sessions(repo, &census)?;
        progress.sweep_started();
        execute(
            repo,
            &census,
            &plan,
            name,
            opts,
            clock.now_ms(),
            &sessions,
            &mut r,
        )?;
        progress.sweep_finished();
        r.phases.push("sweep");
    } else {
        r.sweep_due_ms = Some(plan.published_ms + grace as i64);
    }
    r.bytes_after = Some(
        repo.list_all_hosts()?
            .values()
            .flat_map(|h| &h.packs)
            .map(|p| p.1)
            .sum(),
    );
    Ok(r)
}

/// Classifies and prices a sweep of `plan` now; fills the report's decisions.
fn plan_sweep(
    census: &Census,
    plan: &Plan,
    opts: &PruneOptions,
    now_ms: i64,
    r: &mut PruneReport,
) -> (Vec<Touched>, Vec<Action>) {
    let cls = sweep::classify(census, plan, now_ms);
    let cands: Vec<_> = cls.packs.iter().map(|t| t.cand.clone()).collect();
    let (mut actions, _) = payback::decide(&cands, &opts.price, census.total_bytes, &opts.policy);
    for (t, a) in cls.packs.iter().zip(actions.iter_mut()) {
        if t.superseded {
            *a = Action::Delete;
        } else if !t.repackable && matches!(a, Action::Repack { .. }) {
            *a = Action::Keep {
                reason: "holds private blobs no snapshot references any more; the next \
                         plan condemns them"
                    .into(),
            };
        }
    }
    let est = payback::totals(
        &cands,
        &actions,
        &opts.price,
        census.total_bytes,
        &opts.policy,
    );
    r.rescued += cls.rescued;
    match &mut r.estimate {
        Some(e) => e.merge(&est),
        None => r.estimate = Some(est),
    }
    r.packs
        .extend(cls.packs.iter().zip(&actions).map(|(t, a)| PackDecision {
            pack: t.cand.name.to_hex(),
            host: t.cand.host.to_hex(),
            len: t.cand.len,
            used: t.cand.live_bytes,
            action: a.clone(),
        }));
    (cls.packs, actions)
}

/// Index entries per file when a host's index is rewritten (keeps each file far below
/// the sealed-file size cap).
const BLOBS_PER_INDEX_FILE: usize = 50_000;

#[allow(clippy::too_many_arguments)]
fn execute(
    repo: &mut Repository,
    census: &Census,
    plan: &Plan,
    plan_name: Id,
    opts: &PruneOptions,
    now_ms: i64,
    sessions: &[Session],
    r: &mut PruneReport,
) -> Result<()> {
    let (touched, actions) = plan_sweep(census, plan, opts, now_ms, r);
    // 1. New packs first: until the index names them, nothing depends on them.
    let mut new_packs: BTreeMap<Id16, Vec<IndexPack>> = BTreeMap::new();
    for ((host, _), jobs) in sweep::jobs(&touched, &actions) {
        let kind = jobs[0].kind;
        let made = repack::repack(repo, census, host, kind, &jobs, &mut |_| {})?;
        r.packs_written += made.len() as u64;
        new_packs.entry(host).or_default().extend(made);
    }
    let gone: Vec<&Touched> = touched
        .iter()
        .zip(&actions)
        .filter(|(_, a)| !matches!(a, Action::Keep { .. }))
        .map(|(t, _)| t)
        .collect();
    let gone_names: HashSet<Id> = gone.iter().map(|t| t.cand.name).collect();
    let affected: HashSet<Id16> = gone
        .iter()
        .filter(|t| !t.superseded)
        .map(|t| t.cand.host)
        .chain(new_packs.keys().copied())
        .collect();
    // 2. Each affected host's index, rewritten without the packs that go; 3. then the
    // index files it replaces. A kill between leaves both, which list only packs that
    // still exist.
    for host in &affected {
        let keys = repo.host_keys_of(*host);
        let mut packs: Vec<IndexPack> = census
            .packs
            .iter()
            .filter(|(n, p)| p.host == *host && !gone_names.contains(*n))
            .map(|(n, p)| IndexPack {
                name: *n,
                len: p.len,
                kind: p.kind,
                entries: p.entries.clone(),
            })
            .collect();
        packs.extend(new_packs.remove(host).unwrap_or_default());
        packs.sort_by_key(|a| a.name);
        for private in [false, true] {
            let mine: Vec<&IndexPack> = packs
                .iter()
                .filter(|p| (p.kind != PackKind::Group) == private)
                .collect();
            let mut batch: Vec<IndexPack> = Vec::new();
            let mut blobs = 0;
            for (i, p) in mine.iter().enumerate() {
                blobs += p.entries.len();
                batch.push((*p).clone());
                if blobs >= BLOBS_PER_INDEX_FILE || i + 1 == mine.len() {
                    let f = IndexFile {
                        writer: *host,
                        created_ms: now_ms,
                        packs: std::mem::take(&mut batch),
                    };
                    repo.save_index_file_as(&keys, &f, private)?;
                    r.index_files_written += 1;
                    blobs = 0;
                }
            }
        }
        for f in census.index_files.iter().filter(|f| f.host == *host) {
            repo.remove_path(&f.path)?;
        }
    }
    // 4. The packs nothing lists any more.
    for t in &gone {
        repo.remove_path(&layout::host_file(
            &t.cand.host,
            HostDir::Packs,
            &t.cand.name,
        ))?;
    }
    // 5. The record that ends this generation, then the state it makes obsolete.
    repo.save_sweep_record(&SweepRecord {
        gen: plan.gen,
        plan: plan_name,
        finished_ms: now_ms,
        deleted: gone.iter().map(|t| (t.cand.host, t.cand.name)).collect(),
        rescued: r.rescued,
    })?;
    let (plans, _) = repo.load_plans()?;
    for (name, _) in plans.iter().filter(|(_, p)| p.gen < plan.gen) {
        repo.remove_path(&layout::admin_file(layout::PLANS, name))?;
    }
    let (sweeps, _) = repo.load_sweep_records()?;
    for (name, _) in sweeps.iter().filter(|(_, s)| s.gen < plan.gen) {
        repo.remove_path(&layout::admin_file(layout::SWEEPS, name))?;
    }
    for (host, latest, newest, names) in sessions {
        // Ended sessions need no marker; running ones only their newest.
        let ended = latest.state != SessionState::Running;
        for name in names {
            if ended || name != newest {
                repo.remove_path(&layout::host_file(host, HostDir::Sessions, name))?;
            }
        }
    }
    Ok(())
}
