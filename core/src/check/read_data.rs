//! `--read-data`: streams whole packs, checks each one's name (BLAKE3) and every blob in it.
//!
//! Memory per pack is one blob: the stream is hashed as it passes and blobs are cut out of
//! it one at a time, in offset order.

use std::str::FromStr;

use rayon::prelude::*;

use super::structure::Checker;
use super::{reason, ContentKeys, Problem, ProblemKind as K};
use crate::crypto::blob::BlobType;
use crate::error::{Error, Result};
use crate::id::{Id, Id16};
use crate::index::master::PackRef;
use crate::index::BlobLocation;
use crate::pack::{PackEntry, PackKind};
use crate::repository::Repository;

/// Which packs `--read-data` reads.
#[derive(Clone, Debug, PartialEq)]
pub enum Subset {
    /// Every pack.
    All,
    /// Packs whose name's first byte modulo `m` is `n - 1` ("n/m", as restic).
    Part {
        /// Which part, from 1.
        n: u32,
        /// Into how many parts.
        m: u32,
    },
    /// A random share of the packs, in percent ("p%"); at least one pack if there is any.
    Percent(f64),
}

impl FromStr for Subset {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidInput(format!("read-data subset {s:?}: expected n/m or p%"));
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad());
            }
            return Ok(Subset::Percent(p));
        }
        let (n, m) = s.split_once('/').ok_or_else(bad)?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        let m: u32 = m.trim().parse().map_err(|_| bad())?;
        if n == 0 || m == 0 || n > m {
            return Err(bad());
        }
        Ok(Subset::Part { n, m })
    }
}

impl Subset {
    /// The chosen packs among `names`.
    fn select(&self, names: Vec<Id>) -> Vec<Id> {
        match self {
            Subset::All => names,
            Subset::Part { n, m } => names
                .into_iter()
                .filter(|id| u32::from(id.0[0]) % m == n - 1)
                .collect(),
            Subset::Percent(p) => {
                // Ranking by a keyed hash under a fresh random key picks a uniformly random
                // subset without a random number generator crate.
                let key: [u8; 32] = crate::crypto::random_array();
                let mut ranked: Vec<([u8; 32], Id)> = names
                    .into_iter()
                    .map(|id| (*blake3::keyed_hash(&key, &id.0).as_bytes(), id))
                    .collect();
                ranked.sort_unstable();
                let want = ((ranked.len() as f64) * p / 100.0).ceil() as usize;
                let want = want.clamp(ranked.len().min(1), ranked.len());
                ranked.into_iter().take(want).map(|(_, id)| id).collect()
            }
        }
    }
}

/// One pack to read: its blobs (from the index; empty for an unindexed pack, whose name
/// alone is checked).
struct Job {
    name: Id,
    kind: Option<PackKind>,
    len: u64,
    entries: Vec<PackEntry>,
}

impl Checker<'_> {
    pub(super) fn read_data(&mut self, subset: &Subset) -> Result<()> {
        let names = subset.select(self.listed_packs.keys().copied().collect());
        let jobs: Vec<Job> = names
            .into_iter()
            .map(|name| match self.indexed.get(&name) {
                Some(i) => {
                    let mut entries = i.pack.entries.clone();
                    entries.sort_by_key(|e| e.offset);
                    Job {
                        name,
                        kind: Some(i.pack.kind),
                        len: i.pack.len,
                        entries,
                    }
                }
                None => Job {
                    name,
                    kind: None,
                    len: 0,
                    entries: Vec::new(),
                },
            })
            .collect();
        let results: Vec<(Vec<Problem>, u64, u64)> = jobs
            .par_iter()
            .map(|job| {
                if self.progress.cancelled() {
                    return (Vec::new(), 0, 0);
                }
                let path = self.pack_path(&job.name);
                let r = read_pack(self.repo, self.host, &path, job, &self.cks);
                self.progress.pack_read(r.2);
                r
            })
            .collect();
        self.cancel_point()?;
        self.report.packs_read = jobs.len();
        for (probs, blobs, _) in results {
            self.report.blobs_checked += blobs;
            for p in probs {
                self.report.add(p);
            }
        }
        Ok(())
    }
}

/// Reads one pack whole. Returns its problems, the number of blobs verified, and the
/// bytes read.
fn read_pack(
    repo: &Repository,
    host: Id16,
    path: &str,
    job: &Job,
    cks: &ContentKeys,
) -> (Vec<Problem>, u64, u64) {
    let pack = PackRef {
        host,
        name: job.name,
        len: job.len,
        kind: job.kind.unwrap_or(PackKind::Group),
    };
    let mut probs = Vec::new();
    let mut blobs = 0u64;
    let r = repo.stream_whole_pack(&pack.id(), &job.entries, &mut |e, stored| {
        let damaged =
            |detail: String| Problem::new(K::BlobDamaged, path, detail).blob(e.id, Some(e.offset));
        match stored {
            None => probs.push(damaged(
                "lies past the end of the pack or overlaps the blob before it".into(),
            )),
            Some(stored) => {
                blobs += 1;
                if let Some(detail) = check_blob(repo, &pack, e, stored, cks) {
                    probs.push(damaged(detail));
                }
            }
        }
        Ok(())
    });
    match r {
        Ok((hash, len)) => {
            if hash != job.name {
                let detail = format!("BLAKE3 of its {len} bytes is {hash}, not its name");
                probs.push(Problem::new(K::PackHashMismatch, path, detail));
            }
            (probs, blobs, len)
        }
        Err(e) => {
            let kind = match &e {
                Error::Backend(b) if b.kind == crate::backend::BackendErrorKind::NotFound => {
                    K::PackMissing
                }
                _ => K::PackUnreadable,
            };
            probs.push(Problem::new(kind, path, reason(&e)));
            (probs, blobs, 0)
        }
    }
}

/// Checks one blob's stored bytes: `cid` where the entry has one (group data), and the full open with content check when
/// its key is known (trees always; data blobs reached by some tree).
fn check_blob(
    repo: &Repository,
    pack: &PackRef,
    e: &PackEntry,
    stored: &[u8],
    cks: &ContentKeys,
) -> Option<String> {
    if e.cid.is_some_and(|cid| Id::of_bytes(stored) != cid) {
        return Some("stored bytes do not match their cid".into());
    }
    let btype = pack.kind.blob_type();
    let ck = match btype {
        BlobType::Tree => None,
        // Unreferenced data blobs cannot be opened without their key; the cid vouched
        // for their bytes.
        _ => Some(cks.get(&e.id)?),
    };
    let loc = BlobLocation {
        pack,
        pack_no: 0,
        offset: e.offset,
        slen: e.slen,
        plen: e.plen,
    };
    repo.open_blob(btype, &e.id, ck, &loc, stored)
        .err()
        .map(|err| reason(&err))
}
