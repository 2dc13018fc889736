//! Sweep: after the grace period, with no backup that could still use a condemned blob
//! running, delete and repack what the plan condemned and nothing references again.
//!
//! The work is listed before anything changes, so the estimate a dry run prints names the
//! same requests the sweep then makes: new packs, each affected host's index rewritten,
//! the index files and packs it supersedes removed, the sweep record, and the old state.

mod classify;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

pub use classify::{classify, jobs, Classified, Touched};

use super::census::{Census, IndexedPack};
use super::payback::{self, Action};
use super::plan::{Plan, SweepRecord};
use super::repack;
use super::run::{PackDecision, PruneOptions, PruneReport, Session, StateFiles};
use crate::backend::layout::{self, HostDir};
use crate::cost::RequestClass;
use crate::crypto::keys::HostKeys;
use crate::error::Result;
use crate::id::{Id, Id16};
use crate::index::file::BLOBS_PER_INDEX_FILE;
use crate::index::{IndexFile, IndexPack};
use crate::pack::PackKind;
use crate::repository::Repository;
use crate::session::SessionState;

/// Everything a sweep will do, decided before it does any of it.
pub struct Work {
    /// Touched packs and what happens to each.
    pub touched: Vec<Touched>,
    /// Parallel to `touched`.
    pub actions: Vec<Action>,
    /// Hosts whose index is rewritten.
    pub affected: BTreeSet<Id16>,
    /// Index files those rewrites supersede.
    pub old_index: Vec<String>,
    /// Index files the rewrites write.
    pub new_index_files: u64,
    /// Session markers to remove.
    pub old_markers: Vec<String>,
    /// Plans and sweep records of earlier generations to remove.
    pub old_state: Vec<String>,
}

impl Work {
    /// Packs deleted or repacked.
    fn gone(&self) -> impl Iterator<Item = &Touched> {
        self.touched
            .iter()
            .zip(&self.actions)
            .filter(|(_, a)| !matches!(a, Action::Keep { .. }))
            .map(|(t, _)| t)
    }
}

/// The packs of `host` that survive, by name (new packs come on top).
fn surviving<'a>(
    census: &'a Census,
    host: &Id16,
    gone: &BTreeSet<Id>,
) -> Vec<(&'a Id, &'a IndexedPack)> {
    let mut packs: Vec<_> = census
        .packs
        .iter()
        .filter(|(n, p)| p.host == *host && !gone.contains(*n))
        .collect();
    packs.sort_by_key(|(n, _)| **n);
    packs
}

/// Writes the index files of one host and scope (shared or private): `survivors` then
/// `new`, `BLOBS_PER_INDEX_FILE` blobs at a time. Entries are copied one file's worth at a
/// time, never the whole index at once.
#[allow(clippy::too_many_arguments)]
fn write_index(
    repo: &Repository,
    keys: &HostKeys,
    host: Id16,
    now_ms: i64,
    private: bool,
    survivors: &[(&Id, &IndexedPack)],
    new: Vec<IndexPack>,
    r: &mut PruneReport,
) -> Result<()> {
    let mine = |kind: PackKind| (kind != PackKind::Group) == private;
    let packs = survivors
        .iter()
        .filter(|(_, p)| mine(p.kind))
        .map(|(n, p)| IndexPack {
            name: **n,
            len: p.len,
            kind: p.kind,
            entries: p.entries.clone(),
        })
        .chain(new.into_iter().filter(|p| mine(p.kind)));
    let mut batch = Vec::new();
    let mut blobs = 0;
    let mut save = |packs: Vec<IndexPack>| -> Result<()> {
        let f = IndexFile {
            writer: host,
            created_ms: now_ms,
            packs,
        };
        repo.save_index_file_as(keys, &f, private)?;
        r.index_files_written += 1;
        Ok(())
    };
    for p in packs {
        blobs += p.entries.len();
        batch.push(p);
        if blobs >= BLOBS_PER_INDEX_FILE {
            save(std::mem::take(&mut batch))?;
            blobs = 0;
        }
    }
    if !batch.is_empty() {
        save(batch)?;
    }
    Ok(())
}

