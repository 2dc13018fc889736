//! The cost model: for every pack with unused blobs, what deleting or repacking it costs
//! now (bytes down and up, requests by class, money, time) against the storage it saves
//! each month; a pack is repacked when that pays back within the horizon.

use std::collections::BTreeMap;

use serde::Serialize;

use super::price::PriceProfile;
use crate::cost::RequestClass;
use crate::id::{Id16, PackId};
use crate::pack::PackKind;

/// A pack with unused blobs, as the cost model sees it.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The pack.
    pub pack: PackId,
    /// What it holds: a repack writes new packs of the same host and kind.
    pub kind: PackKind,
    /// Stored length.
    pub len: u64,
    /// Bytes of blobs still referenced (to copy when repacking).
    pub live_bytes: u64,
    /// How many blobs those are.
    pub live_blobs: u64,
    /// Number of ranged reads the live blobs take.
    pub live_ranges: u64,
    /// Bytes those reads download: the live blobs and the small gaps merged between them.
    pub download_bytes: u64,
    /// Age in days (from the index file that first listed it).
    pub age_days: f64,
}

impl Candidate {
    /// Whether nothing in it is referenced.
    pub fn fully_dead(&self) -> bool {
        self.live_bytes == 0
    }
}

/// Bytes a new pack's sealed header and trailer take, on average (entries of ~1 MiB
/// blobs; tree packs hold more, smaller entries).
const NEW_PACK_HEADER: u64 = 4096;

/// What to do with a candidate.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Delete it: nothing in it is used.
    Delete,
    /// Copy its used blobs into a new pack, then delete it.
    Repack {
        /// Days until the money spent now is saved back.
        payback_days: Option<f64>,
    },
    /// Leave it.
    Keep {
        /// Why.
        reason: String,
    },
}

/// Limits and horizon of a prune.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Repack a pack only when its cost is saved back within this many days.
    pub max_payback_days: f64,
    /// Download at most this many bytes for repacking.
    pub max_download: Option<u64>,
    /// Repack at most this many bytes of packs.
    pub max_repack: Option<u64>,
    /// restic's rule instead of payback: repack (most unused first) until unused space is at
    /// most this share of the repository (0..=1).
    pub max_unused: Option<f64>,
    /// Whether a delete frees space now (false for B2 keys that may only hide files).
    pub delete_frees: bool,
    /// Download and upload rates for time estimates (bytes/s).
    pub down_rate: f64,
    /// Upload rate (bytes/s).
    pub up_rate: f64,
    /// Size a repacked pack is filled to.
    pub pack_target: u64,
    /// Bytes of the month's free egress already used: by other downloads (restores, other
    /// buckets of the account: the user says, `--egress-used`) plus, filled in by the sweep,
    /// this month's earlier prunes (from the last sweep record).
    pub egress_used: u64,
}

/// Totals of a decision, the estimate a dry run prints.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Estimate {
    /// Packs deleted whole.
    pub packs_deleted: u64,
    /// Packs repacked.
    pub packs_repacked: u64,
    /// Packs with unused blobs left as they are.
    pub packs_kept: u64,
    /// Bytes freed by deletions and repacks.
    pub bytes_freed: u64,
    /// Unused bytes left in kept packs.
    pub bytes_unused_kept: u64,
    /// Bytes downloaded to repack.
    pub bytes_down: u64,
    /// Bytes uploaded (new packs).
    pub bytes_up: u64,
    /// Requests by class (`list`, `head`, `get`, `put`, `delete`).
    pub requests: std::collections::BTreeMap<&'static str, u64>,
    /// Money spent now, in US dollars (requests, egress and early-deletion charges).
    pub cost_now: f64,
    /// Of which charges for deleting before a minimum storage duration.
    pub early_delete: f64,
    /// Seconds of transfer at the assumed rates.
    pub seconds: f64,
    /// Money saved per month once deletions take effect.
    pub saved_per_month: f64,
    /// Days until `cost_now` is saved back (none when nothing is saved).
    pub payback_days: Option<f64>,
}

