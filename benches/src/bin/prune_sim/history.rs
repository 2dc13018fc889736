//! The shared input of every strategy: a year of daily backups of one machine (which blobs
//! each day's backup writes, when each blob stops being part of the machine) and the
//! snapshots retention keeps after each day's forget. Generated once from the seed, so every
//! strategy and profile prunes the same history.

use cairn_core::forget::{self, Count};
use cairn_core::snapshot::{Snapshot, Summary};
use cairn_core::{Id, Id16};
use chrono::{TimeZone, Utc};

pub const MIB: u64 = 1 << 20;

/// splitmix64: tiny, well mixed, and the same stream on every platform (integer only; the
/// float helpers only divide), so a seed names one history everywhere.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n); n > 0.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in [lo, hi].
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// A blob's stored size: a mixture of small files (one blob each) and FastCDC chunks
/// (512 KiB min, 1 MiB average, 8 MiB max). The mean is about 1.04 MiB.
fn blob_size(r: &mut Rng) -> u32 {
    let (lo, hi) = match r.below(100) {
        0..=29 => (4 << 10, 256 << 10),
        30..=79 => (512 << 10, 3 * MIB / 2),
        80..=96 => (3 * MIB / 2, 5 * MIB / 2),
        _ => (5 * MIB / 2, 8 * MIB),
    };
    r.between(lo, hi) as u32
}

/// Referenced by the snapshot of every day in `born..died`.
#[derive(Clone, Copy, Debug)]
pub struct Blob {
    pub size: u32,
    pub born: u32,
    pub died: u32,
}

impl Blob {
    /// Whether any of `kept` (snapshot days) references it.
    pub fn referenced(&self, kept: &[u32]) -> bool {
        kept.iter().any(|&s| self.born <= s && s < self.died)
    }
}

/// How the machine changes; `Churn::default()` is the documented model.
pub struct Churn {
    pub machine_bytes: u64,
    /// Share of the machine's blobs replaced on an ordinary day: uniform in this range.
    pub daily: (f64, f64),
    /// Chance per day of a burst (an upgrade, a reorganised photo library) ...
    pub burst_chance: f64,
    /// ... which rewrites a contiguous run of this share of the blobs.
    pub burst: (f64, f64),
    /// Share of the blobs that are new files each day, and share deleted.
    pub grow: f64,
    pub shrink: f64,
    /// The machine is 100 runs of blobs ("directories") in archiver order, in three tiers:
    /// (directories, share of the day's ordinary changes).
    pub tiers: [(usize, f64); 3],
}

impl Default for Churn {
    /// Clustered: hot directories (mail, browser profile, databases) take most changes,
    /// warm ones (documents, projects) some, cold ones (media, installed software) rarely,
    /// as on real machines; this decides how dead space spreads over packs.
    fn default() -> Self {
        Churn {
            machine_bytes: 50_000_000_000,
            daily: (0.005, 0.02),
            burst_chance: 1.0 / 30.0,
            burst: (0.02, 0.06),
            grow: 0.001,
            shrink: 0.0005,
            tiers: [(3, 0.75), (20, 0.20), (77, 0.05)],
        }
    }
}

impl Churn {
    /// The stress case: every blob equally likely to change, so dead space is spread thinly
    /// over every pack.
    pub fn uniform() -> Self {
        Churn {
            tiers: [(3, 0.03), (20, 0.20), (77, 0.77)],
            ..Churn::default()
        }
    }
}

const REGIONS: usize = 100;

pub struct History {
    pub days: u32,
    pub blobs: Vec<Blob>,
    /// Blobs each day's backup writes, in the order the archiver meets them.
    pub written: Vec<Vec<u32>>,
    /// Snapshot days kept after each day's backup and forget (newest first).
    pub kept: Vec<Vec<u32>>,
    /// Bytes of the machine's blobs each day.
    pub machine: Vec<u64>,
    /// The coin-flip cron script's days.
    pub coin: Vec<bool>,
}

