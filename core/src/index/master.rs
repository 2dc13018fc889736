//! The in-memory index: every known blob's location, as sorted arrays.
//!
//! One entry is 48 bytes (id 32, pack number 4, offset 4, stored and plain length 4 each),
//! so a million blobs (about 1 TB of data) take 48 MiB; the pack table is shared.
//! The blob's `cid` is not kept: reads re-check the content key after decrypting, which is
//! stronger, and `check --read-data` reads the index files again.

use std::collections::HashMap;

use crate::id::{Id, Id16, PackId};
use crate::pack::PackKind;

use super::file::IndexFile;

/// A pack known to the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackRef {
    /// Host prefix the pack lives under.
    pub host: Id16,
    /// Pack name.
    pub name: Id,
    /// Pack length.
    pub len: u64,
    /// What it holds.
    pub kind: PackKind,
}

impl PackRef {
    /// The pack's id (name and host prefix).
    pub fn id(&self) -> PackId {
        PackId::new(self.host, self.name)
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    id: Id,
    pack: u32,
    offset: u32,
    slen: u32,
    plen: u32,
}

/// Where a blob is.
#[derive(Clone, Copy, Debug)]
pub struct BlobLocation<'a> {
    /// Its pack.
    pub pack: &'a PackRef,
    /// Number of the pack in [`MasterIndex::packs`].
    pub pack_no: u32,
    /// Offset in the pack.
    pub offset: u64,
    /// Stored length.
    pub slen: u32,
    /// Plain length.
    pub plen: u32,
}

/// All blobs of the loaded index files.
#[derive(Default)]
pub struct MasterIndex {
    packs: Vec<PackRef>,
    pack_numbers: HashMap<Id, u32>,
    entries: Vec<Entry>,
    sorted: bool,
    /// Where each run of ids sharing their first `bucket_bits` bits starts in `entries`
    /// (plus the end): ids are hashes, so a run holds about two of them and a lookup is
    /// one or two probes in one place. A binary search over every entry missed the cache
    /// on most of its ~20 probes, 3% of a restore's CPU time (measured).
    starts: Vec<u32>,
    bucket_bits: u32,
}