impl Estimate {
    /// Adds another sweep's estimate (an instant prune may sweep a pending plan and then
    /// its own).
    pub fn merge(&mut self, o: &Estimate) {
        self.packs_deleted += o.packs_deleted;
        self.packs_repacked += o.packs_repacked;
        self.packs_kept = o.packs_kept;
        self.bytes_freed += o.bytes_freed;
        self.bytes_unused_kept = o.bytes_unused_kept;
        self.bytes_down += o.bytes_down;
        self.bytes_up += o.bytes_up;
        for (k, v) in &o.requests {
            *self.requests.entry(k).or_default() += v;
        }
        self.cost_now += o.cost_now;
        self.early_delete += o.early_delete;
        self.seconds += o.seconds;
        self.saved_per_month += o.saved_per_month;
        self.payback_days =
            (self.saved_per_month > 0.0).then(|| self.cost_now / self.saved_per_month * 30.0);
    }

    /// Adds `n` requests of `class`.
    pub fn add_requests(&mut self, class: RequestClass, n: u64) {
        *self.requests.entry(class.as_str()).or_default() += n;
    }

    /// Prices the request counts and bytes under `price` (early-deletion charges, which
    /// depend on each pack, are added on top by [`totals`]).
    pub fn price(&mut self, price: &PriceProfile, stored: u64, policy: &Policy) {
        let requests: f64 = RequestClass::ALL
            .iter()
            .map(|c| price.requests(*c, *self.requests.get(c.as_str()).unwrap_or(&0)))
            .sum();
        self.cost_now = requests
            + price.egress(self.bytes_down, stored, policy.egress_used)
            + self.early_delete;
        self.seconds =
            self.bytes_down as f64 / policy.down_rate + self.bytes_up as f64 / policy.up_rate;
        self.payback_days =
            (self.saved_per_month > 0.0).then(|| self.cost_now / self.saved_per_month * 30.0);
    }
}

/// Money a repack of `c` costs now, and what it saves per month.
fn repack_money(c: &Candidate, price: &PriceProfile, stored: u64, policy: &Policy) -> (f64, f64) {
    let parts = (c.live_bytes as f64 / policy.pack_target as f64).max(0.0);
    let now = price.requests(RequestClass::Get, c.live_ranges)
        + price.requests(RequestClass::Put, 1) * parts
        + price.requests(RequestClass::Delete, 1)
        + price.egress(c.download_bytes, stored, 0)
        // Deleting before the minimum storage duration bills the remaining days now.
        + early_delete(c, price);
    let saved = if policy.delete_frees {
        price.storage_month(c.len) - price.storage_month(c.live_bytes)
    } else {
        0.0
    };
    (now, saved)
}

fn early_delete(c: &Candidate, price: &PriceProfile) -> f64 {
    let left = (price.min_storage_days - c.age_days).max(0.0);
    price.storage_month(c.len) * left / 30.0
}

