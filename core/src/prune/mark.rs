//! Mark: which stored blobs no snapshot references, published as a signed plan.

use std::collections::HashMap;

use super::census::Census;
use super::plan::{CondemnedPack, Plan};
use crate::error::Result;
use crate::id::Id;
use crate::repository::Repository;

/// Live bytes per indexed pack (every live copy counts).
fn live_bytes(census: &Census) -> HashMap<Id, u64> {
    census
        .packs
        .iter()
        .map(|(name, p)| {
            let live = p
                .entries
                .iter()
                .filter(|e| census.live.contains(&e.id))
                .map(|e| u64::from(e.slen))
                .sum();
            (*name, live)
        })
        .collect()
}

/// What a plan made now would condemn: every indexed copy of an unreferenced blob, and
/// every copy but one of a referenced blob stored more than once (the one kept is in the
/// pack with the most live bytes, so repacking has the least to copy).
pub fn condemn(census: &Census) -> Vec<CondemnedPack> {
    let live = live_bytes(census);
    let mut keeper: HashMap<Id, Id> = HashMap::new();
    for (id, packs) in census.copies() {
        if packs.len() > 1 && census.live.contains(&id) {
            let best = packs
                .iter()
                .filter(|p| census.packs.get(*p).is_some_and(|x| x.present))
                .max_by_key(|p| (live.get(*p).copied().unwrap_or(0), **p))
                .copied();
            if let Some(b) = best {
                keeper.insert(id, b);
            }
        }
    }
    let mut out: Vec<CondemnedPack> = census
        .packs
        .iter()
        .filter(|(_, p)| p.present)
        .filter_map(|(name, p)| {
            let mut ids: Vec<Id> = p
                .entries
                .iter()
                .filter(|e| {
                    !census.live.contains(&e.id) || keeper.get(&e.id).is_some_and(|k| k != name)
                })
                .map(|e| e.id)
                .collect();
            ids.sort_unstable();
            ids.dedup();
            (!ids.is_empty()).then_some(CondemnedPack {
                host: p.host,
                name: *name,
                len: p.len,
                ids,
                unindexed: false,
            })
        })
        .collect();
    out.sort_by_key(|a| a.name);
    out
}

/// Publishes plan `gen` for `census`; returns its name and the plan.
pub fn publish(
    repo: &Repository,
    census: &Census,
    gen: u64,
    now_ms: i64,
    grace_ms: u64,
) -> Result<(Id, Plan)> {
    let plan = Plan {
        gen,
        published_ms: now_ms,
        grace_ms,
        packs: condemn(census),
    };
    let name = repo.save_plan(&plan)?;
    Ok((name, plan))
}
