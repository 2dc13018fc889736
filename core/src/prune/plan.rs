//! Prune state files (`docs/format.md`, "Prune plans and sweep records"): the plan Mark
//! publishes and the record Sweep leaves. Both are sealed under the group key (every host
//! reads plans, to treat condemned blobs as absent) and signed by the admin inside the
//! seal, so neither a host nor the provider can forge or replay one under another
//! generation. Named by the BLAKE3 of their bytes like every other file; the generation
//! orders them, not the name.

use crate::cbor::{CborError, Dec, Enc};
use crate::id::{Id, Id16, PackId};

/// Largest number of condemned entries a plan may list (about 40 MiB of ids).
const MAX_ENTRIES: usize = 1 << 20;

/// One pack a plan condemns blobs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CondemnedPack {
    /// The pack.
    pub pack: PackId,
    /// Its length, as listed.
    pub len: u64,
    /// The blob ids it holds that nothing referenced at Mark (sorted). Empty for a pack no
    /// index listed at Mark (`unindexed`).
    pub ids: Vec<Id>,
    /// The pack was in no index at Mark (left by a killed backup long ago).
    pub unindexed: bool,
}

/// A pack no index listed when a Mark ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnindexedPack {
    /// The pack.
    pub pack: PackId,
    /// Its length.
    pub len: u64,
    /// When a Mark first saw it unlisted (ms).
    pub first_seen_ms: i64,
}

/// A prune plan: what Mark found unreferenced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Generation: one more than the newest plan before it.
    pub gen: u64,
    /// When it was published (ms since the epoch); Sweep waits `grace_ms` past this.
    pub published_ms: i64,
    /// Grace period chosen at Mark.
    pub grace_ms: u64,
    /// Packs with condemned blobs, sorted by name.
    pub packs: Vec<CondemnedPack>,
    /// Packs no index listed at Mark and not condemned yet, sorted by name: a later Mark
    /// condemns one still unlisted once it was first seen longer ago than the dead-session
    /// limit (a killed backup's uploads its host never adopted).
    pub unindexed_seen: Vec<UnindexedPack>,
}

impl Plan {
    /// Whether `id` stored in pack `name` is condemned by this plan.
    pub fn condemns(&self, name: &Id, id: &Id) -> bool {
        self.pack(name)
            .is_some_and(|p| p.unindexed || p.ids.binary_search(id).is_ok())
    }