impl History {
    pub fn generate(seed: u64, days: u32, churn: &Churn) -> Result<History, String> {
        let mut r = Rng(seed);
        let mut blobs: Vec<Blob> = Vec::new();
        let mut written: Vec<Vec<u32>> = Vec::new();
        let mut machine = Vec::new();
        // Day 0: the first backup of the whole machine.
        let mut slots: Vec<Option<u32>> = Vec::new();
        let mut bytes = 0u64;
        while bytes < churn.machine_bytes {
            let b = fresh(&mut r, &mut blobs, 0);
            slots.push(Some(b));
            bytes += u64::from(blobs[b as usize].size);
        }
        written.push(slots.iter().flatten().copied().collect());
        machine.push(bytes);
        // Tiers are fixed on the first machine; new files land at the end (new directories).
        let base = slots.len();
        let mut region_tier: Vec<usize> = churn
            .tiers
            .iter()
            .enumerate()
            .flat_map(|(t, (n, _))| std::iter::repeat_n(t, *n))
            .collect();
        for i in (1..region_tier.len()).rev() {
            let j = r.below(i as u64 + 1) as usize;
            region_tier.swap(i, j);
        }
        let tier_regions: Vec<Vec<usize>> = (0..churn.tiers.len())
            .map(|t| (0..REGIONS).filter(|g| region_tier[*g] == t).collect())
            .collect();
        let region_len = base / REGIONS;
        let mut touched = vec![u32::MAX; base];
        for day in 1..days {
            let live = slots.iter().filter(|s| s.is_some()).count() as f64;
            let share = churn.daily.0 + (churn.daily.1 - churn.daily.0) * r.unit();
            let mut changed: Vec<usize> = Vec::new();
            for _ in 0..(share * live) as u64 {
                let mut pick = r.unit();
                let mut tier = churn.tiers.len() - 1;
                for (t, (_, w)) in churn.tiers.iter().enumerate() {
                    if pick < *w {
                        tier = t;
                        break;
                    }
                    pick -= w;
                }
                let regions = &tier_regions[tier];
                let g = regions[r.below(regions.len() as u64) as usize];
                changed.push(g * region_len + r.below(region_len as u64) as usize);
            }
            if r.unit() < churn.burst_chance {
                let share = churn.burst.0 + (churn.burst.1 - churn.burst.0) * r.unit();
                let n = (share * base as f64) as usize;
                let start = r.below((base - n) as u64) as usize;
                changed.extend(start..start + n);
            }
            for _ in 0..(churn.shrink * live) as u64 {
                let i = r.below(slots.len() as u64) as usize;
                if let Some(b) = slots[i].take() {
                    blobs[b as usize].died = day;
                }
            }
            let mut today = Vec::new();
            changed.sort_unstable();
            for i in changed {
                // A file changed twice in a day is backed up once.
                if touched.get(i) == Some(&day) {
                    continue;
                }
                if let Some(t) = touched.get_mut(i) {
                    *t = day;
                }
                // A deleted file stays deleted.
                if let Some(old) = slots[i] {
                    blobs[old as usize].died = day;
                    let b = fresh(&mut r, &mut blobs, day);
                    slots[i] = Some(b);
                    today.push(b);
                }
            }
            for _ in 0..(churn.grow * live) as u64 {
                let b = fresh(&mut r, &mut blobs, day);
                slots.push(Some(b));
                today.push(b);
            }
            written.push(today);
            machine.push(
                slots
                    .iter()
                    .flatten()
                    .map(|b| u64::from(blobs[*b as usize].size))
                    .sum(),
            );
        }
        let mut coin_rng = Rng(seed ^ 0xC0FF_EE00_0000_0045);
        Ok(History {
            days,
            blobs,
            written,
            kept: retention_by_day(days)?,
            machine,
            coin: (0..days).map(|_| coin_rng.below(45) == 0).collect(),
        })
    }
}

fn fresh(r: &mut Rng, blobs: &mut Vec<Blob>, day: u32) -> u32 {
    blobs.push(Blob {
        size: blob_size(r),
        born: day,
        died: u32::MAX,
    });
    (blobs.len() - 1) as u32
}

/// Midnight UTC on Thursday 2026-01-01, the first simulated day; backups run at 02:00.
const DAY0_S: i64 = 1_767_225_600;

fn snapshot(day: u32) -> Snapshot {
    Snapshot {
        host_id: Id16([7; 16]),
        time_ns: (DAY0_S + i64::from(day) * 86_400 + 7_200) * 1_000_000_000,
        tree: Id([0; 32]),
        paths: vec!["/".into()],
        hostname: "sim".into(),
        username: "sim".into(),
        tags: Vec::new(),
        parent: None,
        program: "prune_sim".into(),
        summary: Summary::default(),
    }
}

/// `forget --keep-last 5 --keep-daily 6 --keep-weekly 3` (the real policy function, days
/// in UTC) after each day's backup, one snapshot a day. Forgotten snapshots never come
/// back, so each day's input is the previous day's survivors plus today's snapshot.
pub fn retention_by_day(days: u32) -> Result<Vec<Vec<u32>>, String> {
    let policy = forget::Policy {
        last: Count::N(5),
        daily: Count::N(6),
        weekly: Count::N(3),
        ..forget::Policy::default()
    };
    let mut out: Vec<Vec<u32>> = Vec::new();
    let mut snaps: Vec<u32> = Vec::new();
    for day in 0..days {
        snaps.insert(0, day);
        let list: Vec<Snapshot> = snaps.iter().map(|d| snapshot(*d)).collect();
        let refs: Vec<&Snapshot> = list.iter().collect();
        let now = Utc.timestamp_nanos(list[0].time_ns);
        let decision = forget::apply(&refs, &policy, &now).map_err(|e| e.to_string())?;
        let mut kept: Vec<u32> = decision.keep.iter().map(|k| snaps[k.index]).collect();
        kept.sort_unstable_by(|a, b| b.cmp(a));
        snaps = kept;
        out.push(snaps.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_keeps_six_days_and_two_earlier_sundays() {
        let kept = retention_by_day(60).expect("policy");
        // Day 59 is Sunday 2026-03-01: the week of day 59 is its own; the weeks before end on
        // days 52 and 45 (Sundays).
        assert_eq!(kept[59], vec![59, 58, 57, 56, 55, 54, 52, 45]);
        // Day 56 is a Thursday: its week's newest is itself; earlier weeks end on 52 and 45.
        assert_eq!(kept[56], vec![56, 55, 54, 53, 52, 51, 45]);
        // restic 0.14's rules, as cairn's forget has them: no "keep the oldest while counts
        // are left" (a later restic's), so day 0 goes once day 6 is a daily.
        assert_eq!(kept[2], vec![2, 1, 0]);
        assert_eq!(kept[6], vec![6, 5, 4, 3, 2, 1]);
    }

    #[test]
    fn the_same_seed_gives_the_same_history() {
        let c = Churn {
            machine_bytes: 200 * MIB,
            ..Churn::default()
        };
        let a = History::generate(7, 30, &c).expect("history");
        let b = History::generate(7, 30, &c).expect("history");
        assert_eq!(a.blobs.len(), b.blobs.len());
        assert_eq!(a.written, b.written);
        assert_eq!(a.coin, b.coin);
        let mean = a.blobs.iter().map(|b| u64::from(b.size)).sum::<u64>() / a.blobs.len() as u64;
        assert!((900 << 10..1200 << 10).contains(&mean), "{mean}");
    }
}
