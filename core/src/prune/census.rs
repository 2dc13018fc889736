//! The census: one consistent-enough look at every host's files, index files and
//! snapshots, and the set of blobs the snapshots reference. Mark and Sweep both start
//! from one; Sweep takes a fresh one, so whatever a snapshot written since Mark references
//! is live again (the rescue of invariant I2).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::backend::layout::{self, HostDir};
use crate::crypto::blob::BlobType;
use crate::crypto::sealed::FileType;
use crate::error::{Error, Result};
use crate::id::{Id, Id16};
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
    pub packs: HashMap<Id, IndexedPack>,
    /// Listed packs no index lists: (host, name, length).
    pub unindexed: Vec<(Id16, Id, u64)>,
    /// Every snapshot: (host, name, snapshot).
    pub snapshots: Vec<(Id16, Id, Snapshot)>,
    /// Blob ids referenced by some snapshot (trees and data).
    pub live: HashSet<Id>,
    /// Content keys of live private data blobs, so a repack can authenticate them.
    pub private_cks: HashMap<Id, [u8; 32]>,
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
        let mut packs: HashMap<Id, IndexedPack> = HashMap::new();
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
                    let path = layout::host_file(host, dir, name);
                    let f: IndexFile = repo.read_index_file(&keys, &path, name, ftype, true)?;
                    for p in &f.packs {
                        packs.entry(p.name).or_insert_with(|| IndexedPack {
                            host: *host,
                            len: p.len,
                            kind: p.kind,
                            entries: p.entries.clone(),
                            indexed_ms: f.created_ms,
                            present: false,
                        });
                    }
                    master.add_file(&f);
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
        repo.replace_index(master);
        let mut unindexed = Vec::new();
        let mut total_bytes = 0;
        for (host, files) in &hosts {
            for (name, len) in &files.packs {
                total_bytes += len;
                match packs.get_mut(name) {
                    Some(p) => p.present = true,
                    None => unindexed.push((*host, *name, *len)),
                }
            }
        }
        let mut c = Census {
            hosts,
            index_files,
            packs,
            unindexed,
            snapshots,
            live: HashSet::new(),
            private_cks: HashMap::new(),
            total_bytes,
        };
        c.walk(repo)?;
        Ok(c)
    }

    /// Marks every blob reachable from a snapshot live.
    fn walk(&mut self, repo: &Repository) -> Result<()> {
        let mut seen_trees: HashSet<Id> = HashSet::new();
        for (host, _, snap) in &self.snapshots {
            let keys = repo.host_keys_of(*host);
            let mut stack = vec![snap.tree];
            while let Some(tid) = stack.pop() {
                if !seen_trees.insert(tid) {
                    continue;
                }
                self.live.insert(tid);
                let tree = repo.load_tree_as(&keys, &tid)?;
                for node in &tree.nodes {
                    for c in &node.content {
                        let (btype, id) = repo.content_id_as(&keys, c);
                        if self.live.insert(id) && btype == BlobType::PrivateData {
                            self.private_cks.insert(id, c.ck);
                        }
                    }
                    if let Some(sub) = node.subtree {
                        stack.push(sub);
                    }
                }
            }
        }
        // A live blob the index does not know is already lost: deleting more would not
        // bring it back, but the user must hear of it (check and repair say more).
        let missing = self
            .live
            .iter()
            .filter(|id| !repo.index().contains(id))
            .count();
        if missing > 0 {
            return Err(Error::InvalidInput(format!(
                "{missing} blobs that snapshots reference are in no index; run `cairn check` \
                 (and `cairn repair index`) before pruning"
            )));
        }
        Ok(())
    }

    /// Packs per id: every (pack, entry) holding a copy of each blob.
    pub fn copies(&self) -> HashMap<Id, Vec<Id>> {
        let mut m: HashMap<Id, Vec<Id>> = HashMap::new();
        for (name, p) in &self.packs {
            for e in &p.entries {
                m.entry(e.id).or_default().push(*name);
            }
        }
        m
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