    /// The plan's entry for pack `name`.
    pub fn pack(&self, name: &Id) -> Option<&CondemnedPack> {
        self.packs
            .binary_search_by(|p| p.pack.name.cmp(name))
            .ok()
            .map(|i| &self.packs[i])
    }

    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.map(6);
        e.key(0).u64(1);
        e.key(1).u64(self.gen);
        e.key(2).i64(self.published_ms);
        e.key(3).u64(self.grace_ms);
        e.key(4).array(self.packs.len());
        for p in &self.packs {
            e.array(5)
                .bytes(&p.pack.host.0)
                .bytes(&p.pack.name.0)
                .u64(p.len)
                .bool(p.unindexed)
                .array(p.ids.len());
            for id in &p.ids {
                e.bytes(&id.0);
            }
        }
        e.key(5).array(self.unindexed_seen.len());
        for u in &self.unindexed_seen {
            e.array(4)
                .bytes(&u.pack.host.0)
                .bytes(&u.pack.name.0)
                .u64(u.len)
                .i64(u.first_seen_ms);
        }
        e.buf
    }

    /// Decodes an authenticated payload.
    pub fn decode(b: &[u8]) -> Result<Self, CborError> {
        let mut d = Dec::new(b);
        if d.map()? != 6 {
            return Err(d.err("plan must have 6 fields"));
        }
        let mut prev = None;
        expect_key(&mut d, &mut prev, 0)?;
        if d.u64()? != 1 {
            return Err(d.err("unsupported plan version"));
        }
        expect_key(&mut d, &mut prev, 1)?;
        let gen = d.u64()?;
        expect_key(&mut d, &mut prev, 2)?;
        let published_ms = d.i64()?;
        expect_key(&mut d, &mut prev, 3)?;
        let grace_ms = d.u64()?;
        expect_key(&mut d, &mut prev, 4)?;
        let n = d.array()?;
        let mut packs = Vec::with_capacity(n.min(1 << 12));
        let mut total = 0usize;
        for _ in 0..n {
            if d.array()? != 5 {
                return Err(d.err("condemned pack must have 5 fields"));
            }
            let host = Id16(d.fixed()?);
            let name = Id(d.fixed()?);
            let len = d.u64()?;
            let unindexed = d.bool()?;
            let m = d.array()?;
            total += m;
            if total > MAX_ENTRIES {
                return Err(d.err("too many condemned blobs"));
            }
            let mut ids = Vec::with_capacity(m.min(1 << 12));
            for _ in 0..m {
                ids.push(Id(d.fixed()?));
            }
            if !ids.windows(2).all(|w| w[0] < w[1]) {
                return Err(d.err("condemned ids must be sorted and unique"));
            }
            packs.push(CondemnedPack {
                pack: PackId::new(host, name),
                len,
                ids,
                unindexed,
            });
        }
        if !packs.windows(2).all(|w| w[0].pack.name < w[1].pack.name) {
            return Err(d.err("condemned packs must be sorted by name and unique"));
        }
        expect_key(&mut d, &mut prev, 5)?;
        let n = d.array()?;
        let mut unindexed_seen = Vec::with_capacity(n.min(1 << 12));
        for _ in 0..n {
            if d.array()? != 4 {
                return Err(d.err("unindexed pack must have 4 fields"));
            }
            unindexed_seen.push(UnindexedPack {
                pack: PackId::new(Id16(d.fixed()?), Id(d.fixed()?)),
                len: d.u64()?,
                first_seen_ms: d.i64()?,
            });
        }
        if !unindexed_seen
            .windows(2)
            .all(|w| w[0].pack.name < w[1].pack.name)
        {
            return Err(d.err("unindexed packs must be sorted by name and unique"));
        }
        d.finish()?;
        Ok(Self {
            gen,
            published_ms,
            grace_ms,
            packs,
            unindexed_seen,
        })
    }
}

/// What a finished Sweep did; its presence marks the plan of the same generation done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepRecord {
    /// Generation of the plan swept.
    pub gen: u64,
    /// Name of that plan file.
    pub plan: Id,
    /// When the sweep finished (ms since the epoch).
    pub finished_ms: i64,
    /// Packs deleted (dead, or repacked into new ones).
    pub deleted: Vec<PackId>,
    /// Condemned blobs that snapshots written since Mark still referenced, so were kept.
    pub rescued: u64,
    /// The calendar month (UTC) of `finished_ms` as YYYYMM.
    pub month: u32,
    /// Bytes prunes downloaded in that month, this one included: the next prune of the
    /// same month knows how much free egress is left.
    pub month_egress: u64,
}