impl MasterIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every pack of an index file; packs already known are skipped.
    pub fn add_file(&mut self, f: &IndexFile) {
        for p in &f.packs {
            if self.pack_numbers.contains_key(&p.name) {
                continue;
            }
            let no = self.packs.len() as u32;
            self.packs.push(PackRef {
                host: f.writer,
                name: p.name,
                len: p.len,
                kind: p.kind,
            });
            self.pack_numbers.insert(p.name, no);
            for x in &p.entries {
                // Packs are at most a few hundred MiB (the format caps pack length at u32
                // offsets); a larger offset cannot come from our writer.
                let Ok(offset) = u32::try_from(x.offset) else {
                    continue;
                };
                self.entries.push(Entry {
                    id: x.id,
                    pack: no,
                    offset,
                    slen: x.slen,
                    plen: x.plen,
                });
            }
        }
        self.sorted = false;
    }

    /// Sorts for lookups; call after adding files.
    pub fn finalize(&mut self) {
        if !self.sorted {
            self.entries
                .sort_unstable_by(|a, b| a.id.cmp(&b.id).then(a.pack.cmp(&b.pack)));
            self.entries.dedup_by(|a, b| a.id == b.id);
            self.entries.shrink_to_fit();
            self.sorted = true;
            self.index_buckets();
        }
    }

    fn index_buckets(&mut self) {
        let n = self.entries.len();
        // About two ids per bucket, at most 2^24 buckets (64 MiB of table at 33M blobs).
        self.bucket_bits = (usize::BITS - n.leading_zeros()).saturating_sub(2).min(24);
        let buckets = 1usize << self.bucket_bits;
        self.starts = Vec::with_capacity(buckets + 1);
        let mut i = 0usize;
        for b in 0..buckets {
            while i < n && self.bucket(&self.entries[i].id) < b {
                i += 1;
            }
            self.starts.push(i as u32);
        }
        self.starts.push(n as u32);
    }

    fn bucket(&self, id: &Id) -> usize {
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&id.0[..8]);
        u64::from_be_bytes(prefix)
            .checked_shr(64 - self.bucket_bits)
            .unwrap_or(0) as usize
    }

    /// Position of `id` in `entries`.
    fn find(&self, id: &Id) -> Option<usize> {
        let b = self.bucket(id);
        let (lo, hi) = match (self.starts.get(b), self.starts.get(b + 1)) {
            (Some(&lo), Some(&hi)) => (lo as usize, hi as usize),
            _ => (0, self.entries.len()),
        };
        let run = self.entries.get(lo..hi)?;
        run.binary_search_by(|e| e.id.cmp(id)).ok().map(|i| lo + i)
    }

    /// Forgets the copies `condemned(pack name, blob id)` says are condemned, so dedup and
    /// change detection treat those blobs as absent and store them again. Returns how many
    /// copies were dropped.
    pub fn drop_condemned(&mut self, condemned: impl Fn(&Id, &Id) -> bool) -> usize {
        let before = self.entries.len();
        let packs = &self.packs;
        self.entries
            .retain(|e| !condemned(&packs[e.pack as usize].name, &e.id));
        if self.sorted {
            self.index_buckets();
        }
        before - self.entries.len()
    }

    /// Where a blob is, if known.
    pub fn lookup(&self, id: &Id) -> Option<BlobLocation<'_>> {
        debug_assert!(self.sorted, "lookup before finalize");
        let e = &self.entries[self.find(id)?];
        Some(BlobLocation {
            pack: &self.packs[e.pack as usize],
            pack_no: e.pack,
            offset: u64::from(e.offset),
            slen: e.slen,
            plen: e.plen,
        })
    }

    /// Whether a blob is known.
    pub fn contains(&self, id: &Id) -> bool {
        self.find(id).is_some()
    }

    /// Whether a pack is known.
    pub fn has_pack(&self, name: &Id) -> bool {
        self.pack_numbers.contains_key(name)
    }

    /// All packs.
    pub fn packs(&self) -> &[PackRef] {
        &self.packs
    }

    /// Number of distinct blobs.
    pub fn blob_count(&self) -> usize {
        self.entries.len()
    }

    /// Every blob: (id, pack number, offset, stored length, plain length).
    pub fn iter(&self) -> impl Iterator<Item = (Id, u32, u64, u32, u32)> + '_ {
        self.entries
            .iter()
            .map(|e| (e.id, e.pack, u64::from(e.offset), e.slen, e.plen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::IndexPack;
    use crate::pack::PackEntry;

    #[test]
    fn entry_is_48_bytes_and_lookup_works() {
        assert_eq!(std::mem::size_of::<Entry>(), 48);
        let mut m = MasterIndex::new();
        let entries = (0..100u8)
            .map(|i| PackEntry {
                id: Id([i; 32]),
                cid: None,
                offset: u64::from(i) * 10,
                slen: 10,
                plen: 20,
            })
            .collect();
        m.add_file(&IndexFile {
            writer: Id16([1; 16]),
            created_ms: 0,
            packs: vec![IndexPack {
                name: Id([7; 32]),
                len: 2000,
                kind: PackKind::Group,
                entries,
            }],
        });
        m.finalize();
        let loc = m.lookup(&Id([42; 32])).map(|l| (l.offset, l.pack.name));
        assert_eq!(loc, Some((420, Id([7; 32]))));
        assert!(m.lookup(&Id([200; 32])).is_none());
        assert_eq!(m.blob_count(), 100);
    }

    #[test]
    fn every_blob_is_found_through_the_buckets_also_after_drops() {
        for n in [0usize, 1, 2, 3, 7, 100, 5000] {
            let id = |i: usize| Id(*blake3::hash(&i.to_le_bytes()).as_bytes());
            // Clustered ids too: a run of ids sharing a prefix falls in one bucket.
            let mut ids: Vec<Id> = (0..n).map(id).collect();
            ids.extend((0..n.min(50)).map(|i| {
                let mut b = [0xab; 32];
                b[31] = i as u8;
                Id(b)
            }));
            let entries = ids
                .iter()
                .enumerate()
                .map(|(i, id)| PackEntry {
                    id: *id,
                    cid: None,
                    offset: i as u64,
                    slen: 1,
                    plen: 1,
                })
                .collect();
            let mut m = MasterIndex::new();
            m.add_file(&IndexFile {
                writer: Id16([1; 16]),
                created_ms: 0,
                packs: vec![IndexPack {
                    name: Id([7; 32]),
                    len: 1 << 20,
                    kind: PackKind::Group,
                    entries,
                }],
            });
            m.finalize();
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(
                    m.lookup(id).map(|l| l.offset),
                    Some(i as u64),
                    "n={n} i={i}"
                );
            }
            assert!(!m.contains(&id(n + 1)), "n={n}");
            assert!(!m.contains(&Id([0xff; 32])), "n={n}");
            assert!(!m.contains(&Id([0; 32])), "n={n}");
            // Dropping every other blob shifts the rest: the buckets must follow.
            let dropped: std::collections::HashSet<Id> = ids.iter().step_by(2).copied().collect();
            m.drop_condemned(|_, b| dropped.contains(b));
            for (i, id) in ids.iter().enumerate() {
                let want = (!dropped.contains(id)).then_some(i as u64);
                assert_eq!(
                    m.lookup(id).map(|l| l.offset),
                    want,
                    "n={n} i={i} after drops"
                );
            }
        }
    }
}