/// Decides every candidate; returns the actions (in `cands` order) and their totals.
pub fn decide(
    cands: &[Candidate],
    price: &PriceProfile,
    stored: u64,
    policy: &Policy,
) -> (Vec<Action>, Estimate) {
    let mut actions: Vec<Action> = vec![
        Action::Keep {
            reason: String::new()
        };
        cands.len()
    ];
    // Fully unused packs: deleting never costs more than keeping them (a minimum storage
    // duration bills the same days either way), so they always go.
    for (i, c) in cands.iter().enumerate() {
        if c.fully_dead() {
            actions[i] = Action::Delete;
        }
    }
    // Partly used packs, best first.
    let mut order: Vec<(usize, f64, f64)> = cands
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.fully_dead())
        .map(|(i, c)| {
            let (now, saved) = repack_money(c, price, stored, policy);
            (i, now, saved)
        })
        .collect();
    let unused_total: u64 = cands.iter().map(|c| c.len - c.live_bytes).sum();
    let mut unused_left = unused_total;
    if policy.max_unused.is_some() || !price.priced {
        // Most unused share first.
        order.sort_by(|a, b| {
            let ua = 1.0 - cands[a.0].live_bytes as f64 / cands[a.0].len.max(1) as f64;
            let ub = 1.0 - cands[b.0].live_bytes as f64 / cands[b.0].len.max(1) as f64;
            ub.total_cmp(&ua)
        });
        for c in cands.iter().filter(|c| c.fully_dead()) {
            unused_left -= c.len;
        }
    } else {
        order.sort_by(|a, b| payback(a.1, a.2).total_cmp(&payback(b.1, b.2)));
    }
    // Without money at stake (local disks, SFTP) the question is only time; restic's
    // default of at most 5% unused space is the rule then.
    let max_unused = policy.max_unused.or((!price.priced).then_some(0.05));
    let mut down = 0u64;
    let mut repacked = 0u64;
    for (i, now, saved) in order {
        let c = &cands[i];
        // The repacks taken before this one used part of the month's free egress.
        let now = now - price.egress(c.download_bytes, stored, 0)
            + price.egress(c.download_bytes, stored, policy.egress_used + down);
        let pb = payback(now, saved);
        let reason = if let Some(limit) = max_unused {
            (unused_left as f64 <= limit * stored as f64)
                .then(|| format!("unused space already within {:.0}%", limit * 100.0))
        } else if !policy.delete_frees {
            Some("deleting only hides files with this key: nothing would be saved".into())
        } else if c.age_days < price.min_storage_days {
            // Until its minimum storage duration is over, the pack is billed whether it goes
            // or not: a repack now saves nothing yet and stores the live blobs twice, while
            // a later prune does the same repack for less (and more of it may be dead then).
            Some(format!(
                "younger than the {:.0}-day minimum storage duration: repacking later costs less",
                price.min_storage_days
            ))
        } else if pb > policy.max_payback_days {
            Some(if pb.is_finite() {
                format!(
                    "repacking pays back in {:.0} days, more than the {:.0}-day horizon",
                    pb, policy.max_payback_days
                )
            } else {
                "repacking saves nothing".into()
            })
        } else {
            None
        };
        let over_budget = policy
            .max_download
            .is_some_and(|m| down + c.download_bytes > m)
            || policy.max_repack.is_some_and(|m| repacked + c.len > m);
        actions[i] = match (reason, over_budget) {
            (Some(reason), _) => Action::Keep { reason },
            (None, true) => Action::Keep {
                reason: "over the download or repack budget".into(),
            },
            (None, false) => {
                down += c.download_bytes;
                repacked += c.len;
                unused_left = unused_left.saturating_sub(c.len - c.live_bytes);
                Action::Repack {
                    payback_days: pb.is_finite().then_some(pb),
                }
            }
        };
    }
    let est = totals(cands, &actions, price, stored, policy);
    (actions, est)
}

fn payback(now: f64, saved: f64) -> f64 {
    if now <= 0.0 {
        0.0
    } else if saved <= 0.0 {
        f64::INFINITY
    } else {
        now / saved * 30.0
    }
}