impl SweepRecord {
    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.map(8);
        e.key(0).u64(1);
        e.key(1).u64(self.gen);
        e.key(2).bytes(&self.plan.0);
        e.key(3).i64(self.finished_ms);
        e.key(4).array(self.deleted.len());
        for p in &self.deleted {
            e.array(2).bytes(&p.host.0).bytes(&p.name.0);
        }
        e.key(5).u64(self.rescued);
        e.key(6).u64(self.month.into());
        e.key(7).u64(self.month_egress);
        e.buf
    }

    /// Decodes an authenticated payload.
    pub fn decode(b: &[u8]) -> Result<Self, CborError> {
        let mut d = Dec::new(b);
        if d.map()? != 8 {
            return Err(d.err("sweep record must have 8 fields"));
        }
        let mut prev = None;
        expect_key(&mut d, &mut prev, 0)?;
        if d.u64()? != 1 {
            return Err(d.err("unsupported sweep record version"));
        }
        expect_key(&mut d, &mut prev, 1)?;
        let gen = d.u64()?;
        expect_key(&mut d, &mut prev, 2)?;
        let plan = Id(d.fixed()?);
        expect_key(&mut d, &mut prev, 3)?;
        let finished_ms = d.i64()?;
        expect_key(&mut d, &mut prev, 4)?;
        let n = d.array()?;
        let mut deleted = Vec::with_capacity(n.min(1 << 12));
        for _ in 0..n {
            if d.array()? != 2 {
                return Err(d.err("deleted pack must be a pair"));
            }
            deleted.push(PackId::new(Id16(d.fixed()?), Id(d.fixed()?)));
        }
        expect_key(&mut d, &mut prev, 5)?;
        let rescued = d.u64()?;
        expect_key(&mut d, &mut prev, 6)?;
        let month = d.u32()?;
        expect_key(&mut d, &mut prev, 7)?;
        let month_egress = d.u64()?;
        d.finish()?;
        Ok(Self {
            gen,
            plan,
            finished_ms,
            deleted,
            rescued,
            month,
            month_egress,
        })
    }
}

/// The calendar month (UTC) of `ms` as YYYYMM.
pub fn month_of(ms: i64) -> u32 {
    use chrono::Datelike;
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.year().max(0) as u32 * 100 + t.month())
        .unwrap_or(0)
}

fn expect_key(d: &mut Dec, prev: &mut Option<u64>, want: u64) -> Result<(), CborError> {
    if d.key(prev)? != want {
        return Err(d.err("missing or unknown field"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            gen: 3,
            published_ms: 1_700_000_000_000,
            grace_ms: 86_400_000,
            packs: vec![
                CondemnedPack {
                    pack: PackId::new(Id16([1; 16]), Id([2; 32])),
                    len: 100,
                    ids: vec![Id([3; 32]), Id([4; 32])],
                    unindexed: false,
                },
                CondemnedPack {
                    pack: PackId::new(Id16([1; 16]), Id([9; 32])),
                    len: 50,
                    ids: vec![],
                    unindexed: true,
                },
            ],
            unindexed_seen: vec![UnindexedPack {
                pack: PackId::new(Id16([1; 16]), Id([4; 32])),
                len: 9,
                first_seen_ms: 5,
            }],
        }
    }

    #[test]
    fn plan_round_trips_and_answers() {
        let p = plan();
        let back = Plan::decode(&p.encode()).unwrap();
        assert_eq!(back, p);
        assert!(p.condemns(&Id([2; 32]), &Id([4; 32])));
        assert!(!p.condemns(&Id([2; 32]), &Id([5; 32])));
        assert!(p.condemns(&Id([9; 32]), &Id([5; 32])));
        assert!(!p.condemns(&Id([7; 32]), &Id([3; 32])));
    }

    #[test]
    fn unsorted_plan_is_refused() {
        let mut p = plan();
        p.packs.swap(0, 1);
        assert!(Plan::decode(&p.encode()).is_err());
        let mut p = plan();
        p.packs[0].ids.swap(0, 1);
        assert!(Plan::decode(&p.encode()).is_err());
    }

    #[test]
    fn sweep_record_round_trips() {
        let r = SweepRecord {
            gen: 3,
            plan: Id([5; 32]),
            finished_ms: 42,
            deleted: vec![PackId::new(Id16([1; 16]), Id([2; 32]))],
            rescued: 7,
            month: 202611,
            month_egress: 1 << 30,
        };
        assert_eq!(SweepRecord::decode(&r.encode()).unwrap(), r);
        let mut b = r.encode();
        b.push(0);
        assert!(SweepRecord::decode(&b).is_err());
    }
}