/// Classifies, prices and lists a sweep of `plan` now; fills the report's decisions and
/// estimate.
pub fn plan(
    census: &Census,
    plan: &Plan,
    opts: &PruneOptions,
    now_ms: i64,
    sessions: &[Session],
    state: &StateFiles,
    r: &mut PruneReport,
) -> Work {
    let cls = classify(census, plan, now_ms);
    let cands: Vec<_> = cls.packs.iter().map(|t| t.cand.clone()).collect();
    let mut policy = opts.policy.clone();
    // What other downloads took (the user's --egress-used) plus this month's earlier prunes.
    policy.egress_used = opts.policy.egress_used + state.egress_this_month(now_ms);
    let (mut actions, _) = payback::decide(&cands, &opts.price, census.total_bytes, &policy);
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
    let mut w = Work {
        touched: cls.packs,
        actions,
        affected: BTreeSet::new(),
        old_index: Vec::new(),
        new_index_files: 0,
        old_markers: Vec::new(),
        old_state: Vec::new(),
    };
    let gone: BTreeSet<Id> = w.gone().map(|t| t.cand.pack.name).collect();
    w.affected = w
        .gone()
        .filter(|t| !t.superseded)
        .map(|t| t.cand.pack.host)
        .collect();
    for host in &w.affected {
        // Kept blobs of repacked packs land in new packs of the same host and kind.
        let mut blobs: [usize; 2] = [0, 0];
        for (_, p) in surviving(census, host, &gone) {
            blobs[usize::from(p.kind != PackKind::Group)] += p.entries.len();
        }
        for (t, a) in w.touched.iter().zip(&w.actions) {
            if t.cand.pack.host == *host && matches!(a, Action::Repack { .. }) {
                blobs[usize::from(t.kind != PackKind::Group)] += t.keep.len();
            }
        }
        w.new_index_files += blobs
            .iter()
            .map(|b| b.div_ceil(BLOBS_PER_INDEX_FILE) as u64)
            .sum::<u64>();
        w.old_index.extend(
            census
                .index_files
                .iter()
                .filter(|f| f.host == *host)
                .map(|f| f.path.clone()),
        );
    }
    for (host, latest, newest, names) in sessions {
        // Ended sessions need no marker; running ones only their newest. The marker that
        // ended a session goes last: a sweep killed between two removals must not leave
        // a session's "running" marker alone, which would look like a live backup to the
        // next prune (and hold back its sweep for the dead-session limit).
        let ended = latest.state != SessionState::Running;
        for name in names.iter().filter(|n| *n != newest) {
            w.old_markers
                .push(layout::host_file(host, HostDir::Sessions, name));
        }
        if ended {
            w.old_markers
                .push(layout::host_file(host, HostDir::Sessions, newest));
        }
    }
    w.old_state = state
        .plans
        .iter()
        .filter(|(_, g)| *g < plan.gen)
        .map(|(n, _)| layout::admin_file(layout::PLANS, n))
        .chain(
            state
                .sweeps
                .iter()
                .filter(|(_, g)| *g < plan.gen)
                .map(|(n, _)| layout::admin_file(layout::SWEEPS, n)),
        )
        .collect();

    let mut est = payback::totals(&cands, &w.actions, &opts.price, census.total_bytes, &policy);
    // The bookkeeping around the packs: index files and the sweep record written, the
    // index files, markers and old state removed.
    let removes = (w.old_index.len() + w.old_markers.len() + w.old_state.len()) as u64;
    est.add_requests(RequestClass::Put, w.new_index_files + 1);
    est.add_requests(RequestClass::Delete, removes);
    if opts.delete_lists_versions {
        let deletes = est.requests.get("delete").copied().unwrap_or(0);
        est.add_requests(RequestClass::List, deletes);
    }
    est.price(&opts.price, census.total_bytes, &policy);
    r.rescued += cls.rescued;
    match &mut r.estimate {
        Some(e) => e.merge(&est),
        None => r.estimate = Some(est),
    }
    r.packs
        .extend(w.touched.iter().zip(&w.actions).map(|(t, a)| PackDecision {
            pack: t.cand.pack.name.to_hex(),
            host: t.cand.pack.host.to_hex(),
            len: t.cand.len,
            used: t.cand.live_bytes,
            action: a.clone(),
        }));
    w
}

