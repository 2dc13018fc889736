//! The census: one consistent-enough look at every host's files, index files and
//! snapshots, and the set of blobs the snapshots reference. Mark and Sweep both start
//! from one; Sweep takes a fresh one, so whatever a snapshot written since Mark references
//! is live again (the rescue of invariant I2).

use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::backend::layout::{self, HostDir};
use crate::crypto::blob::BlobType;
use crate::crypto::sealed::FileType;
use crate::error::{Error, Result};
use crate::id::{Id, Id16, IdMap, IdSet, PackId, SnapshotId};
use crate::index::{IndexFile, MasterIndex};
use crate::pack::{PackEntry, PackKind};
use crate::repository::{HostFiles, Repository};
use crate::snapshot::Snapshot;

/// A pack some index file lists.
#[derive(Clone, Debug)]
pub struct IndexedPack {
    /// Host prefix.
    pub host: Id16,
    /// Length.
    pub len: u64,
    /// What it holds.
    pub kind: PackKind,
    /// Its blobs.
    pub entries: Vec<PackEntry>,
    /// Creation time of the index file that listed it first (ms): the pack's age, for
    /// providers with a minimum storage duration.
    pub indexed_ms: i64,
    /// Whether the listing found the file.
    pub present: bool,
}

/// An index file as loaded.
pub struct LoadedIndex {
    /// Its path.
    pub path: String,
    /// Its host.
    pub host: Id16,
    /// Shared (group data) or private (trees and private data).
    pub private: bool,
}

/// Everything prune knows about the repository at one moment.
pub struct Census {
    /// Every host's files.
    pub hosts: BTreeMap<Id16, HostFiles>,
    /// Index files read.
    pub index_files: Vec<LoadedIndex>,
    /// Indexed packs by name.
    pub packs: IdMap<IndexedPack>,
    /// Listed packs no index lists, with their lengths.
    pub unindexed: Vec<(PackId, u64)>,
    /// Every snapshot: (host, id, snapshot).
    pub snapshots: Vec<(Id16, SnapshotId, Snapshot)>,
    /// Which indexed blobs some snapshot references (trees and data): one bit per id of
    /// `copies`, an eighth of a byte per blob where a hash set of ids takes about fifty.
    live: Vec<u64>,
    /// Referenced blobs no index lists (lost; normally none).
    live_unindexed: IdSet,
    /// Content keys of live private data blobs, so a repack can authenticate them: by
    /// position in `copies`, sorted (36 bytes a blob, where a hash map takes twice that).
    private_cks: Vec<(u32, [u8; 32])>,
    /// BLAKE3 of the stored bytes of every live tree, authenticated by the walk: a repack
    /// checks a tree blob against it instead of decrypting and decompressing it again.
    pub tree_cids: IdMap<Id>,
    /// The packs holding each indexed blob.
    pub copies: Copies,
    /// Stored bytes of every present pack.
    pub total_bytes: u64,
}

