//! Every host's files, not just this key's: the admin reads all `hosts/<hid>/` prefixes
//! with keys it derives for each host (prune, and later `check` and enrolment).

use std::collections::BTreeMap;

use super::Repository;
use crate::backend::layout::{self, HostDir};
use crate::crypto::keys::HostKeys;
use crate::error::Result;
use crate::id::{Id, Id16, IndexFileId, SnapshotId};

/// One host's files, as one listing found them.
#[derive(Clone, Debug, Default)]
pub struct HostFiles {
    /// Packs with their sizes.
    pub packs: Vec<(Id, u64)>,
    /// Shared index files.
    pub index: Vec<IndexFileId>,
    /// Tree/private index files.
    pub tindex: Vec<IndexFileId>,
    /// Snapshots.
    pub snapshots: Vec<SnapshotId>,
    /// Session markers.
    pub sessions: Vec<Id>,
}

impl HostFiles {
    fn push(&mut self, dir: HostDir, name: Id, size: u64) {
        match dir {
            HostDir::Packs => self.packs.push((name, size)),
            HostDir::Index => self.index.push(IndexFileId(name)),
            HostDir::TreeIndex => self.tindex.push(IndexFileId(name)),
            HostDir::Snapshots => self.snapshots.push(SnapshotId(name)),
            HostDir::Sessions => self.sessions.push(name),
        }
    }
}

impl Repository {
    /// The keys this repository writes with.
    pub fn own_keys(&self) -> &HostKeys {
        &self.host
    }

    /// The keys of host `host`, derived from the admin secret. Every host is at epoch 1
    /// until revocation (and the registry that records epochs) exists.
    pub fn host_keys_of(&self, host: Id16) -> HostKeys {
        self.admin.host_keys(host, 1)
    }

    /// Lists every host's files in one pass over `hosts/` (one listing, paged by the
    /// backend): what prune needs to see, at the price of listing every pack once.
    pub fn list_all_hosts(&self) -> Result<BTreeMap<Id16, HostFiles>> {
        let mut out: BTreeMap<Id16, HostFiles> = BTreeMap::new();
        // Our own host always appears, even before its first file.
        out.entry(self.host.host_id).or_default();
        for item in self.backend.list(layout::HOSTS)? {
            let item = item?;
            if let Some((host, dir, name)) = layout::parse_host_file(&item.path) {
                out.entry(host).or_default().push(dir, name, item.size);
            }
        }
        Ok(out)
    }
}

impl Repository {
    /// How many blobs reachable from the tree `root` (of this host) the loaded index does
    /// not know. Trees that cannot be read count as one missing blob each.
    pub fn missing_blobs(&self, root: &Id) -> Result<usize> {
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![*root];
        let mut missing = 0;
        while let Some(tid) = stack.pop() {
            if !seen.insert(tid) {
                continue;
            }
            let Ok(tree) = self.load_tree(&tid) else {
                missing += 1;
                continue;
            };
            for node in &tree.nodes {
                missing += node
                    .content
                    .iter()
                    .filter(|c| !self.index.contains(&self.content_id(c).1))
                    .count();
                stack.extend(node.subtree);
            }
        }
        Ok(missing)
    }
}

#[cfg(any(test, feature = "test-util"))]
impl Repository {
    /// The same repository acting as host `host` (keys derived from the admin secret), with
    /// an empty index: the fixture for a second host until enrolment exists.
    pub fn as_host(&self, host: Id16) -> Repository {
        use crate::crypto::keys::AdminSecret;
        use crate::crypto::Key32;
        let admin = AdminSecret::from_key(Key32::from_bytes(*self.admin.expose()));
        let g = &self.config.groups[0];
        Repository {
            backend: self.backend.clone(),
            config: self.config.clone(),
            config_bytes: self.config_bytes.clone(),
            group: admin.group_keys(g.id, g.epoch),
            host: admin.host_keys(host, 1),
            admin,
            key_id: self.key_id,
            gear: self.gear.clone(),
            index: crate::index::MasterIndex::new(),
            spool_dir: self.spool_dir.clone(),
            cache: None,
        }
    }
}
