//! Which packs a plan touches now, and what must survive in each: the classification
//! Mark's plan gets against a fresh census.

use std::collections::BTreeMap;

use crate::id::{Id, Id16, IdMap, IdSet, PackId};
use crate::pack::{PackEntry, PackKind};
use crate::prune::census::Census;
use crate::prune::payback::{Action, Candidate};
use crate::prune::plan::Plan;
use crate::prune::repack::Job;
use crate::repository::MERGE_GAP;

/// A pack the plan touches, as the fresh census sees it.
pub struct Touched {
    /// For the cost model.
    pub cand: Candidate,
    /// Its kind.
    pub kind: PackKind,
    /// Positions (in the census's entries of the pack) of the entries that must survive,
    /// copied when repacking: positions, not copies, so a sweep over a large repository
    /// does not hold a second copy of most of its index.
    pub keep: Vec<u32>,
    /// Whether it can be repacked (every kept blob can be authenticated).
    pub repackable: bool,
    /// No index lists it any more: a killed sweep already wrote the index without it, so
    /// it is deleted whatever the cost model says.
    pub superseded: bool,
}

/// What the plan means now.
pub struct Classified {
    /// Touched packs.
    pub packs: Vec<Touched>,
    /// Condemned blobs that a snapshot references again, so are kept.
    pub rescued: u64,
}

/// The ranged reads that fetch `entries`: how many, and how many bytes they move (the
/// gaps merged into a read are downloaded too).
fn ranges<'a>(entries: impl Iterator<Item = &'a PackEntry>) -> (u64, u64) {
    let mut offs: Vec<(u64, u64)> = entries
        .map(|e| (e.offset, e.offset + u64::from(e.slen)))
        .collect();
    offs.sort_unstable();
    let mut n = 0;
    let mut bytes = 0;
    let mut end: Option<u64> = None;
    for (s, e) in offs {
        match end {
            Some(x) if s >= x && s <= x + MERGE_GAP => bytes += e - x,
            _ => {
                n += 1;
                bytes += e - s;
            }
        }
        end = Some(e);
    }
    (n, bytes)
}

/// Applies `plan` to a fresh census: an entry goes only if the plan condemned it and no
/// snapshot references it now, or another copy of the blob survives in a pack the plan does
/// not touch (a pack written since Mark, such as a repack of a killed sweep).
pub fn classify(census: &Census, plan: &Plan, now_ms: i64) -> Classified {
    let copies = &census.copies;
    let untouched =
        |p: &Id| plan.pack(p).is_none() && census.packs.get(p).is_some_and(|x| x.present);
    let mut rescued = IdSet::default();
    let mut packs = Vec::new();
    // For a live blob whose every copy the plan condemned, one copy must stay: the one in
    // the pack with the greatest name, a choice every re-run of the sweep repeats.
    let mut survivor: IdMap<Id> = IdMap::default();
    for cp in &plan.packs {
        let Some(p) = census.packs.get(&cp.pack.name) else {
            continue;
        };
        for e in &p.entries {
            if !census.is_live(&e.id) {
                continue;
            }
            let all_condemned = !copies.of_blob(&e.id, &cp.pack.name).iter().any(|q| {
                census.packs.get(q).is_some_and(|x| x.present)
                    && plan
                        .pack(q)
                        .is_none_or(|x| x.ids.binary_search(&e.id).is_err())
            });
            if all_condemned {
                let best = copies
                    .of_blob(&e.id, &cp.pack.name)
                    .iter()
                    .filter(|q| census.packs.get(*q).is_some_and(|x| x.present))
                    .max()
                    .copied()
                    .unwrap_or(cp.pack.name);
                survivor.insert(e.id, best);
                rescued.insert(e.id);
            }
        }
    }
    for cp in &plan.packs {
        let Some(p) = census.packs.get(&cp.pack.name) else {
            // In no index: either gone already, or superseded by a killed sweep's index.
            if let Some((pack, len)) = census
                .unindexed
                .iter()
                .find(|(p, _)| p.name == cp.pack.name)
                .copied()
            {
                packs.push(Touched {
                    cand: Candidate {
                        pack,
                        kind: PackKind::Group,
                        len,
                        live_blobs: 0,
                        live_bytes: 0,
                        live_ranges: 0,
                        download_bytes: 0,
                        age_days: 0.0,
                    },
                    kind: PackKind::Group,
                    keep: Vec::new(),
                    repackable: false,
                    superseded: true,
                });
            }
            continue;
        };
        if !p.present {
            continue;
        }
        let keep: Vec<u32> = p
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                let safe_elsewhere = copies
                    .of_blob(&e.id, &cp.pack.name)
                    .iter()
                    .any(|q| *q != cp.pack.name && untouched(q));
                let condemned = cp.ids.binary_search(&e.id).is_ok();
                let goes = if survivor.get(&e.id) == Some(&cp.pack.name) {
                    false
                } else {
                    condemned || safe_elsewhere
                };
                !goes
            })
            .map(|(i, _)| i as u32)
            .collect();
        if keep.len() == p.entries.len() {
            continue; // everything it holds is used again
        }
        let kept = || keep.iter().map(|&i| &p.entries[i as usize]);
        let repackable =
            kept().all(|e| p.kind != PackKind::Private || census.private_ck(&e.id).is_some());
        let (live_ranges, download_bytes) = ranges(kept());
        packs.push(Touched {
            cand: Candidate {
                pack: PackId::new(p.host, cp.pack.name),
                kind: p.kind,
                live_blobs: keep.len() as u64,
                len: p.len,
                live_bytes: kept().map(|e| u64::from(e.slen)).sum(),
                live_ranges,
                download_bytes,
                age_days: (now_ms - p.indexed_ms).max(0) as f64 / 86_400_000.0,
            },
            kind: p.kind,
            keep,
            repackable,
            superseded: false,
        });
    }
    Classified {
        packs,
        rescued: rescued.len() as u64,
    }
}

/// Repack jobs grouped by (host, kind), from the packs the cost model chose.
pub fn jobs<'a>(
    census: &'a Census,
    touched: &'a [Touched],
    actions: &[Action],
) -> BTreeMap<(Id16, u8), Vec<Job<'a>>> {
    let mut out: BTreeMap<(Id16, u8), Vec<Job<'a>>> = BTreeMap::new();
    for (t, a) in touched.iter().zip(actions) {
        let Some(p) = census.packs.get(&t.cand.pack.name) else {
            continue;
        };
        if matches!(a, Action::Repack { .. }) {
            out.entry((t.cand.pack.host, t.kind as u8))
                .or_default()
                .push(Job {
                    pack: t.cand.pack,
                    kind: t.kind,
                    keep: &t.keep,
                    entries: &p.entries,
                });
        }
    }
    out
}