impl Census {
    /// Takes a census. Any snapshot, index file or tree that cannot be read stops it: a
    /// blob that only an unreadable tree references would look unreferenced, and prune
    /// would delete it.
    pub fn take(repo: &mut Repository) -> Result<Census> {
        let hosts = repo.list_all_hosts()?;
        let mut index_files = Vec::new();
        let mut packs: IdMap<IndexedPack> = IdMap::default();
        let mut master = MasterIndex::new();
        let mut snapshots = Vec::new();
        for (host, files) in &hosts {
            let keys = repo.host_keys_of(*host);
            for (dir, ftype, names, private) in [
                (HostDir::Index, FileType::SharedIndex, &files.index, false),
                (
                    HostDir::TreeIndex,
                    FileType::PrivateIndex,
                    &files.tindex,
                    true,
                ),
            ] {
                for name in names {
                    let path = layout::host_file(host, dir, name.as_id());
                    let f: IndexFile = repo.read_index_file(&keys, &path, name, ftype, true)?;
                    // The walk looks up trees only, and trees are in private index files:
                    // a master index of every data blob would double the census's memory.
                    if private {
                        master.add_file(&f);
                    }
                    for p in f.packs {
                        packs.entry(p.name).or_insert_with(|| IndexedPack {
                            host: *host,
                            len: p.len,
                            kind: p.kind,
                            entries: p.entries,
                            indexed_ms: f.created_ms,
                            present: false,
                        });
                    }
                    index_files.push(LoadedIndex {
                        path,
                        host: *host,
                        private,
                    });
                }
            }
            for name in &files.snapshots {
                snapshots.push((*host, *name, repo.load_snapshot_as(&keys, name)?));
            }
        }
        master.finalize();
        // The walk's lookups only; dropped after it (below).
        repo.replace_index(master);
        let mut unindexed = Vec::new();
        let mut total_bytes = 0;
        for (host, files) in &hosts {
            for (name, len) in &files.packs {
                total_bytes += len;
                match packs.get_mut(name) {
                    Some(p) => p.present = true,
                    None => unindexed.push((PackId::new(*host, *name), *len)),
                }
            }
        }
        let copies = Copies::of(&packs);
        let mut c = Census {
            hosts,
            index_files,
            packs,
            unindexed,
            snapshots,
            live: Vec::new(),
            live_unindexed: IdSet::default(),
            private_cks: Vec::new(),
            tree_cids: IdMap::default(),
            copies,
            total_bytes,
        };
        c.walk(repo)?;
        // Nothing after the census looks blobs up through the index: free it for the
        // sweep's own memory.
        repo.replace_index(MasterIndex::new());
        Ok(c)
    }

    /// Marks every blob reachable from a snapshot live. Trees are loaded a batch at a time
    /// on every core (each is read, decrypted, decompressed and checked); memory holds one
    /// batch of trees and the ids of those still to visit, never a whole snapshot.
    fn walk(&mut self, repo: &Repository) -> Result<()> {
        const BATCH: usize = 256;
        self.live = vec![0; self.copies.ids.len().div_ceil(64)];
        let keys: BTreeMap<Id16, _> = self
            .snapshots
            .iter()
            .map(|(h, _, _)| (*h, repo.host_keys_of(*h)))
            .collect();
        let mut pending: Vec<(Id16, Id)> = Vec::new();
        let roots: Vec<(Id16, Id)> = self
            .snapshots
            .iter()
            .map(|(h, _, s)| (*h, s.tree))
            .collect();
        for (host, tree) in roots {
            if self.mark_live(&tree, None) {
                pending.push((host, tree));
            }
        }
        while !pending.is_empty() {
            let batch = pending.split_off(pending.len().saturating_sub(BATCH));
            let loaded: Vec<_> = batch
                .par_iter()
                .map(|(host, tid)| match keys.get(host) {
                    Some(k) => repo.load_tree_and_cid_as(k, tid),
                    None => Err(Error::InvalidInput(format!("no keys for host {host}"))),
                })
                .collect();
            for ((host, tid), r) in batch.iter().zip(loaded) {
                let (tree, cid) = r?;
                self.tree_cids.insert(*tid, cid);
                let Some(k) = keys.get(host) else { continue };
                for node in &tree.nodes {
                    for c in &node.content {
                        let (btype, id) = repo.content_id_as(k, c);
                        let ck = (btype == BlobType::PrivateData).then_some(c.ck);
                        self.mark_live(&id, ck);
                    }
                    if let Some(sub) = node.subtree {
                        if self.mark_live(&sub, None) {
                            pending.push((*host, sub));
                        }
                    }
                }
            }
        }
        self.private_cks.sort_unstable_by_key(|(i, _)| *i);
        self.private_cks.shrink_to_fit();
        // A live blob the index does not know is already lost: deleting more would not
        // bring it back, but the user must hear of it (check and repair say more).
        let missing = self.live_unindexed.len();
        if missing > 0 {
            return Err(Error::InvalidInput(format!(
                "{missing} blobs that snapshots reference are in no index; run `cairn check` \
                 (and `cairn repair index`) before pruning"
            )));
        }
        Ok(())
    }