/// Repack jobs of one host and kind.
type Group<'a> = ((Id16, u8), Vec<repack::Job<'a>>);

/// Repacks each group, several at once: reading one kind's packs waits on the disk or the
/// network while authenticating another's keeps a core busy. Plain threads, not rayon: a
/// repack holds a backend connection while it reads, and a rayon worker waiting for it
/// could take up another group that waits for a connection in turn. Each group holds at
/// most one connection at a time, so as many run at once as the backend has connections.
fn repack_groups(
    repo: &Repository,
    census: &Census,
    groups: &[Group<'_>],
) -> Vec<Result<Vec<IndexPack>>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(repo.max_connections())
        .clamp(1, groups.len().max(1));
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, Result<Vec<IndexPack>>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(((host, _), jobs)) = groups.get(i) else {
                            return mine;
                        };
                        let kind = jobs[0].kind;
                        mine.push((
                            i,
                            repack::repack(repo, census, *host, kind, jobs, &mut |_| {}),
                        ));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Carries out `w` for `plan`, in the order that keeps every step safe to kill.
#[allow(clippy::too_many_arguments)]
pub fn execute(
    repo: &mut Repository,
    census: &Census,
    plan: &Plan,
    plan_name: Id,
    w: &Work,
    now_ms: i64,
    state: &mut StateFiles,
    r: &mut PruneReport,
) -> Result<()> {
    // 1. New packs first: until the index names them, nothing depends on them.
    let mut new_packs: BTreeMap<Id16, Vec<IndexPack>> = BTreeMap::new();
    let groups: Vec<_> = jobs(census, &w.touched, &w.actions).into_iter().collect();
    let made = repack_groups(repo, census, &groups);
    for (((host, _), _), made) in groups.iter().zip(made) {
        let made = made?;
        r.packs_written += made.len() as u64;
        new_packs.entry(*host).or_default().extend(made);
    }
    // 2. Each affected host's index, rewritten without the packs that go; 3. then the
    // index files it replaces. A kill between leaves both, which list only packs that
    // still exist.
    let gone: BTreeSet<Id> = w.gone().map(|t| t.cand.pack.name).collect();
    for host in &w.affected {
        let keys = repo.host_keys_of(*host);
        let survivors = surviving(census, host, &gone);
        let mut new = new_packs.remove(host).unwrap_or_default();
        let (private_new, shared_new) = new.drain(..).partition(|p| p.kind != PackKind::Group);
        write_index(repo, &keys, *host, now_ms, false, &survivors, shared_new, r)?;
        write_index(repo, &keys, *host, now_ms, true, &survivors, private_new, r)?;
    }
    for path in &w.old_index {
        repo.remove_path(path)?;
    }
    // 4. The packs nothing lists any more.
    for t in w.gone() {
        repo.remove_path(&t.cand.pack.path())?;
    }
    // 5. The record that ends this generation, then the state it makes obsolete.
    let month = super::plan::month_of(now_ms);
    let downloaded: u64 = w
        .touched
        .iter()
        .zip(&w.actions)
        .filter(|(_, a)| matches!(a, Action::Repack { .. }))
        .map(|(t, _)| t.cand.download_bytes)
        .sum();
    let month_egress = state.egress_this_month(now_ms) + downloaded;
    let record = repo.save_sweep_record(&SweepRecord {
        gen: plan.gen,
        plan: plan_name,
        finished_ms: now_ms,
        deleted: w.gone().map(|t| t.cand.pack).collect(),
        rescued: r.rescued,
        month,
        month_egress,
    })?;
    state.month_egress = (month, month_egress);
    for path in w.old_state.iter().chain(&w.old_markers) {
        repo.remove_path(path)?;
    }
    state.plans.retain(|(_, g)| *g >= plan.gen);
    state.sweeps.retain(|(_, g)| *g >= plan.gen);
    state.sweeps.push((record, plan.gen));
    Ok(())
}
