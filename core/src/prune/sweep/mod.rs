//! Sweep: after the grace period, with no backup that could still use a condemned blob
//! running, delete and repack what the plan condemned and nothing references again.
//!
//! The work is listed before anything changes, so the estimate a dry run prints names the
//! same requests the sweep then makes: new packs, each affected host's index rewritten,
//! the index files and packs it supersedes removed, the sweep record, and the old state.

mod classify;

use std::collections::{BTreeMap, BTreeSet};

pub use classify::{classify, jobs, Classified, Touched};

use super::census::Census;
use super::payback::{self, Action};
use super::plan::{Plan, SweepRecord};
use super::repack;
use super::run::{PackDecision, PruneOptions, PruneReport, Session, StateFiles};
use crate::backend::layout::{self, HostDir};
use crate::cost::RequestClass;
use crate::error::Result;
use crate::id::{Id, Id16};
use crate::index::file::{batches, BLOBS_PER_INDEX_FILE};
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

/// The packs of `host` that survive, as index entries (new packs come on top).
fn surviving(census: &Census, host: &Id16, gone: &BTreeSet<Id>) -> Vec<IndexPack> {
    let mut packs: Vec<IndexPack> = census
        .packs
        .iter()
        .filter(|(n, p)| p.host == *host && !gone.contains(*n))
        .map(|(n, p)| IndexPack {
            name: *n,
            len: p.len,
            kind: p.kind,
            entries: p.entries.clone(),
        })
        .collect();
    packs.sort_by_key(|p| p.name);
    packs
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
    let gone: BTreeSet<Id> = w.gone().map(|t| t.cand.name).collect();
    w.affected = w
        .gone()
        .filter(|t| !t.superseded)
        .map(|t| t.cand.host)
        .collect();
    for host in &w.affected {
        // Kept blobs of repacked packs land in new packs of the same host and kind.
        let mut blobs: [usize; 2] = [0, 0];
        for p in surviving(census, host, &gone) {
            blobs[usize::from(p.kind != PackKind::Group)] += p.entries.len();
        }
        for (t, a) in w.touched.iter().zip(&w.actions) {
            if t.cand.host == *host && matches!(a, Action::Repack { .. }) {
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
        // Ended sessions need no marker; running ones only their newest.
        let ended = latest.state != SessionState::Running;
        for name in names {
            if ended || name != newest {
                w.old_markers
                    .push(layout::host_file(host, HostDir::Sessions, name));
            }
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
    est.price(&opts.price, census.total_bytes, &policy);
    r.rescued += cls.rescued;
    match &mut r.estimate {
        Some(e) => e.merge(&est),
        None => r.estimate = Some(est),
    }
    r.packs
        .extend(w.touched.iter().zip(&w.actions).map(|(t, a)| PackDecision {
            pack: t.cand.name.to_hex(),
            host: t.cand.host.to_hex(),
            len: t.cand.len,
            used: t.cand.live_bytes,
            action: a.clone(),
        }));
    w
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
    for ((host, _), jobs) in jobs(&w.touched, &w.actions) {
        let kind = jobs[0].kind;
        let made = repack::repack(repo, census, host, kind, &jobs, &mut |_| {})?;
        r.packs_written += made.len() as u64;
        new_packs.entry(host).or_default().extend(made);
    }
    // 2. Each affected host's index, rewritten without the packs that go; 3. then the
    // index files it replaces. A kill between leaves both, which list only packs that
    // still exist.
    let gone: BTreeSet<Id> = w.gone().map(|t| t.cand.name).collect();
    for host in &w.affected {
        let keys = repo.host_keys_of(*host);
        let mut packs = surviving(census, host, &gone);
        packs.extend(new_packs.remove(host).unwrap_or_default());
        for private in [false, true] {
            let mine: Vec<IndexPack> = packs
                .iter()
                .filter(|p| (p.kind != PackKind::Group) == private)
                .cloned()
                .collect();
            for batch in batches(mine) {
                let f = IndexFile {
                    writer: *host,
                    created_ms: now_ms,
                    packs: batch,
                };
                repo.save_index_file_as(&keys, &f, private)?;
                r.index_files_written += 1;
            }
        }
    }
    for path in &w.old_index {
        repo.remove_path(path)?;
    }
    // 4. The packs nothing lists any more.
    for t in w.gone() {
        repo.remove_path(&layout::host_file(
            &t.cand.host,
            HostDir::Packs,
            &t.cand.name,
        ))?;
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
        deleted: w.gone().map(|t| (t.cand.host, t.cand.name)).collect(),
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