    /// Marks `id` live, keeping the content key of a private data blob the first time;
    /// whether it was not live yet.
    fn mark_live(&mut self, id: &Id, private_ck: Option<[u8; 32]>) -> bool {
        match self.copies.position(id) {
            Some(i) => {
                let (w, b) = (i / 64, 1u64 << (i % 64));
                let new = self.live[w] & b == 0;
                self.live[w] |= b;
                if let (true, Some(ck)) = (new, private_ck) {
                    self.private_cks.push((i as u32, ck));
                }
                new
            }
            None => self.live_unindexed.insert(*id),
        }
    }

    /// The content key of live private data blob `id`.
    pub fn private_ck(&self, id: &Id) -> Option<&[u8; 32]> {
        let i = self.copies.position(id)? as u32;
        let at = self
            .private_cks
            .binary_search_by_key(&i, |(p, _)| *p)
            .ok()?;
        self.private_cks.get(at).map(|(_, ck)| ck)
    }

    /// Whether some snapshot references `id`.
    pub fn is_live(&self, id: &Id) -> bool {
        match self.copies.position(id) {
            Some(i) => self
                .live
                .get(i / 64)
                .is_some_and(|w| w & (1 << (i % 64)) != 0),
            None => self.live_unindexed.contains(id),
        }
    }

    /// Whether `id` is stored in more than one pack.
    pub fn duplicated(&self, id: &Id) -> bool {
        self.copies.more.contains_key(id)
    }

    /// The host name to show for `host`: its newest snapshot's, or its id.
    pub fn host_name(&self, host: &Id16) -> String {
        self.snapshots
            .iter()
            .filter(|(h, _, _)| h == host)
            .max_by_key(|(_, _, s)| s.time_ns)
            .map(|(_, _, s)| s.hostname.clone())
            .unwrap_or_else(|| host.to_hex())
    }
}

/// Which blobs the index lists, and the packs of those it lists more than once. Nearly
/// every blob has one copy, so ids are kept sorted (32 bytes each) and only duplicates get
/// a list of packs.
#[derive(Default)]
pub struct Copies {
    ids: Vec<Id>,
    /// The first 8 bytes of each of `ids`, big-endian: searches compare integers instead
    /// of calling `memcmp` on 32 bytes.
    prefixes: Vec<u64>,
    /// Where the ids whose top `bits` bits are `b` start in `ids`, for each `b` (and the
    /// end): ids are uniform, so a bucket holds a handful and a lookup touches two or
    /// three cache lines where a binary search over the whole list misses at every step.
    starts: Vec<u32>,
    bits: u32,
    more: IdMap<Vec<Id>>,
}

/// The first 8 bytes of an id, as a number that sorts as the id does.
fn prefix(id: &Id) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    u64::from_be_bytes(b)
}

impl Copies {
    fn of(packs: &IdMap<IndexedPack>) -> Copies {
        let mut ids: Vec<Id> = packs
            .values()
            .flat_map(|p| p.entries.iter().map(|e| e.id))
            .collect();
        ids.sort_unstable_by(|a, b| prefix(a).cmp(&prefix(b)).then_with(|| a.cmp(b)));
        let mut more: IdMap<Vec<Id>> = IdMap::default();
        for w in ids.windows(2) {
            if w[0] == w[1] {
                more.entry(w[0]).or_default();
            }
        }
        ids.dedup();
        ids.shrink_to_fit();
        if !more.is_empty() {
            for (name, p) in packs {
                for e in &p.entries {
                    if let Some(v) = more.get_mut(&e.id) {
                        v.push(*name);
                    }
                }
            }
        }
        let prefixes: Vec<u64> = ids.iter().map(prefix).collect();
        // About four ids a bucket.
        let bits = (usize::BITS - (ids.len() / 4).leading_zeros()).clamp(1, 30);
        let mut starts = Vec::with_capacity((1 << bits) + 1);
        let mut i = 0;
        for b in 0..(1u64 << bits) {
            while i < prefixes.len() && prefixes[i] >> (64 - bits) < b {
                i += 1;
            }
            starts.push(i as u32);
        }
        starts.push(prefixes.len() as u32);
        Copies {
            ids,
            prefixes,
            starts,
            bits,
            more,
        }
    }

