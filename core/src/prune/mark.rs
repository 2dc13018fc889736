//! Mark: which stored blobs no snapshot references, published as a signed plan.

use super::census::Census;
use super::plan::{CondemnedPack, Plan, UnindexedPack};
use crate::error::Result;
use crate::id::{Id, IdMap, PackId};
use crate::repository::Repository;

/// Live bytes per indexed pack (every live copy counts).
fn live_bytes(census: &Census) -> IdMap<u64> {
    census
        .packs
        .iter()
        .map(|(name, p)| {
            let live = p
                .entries
                .iter()
                .filter(|e| census.is_live(&e.id))
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
    let mut keeper: IdMap<Id> = IdMap::default();
    for (id, packs) in census.copies.duplicated() {
        if census.is_live(id) {
            let best = packs
                .iter()
                .filter(|p| census.packs.get(*p).is_some_and(|x| x.present))
                .max_by_key(|p| (live.get(*p).copied().unwrap_or(0), **p))
                .copied();
            if let Some(b) = best {
                keeper.insert(*id, b);
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
                .filter(|e| !census.is_live(&e.id) || keeper.get(&e.id).is_some_and(|k| k != name))
                .map(|e| e.id)
                .collect();
            ids.sort_unstable();
            ids.dedup();
            (!ids.is_empty()).then_some(CondemnedPack {
                pack: PackId::new(p.host, *name),
                len: p.len,
                ids,
                unindexed: false,
            })
        })
        .collect();
    out.sort_by_key(|a| a.pack.name);
    out
}

/// The plan Mark would publish now: [`condemn`]'s packs, plus the packs no index lists
/// that `previous` (the newest plan) already saw unlisted at least `dead_ms` ago (uploads of
/// a backup killed long ago that its host never adopted), condemned whole; the other
/// unlisted packs are recorded as seen.
pub fn plan(
    census: &Census,
    previous: Option<&Plan>,
    gen: u64,
    now_ms: i64,
    grace_ms: u64,
    dead_ms: u64,
) -> Plan {
    let mut packs = condemn(census);
    let mut unindexed_seen = Vec::new();
    for (pack, len) in &census.unindexed {
        let first_seen_ms = previous
            .and_then(|p| {
                p.unindexed_seen
                    .binary_search_by(|u| u.pack.name.cmp(&pack.name))
                    .ok()
                    .map(|i| p.unindexed_seen[i].first_seen_ms)
            })
            .unwrap_or(now_ms);
        if now_ms.saturating_sub(first_seen_ms) >= dead_ms as i64 {
            packs.push(CondemnedPack {
                pack: *pack,
                len: *len,
                ids: Vec::new(),
                unindexed: true,
            });
        } else {
            unindexed_seen.push(UnindexedPack {
                pack: *pack,
                len: *len,
                first_seen_ms,
            });
        }
    }
    packs.sort_by_key(|p| p.pack.name);
    unindexed_seen.sort_by_key(|u| u.pack.name);
    Plan {
        gen,
        published_ms: now_ms,
        grace_ms,
        packs,
        unindexed_seen,
    }
}

/// Publishes `plan`; returns its name.
pub fn publish(repo: &Repository, plan: &Plan) -> Result<Id> {
    repo.save_plan(plan)
}

/// Whether publishing `plan` would tell anyone anything new: it condemns something, or it
/// records unlisted packs `previous` did not.
pub fn worth_publishing(plan: &Plan, previous: Option<&Plan>) -> bool {
    let seen = |p: &Plan| {
        p.unindexed_seen
            .iter()
            .map(|u| u.pack.name)
            .collect::<Vec<_>>()
    };
    !plan.packs.is_empty()
        || previous.map_or(!plan.unindexed_seen.is_empty(), |p| seen(p) != seen(plan))
}