/// The totals of a set of actions.
pub fn totals(
    cands: &[Candidate],
    actions: &[Action],
    price: &PriceProfile,
    stored: u64,
    policy: &Policy,
) -> Estimate {
    let mut e = Estimate::default();
    for (c, a) in cands.iter().zip(actions) {
        match a {
            Action::Delete => {
                e.packs_deleted += 1;
                e.bytes_freed += c.len;
                e.add_requests(RequestClass::Delete, 1);
                if policy.delete_frees {
                    e.saved_per_month += price.storage_month(c.len);
                }
            }
            Action::Repack { .. } => {
                e.packs_repacked += 1;
                // What the new packs take back is subtracted below, once they are sized.
                e.bytes_freed += c.len;
                e.bytes_down += c.download_bytes;
                e.add_requests(RequestClass::Get, c.live_ranges);
                e.add_requests(RequestClass::Delete, 1);
                if policy.delete_frees {
                    e.saved_per_month +=
                        price.storage_month(c.len) - price.storage_month(c.live_bytes);
                }
                e.early_delete += early_delete(c, price);
            }
            Action::Keep { .. } => {
                e.packs_kept += 1;
                e.bytes_unused_kept += c.len - c.live_bytes;
            }
        }
    }
    // New packs, per host and kind (each repacks into its own packs, the last one partly
    // full): full ones overshoot the target by about half a blob before the writer closes
    // them, then each is padded (Padmé) and gets its header.
    let mut groups: BTreeMap<(Id16, u8), (u64, u64)> = BTreeMap::new();
    for (c, a) in cands.iter().zip(actions) {
        if matches!(a, Action::Repack { .. }) {
            let g = groups.entry((c.pack.host, c.kind as u8)).or_default();
            g.0 += c.live_bytes;
            g.1 += c.live_blobs;
        }
    }
    for (live, blobs) in groups.into_values().filter(|(live, _)| *live > 0) {
        let full = policy.pack_target + live / blobs.max(1) / 2;
        let packs = live.div_ceil(full);
        let last = live - (packs - 1) * full;
        let padded = (packs - 1) * crate::pack::padme(full) + crate::pack::padme(last);
        e.bytes_up += padded + packs * NEW_PACK_HEADER;
        e.add_requests(RequestClass::Put, packs);
    }
    e.bytes_freed = e.bytes_freed.saturating_sub(e.bytes_up);
    e.price(price, stored, policy);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;

    fn cand(len: u64, live: u64, age: f64) -> Candidate {
        Candidate {
            pack: PackId::new(Id16([1; 16]), Id::of_bytes(&len.to_le_bytes())),
            kind: PackKind::Group,
            len,
            live_bytes: live,
            live_blobs: live.div_ceil(1 << 20),
            live_ranges: if live > 0 { 3 } else { 0 },
            download_bytes: live,
            age_days: age,
        }
    }

    fn policy() -> Policy {
        Policy {
            max_payback_days: 90.0,
            max_download: None,
            max_repack: None,
            max_unused: None,
            delete_frees: true,
            down_rate: 50e6,
            up_rate: 10e6,
            pack_target: 16 << 20,
            egress_used: 0,
        }
    }

    #[test]
    fn dead_packs_go_and_partial_ones_repack_only_when_they_pay_back() {
        let s3 = PriceProfile::builtin("s3-standard").expect("profile");
        // 16 MB packs: 90% unused repacks at once; 0.1% unused saves $0.0000004 a month
        // against $0.000006 of requests, which takes over a year to pay back.
        let cands = [
            cand(16_000_000, 0, 100.0),
            cand(16_000_000, 1_600_000, 100.0),
            cand(16_000_000, 15_984_000, 100.0),
        ];
        let (actions, est) = decide(&cands, &s3, 1_000_000_000_000, &policy());
        assert_eq!(actions[0], Action::Delete);
        assert!(matches!(actions[1], Action::Repack { .. }), "{actions:?}");
        assert!(matches!(actions[2], Action::Keep { .. }), "{actions:?}");
        assert_eq!(est.packs_deleted, 1);
        assert_eq!(est.bytes_down, 1_600_000);
        assert_eq!(est.requests["get"], 3);
        assert!(est.saved_per_month > 0.0);
    }

    #[test]
    fn minimum_storage_duration_delays_repacks_of_young_packs() {
        let wasabi = PriceProfile::builtin("wasabi").expect("profile");
        let mut p = policy();
        p.max_payback_days = 30.0;
        let young = cand(16_000_000, 8_000_000, 1.0);
        let old = cand(16_000_000, 8_000_000, 200.0);
        let (actions, _) = decide(&[young, old], &wasabi, 1_000_000_000, &p);
        assert!(matches!(actions[0], Action::Keep { .. }), "{actions:?}");
        assert!(matches!(actions[1], Action::Repack { .. }), "{actions:?}");
    }

    #[test]
    fn young_packs_wait_for_their_minimum_storage_duration_however_well_they_pay() {
        // 90% unused pays back in about 4 days, but until day 30 the old pack is billed
        // anyway: repacking at day 10 only stores the live tenth twice for 20 days.
        let ia = PriceProfile::builtin("s3-onezone-ia").expect("profile");
        let mut p = policy();
        p.max_payback_days = 365.0;
        let young = cand(16_000_000, 1_600_000, 10.0);
        let old = cand(16_000_000, 1_600_000, 30.0);
        let dead = cand(16_000_000, 0, 10.0);
        let (actions, _) = decide(&[young, old, dead], &ia, 1_000_000_000, &p);
        assert!(
            matches!(&actions[0], Action::Keep { reason } if reason.contains("minimum storage")),
            "{actions:?}"
        );
        assert!(matches!(actions[1], Action::Repack { .. }), "{actions:?}");
        assert_eq!(actions[2], Action::Delete);
    }

    #[test]
    fn the_free_egress_allowance_is_spent_once_per_run() {
        // 100 GB free: each 60 GB repack alone looks free, but only the first one is.
        let s3 = PriceProfile::builtin("s3-standard").expect("profile");
        let mut p = policy();
        p.pack_target = 100_000_000_000;
        let big = |live| cand(120_000_000_000, live, 100.0);
        let cands = [big(60_000_000_000), big(61_000_000_000)];
        let (actions, est) = decide(&cands, &s3, 1_000_000_000_000, &p);
        assert!(matches!(actions[0], Action::Repack { .. }), "{actions:?}");
        // The second pays $0.09/GB for 21 of its 61 GB: $1.89 now against $1.35 a month
        // saved is 42 days, still within 90 days; its estimate counts that egress.
        assert!(matches!(actions[1], Action::Repack { .. }), "{actions:?}");
        assert!(est.cost_now > 1.8, "{est:?}");
        p.max_payback_days = 30.0;
        let (actions, _) = decide(&cands, &s3, 1_000_000_000_000, &p);
        assert!(matches!(actions[0], Action::Repack { .. }), "{actions:?}");
        assert!(matches!(actions[1], Action::Keep { .. }), "{actions:?}");
    }

    #[test]
    fn egress_earlier_prunes_used_this_month_is_not_free_again() {
        let s3 = PriceProfile::builtin("s3-standard").expect("profile");
        let mut p = policy();
        p.pack_target = 100_000_000_000;
        let cands = [cand(16_000_000_000, 15_000_000_000, 100.0)];
        let (a, fresh) = decide(&cands, &s3, 1_000_000_000_000, &p);
        assert!(matches!(a[0], Action::Repack { .. }), "{a:?}");
        assert!(fresh.cost_now < 0.01, "within the free 100 GB: {fresh:?}");
        p.egress_used = 100_000_000_000;
        let (a, spent) = decide(&cands, &s3, 1_000_000_000_000, &p);
        // 15 GB at $0.09 is $1.35 against 1 GB saved ($0.023 a month): years.
        assert!(matches!(a[0], Action::Keep { .. }), "{a:?}");
        assert!(
            spent.cost_now == 0.0 || spent.packs_repacked == 0,
            "{spent:?}"
        );
    }

    #[test]
    fn hiding_deletes_save_nothing_and_time_only_profiles_keep_unused_under_5_percent() {
        let b2 = PriceProfile::builtin("b2").expect("profile");
        let mut p = policy();
        p.delete_frees = false;
        let (actions, est) = decide(&[cand(16_000_000, 1_000_000, 50.0)], &b2, 1_000_000_000, &p);
        assert!(matches!(actions[0], Action::Keep { .. }));
        assert_eq!(est.saved_per_month, 0.0);
        let local = PriceProfile::builtin("local").expect("profile");
        let cands = [
            cand(16_000_000, 8_000_000, 1.0),
            cand(16_000_000, 15_500_000, 1.0),
        ];
        let (actions, _) = decide(&cands, &local, 100_000_000, &policy());
        assert!(matches!(actions[0], Action::Repack { .. }), "{actions:?}");
        assert!(matches!(actions[1], Action::Keep { .. }), "{actions:?}");
    }

    #[test]
    fn budgets_cap_the_repacking() {
        let s3 = PriceProfile::builtin("s3-standard").expect("profile");
        let mut p = policy();
        p.max_download = Some(1_000_000);
        let cands = [
            cand(16_000_000, 800_000, 100.0),
            cand(16_000_000, 900_000, 100.0),
        ];
        let (actions, est) = decide(&cands, &s3, 1_000_000_000, &p);
        assert_eq!(est.packs_repacked, 1, "{actions:?}");
        assert!(est.bytes_down <= 1_000_000);
    }
}