    /// Where `id` is in `ids`.
    fn position(&self, id: &Id) -> Option<usize> {
        let p = prefix(id);
        let b = p.checked_shr(64 - self.bits).unwrap_or(0) as usize;
        let (lo, hi) = (
            *self.starts.get(b)? as usize,
            *self.starts.get(b + 1)? as usize,
        );
        for i in lo..hi {
            match self.prefixes[i].cmp(&p) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal if self.ids[i] == *id => return Some(i),
                std::cmp::Ordering::Equal => {}
                std::cmp::Ordering::Greater => break,
            }
        }
        None
    }

    /// Whether some index lists `id`.
    pub fn indexed(&self, id: &Id) -> bool {
        self.position(id).is_some()
    }

    /// The packs holding `id`, an entry of pack `home`.
    pub fn of_blob<'a>(&'a self, id: &Id, home: &'a Id) -> &'a [Id] {
        match self.more.get(id) {
            Some(v) => v,
            None => std::slice::from_ref(home),
        }
    }

    /// Blobs stored in more than one pack, with their packs.
    pub fn duplicated(&self) -> impl Iterator<Item = (&Id, &Vec<Id>)> {
        self.more.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(ids: &[Id]) -> IndexedPack {
        IndexedPack {
            host: Id16([0; 16]),
            len: 0,
            kind: PackKind::Group,
            entries: ids
                .iter()
                .enumerate()
                .map(|(i, id)| PackEntry {
                    id: *id,
                    cid: None,
                    offset: i as u64,
                    slen: 1,
                    plen: 1,
                })
                .collect(),
            indexed_ms: 0,
            present: true,
        }
    }

    #[test]
    fn copies_find_every_id_and_only_those() {
        let ids: Vec<Id> = (0..5000u32)
            .map(|i| Id::of_bytes(&i.to_le_bytes()))
            .collect();
        let mut packs: IdMap<IndexedPack> = IdMap::default();
        let (a, b) = (Id([1; 32]), Id([2; 32]));
        packs.insert(a, pack(&ids[..3000]));
        // ids[2900..3000] are stored twice.
        packs.insert(b, pack(&ids[2900..]));
        let c = Copies::of(&packs);
        assert_eq!(c.ids.len(), 5000);
        for (i, id) in ids.iter().enumerate() {
            let at = c.position(id).map(|p| c.ids[p]);
            assert_eq!(at, Some(*id), "id {i} not found");
            let twice = (2900..3000).contains(&i);
            assert_eq!(c.more.contains_key(id), twice, "id {i}");
            if twice {
                let mut where_: Vec<Id> = c.of_blob(id, &a).to_vec();
                where_.sort();
                assert_eq!(where_, vec![a, b]);
            } else {
                assert_eq!(c.of_blob(id, &a), &[a]);
            }
        }
        for i in 5000..6000u32 {
            assert!(!c.indexed(&Id::of_bytes(&i.to_le_bytes())));
        }
        // Ids sharing their first 8 bytes are told apart by the rest.
        let mut x = Id([7; 32]);
        let mut packs: IdMap<IndexedPack> = IdMap::default();
        packs.insert(a, pack(&[x]));
        let c = Copies::of(&packs);
        assert!(c.indexed(&x));
        x.0[31] = 8;
        assert!(!c.indexed(&x));
        assert!(!Copies::default().indexed(&x));
    }
}
