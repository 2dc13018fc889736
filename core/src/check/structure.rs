//! The structure check: config, key files, index files, snapshots, pack headers and trees.

use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;

use super::tree_packs::TreePacks;
use super::{reason, CheckProgress, CheckReport, ContentKeys, Problem, ProblemKind as K};
use crate::backend::layout::{self, HostDir};
use crate::backend::BackendErrorKind;
use crate::crypto::blob::BlobType;
use crate::crypto::keyfile::KeyFile;
use crate::crypto::sealed::FileType;
use crate::error::{Error, Result};
use crate::id::{Id, Id16, IndexFileId, SnapshotId};
use crate::index::{IndexPack, MasterIndex};
use crate::pack::{PackEntry, PackKind};
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::tree::Tree;

/// A pack some index file lists.
pub(super) struct Indexed {
    pub(super) pack: IndexPack,
    /// The index file that listed it first.
    pub(super) index_path: String,
}

/// The state of one check run.
pub(super) struct Checker<'a> {
    pub(super) repo: &'a Repository,
    pub(super) progress: &'a dyn CheckProgress,
    pub(super) host: Id16,
    pub(super) report: CheckReport,
    /// Whether to keep content keys for `--read-data`.
    keep_keys: bool,
    /// Packs of this host in the repository, by name, with their sizes.
    pub(super) listed_packs: BTreeMap<Id, u64>,
    key_files: Vec<String>,
    index_names: Vec<(HostDir, Id)>,
    snapshot_names: Vec<Id>,
    /// Session markers of every host (prune reads them all, so check does too).
    pub(super) sessions: Vec<(Id16, Id)>,
    /// Packs listed by readable index files.
    pub(super) indexed: HashMap<Id, Indexed>,
    index: MasterIndex,
    /// Packs whose blobs cannot be read: missing (0) or truncated (bytes present).
    lost: HashMap<Id, u64>,
    /// Blobs of unindexed packs, to tell "lost" from "only unindexed".
    orphan_blobs: HashMap<Id, Id>,
    /// Content keys of reachable data blobs (`--read-data` only).
    pub(super) cks: ContentKeys,
    /// Whole tree packs, on remote storage.
    tree_packs: Option<TreePacks>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(
        repo: &'a Repository,
        progress: &'a dyn CheckProgress,
        keep_keys: bool,
    ) -> Self {
        Self {
            repo,
            progress,
            host: repo.host_id(),
            report: CheckReport::default(),
            keep_keys,
            listed_packs: BTreeMap::new(),
            key_files: Vec::new(),
            index_names: Vec::new(),
            snapshot_names: Vec::new(),
            sessions: Vec::new(),
            indexed: HashMap::new(),
            index: MasterIndex::new(),
            lost: HashMap::new(),
            orphan_blobs: HashMap::new(),
            cks: HashMap::new(),
            tree_packs: TreePacks::new(repo),
        }
    }

    pub(super) fn cancel_point(&self) -> Result<()> {
        if self.progress.cancelled() {
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    pub(super) fn pack_path(&self, name: &Id) -> String {
        layout::host_file(&self.host, HostDir::Packs, name)
    }

    /// The structure check, in dependency order: later steps use what earlier ones read.
    pub(super) fn run(&mut self) -> Result<()> {
        self.progress.phase("list files");
        self.list_all()?;
        self.progress.phase("config and key files");
        self.check_config();
        self.check_keys();
        self.cancel_point()?;
        self.progress.phase("index files");
        self.check_index_files()?;
        self.progress.phase("snapshots");
        let snapshots = self.check_snapshots()?;
        self.progress.phase("prune state");
        self.check_prune_state()?;
        self.progress.phase("packs");
        self.check_packs()?;
        self.progress.phase("trees");
        self.walk_trees(&snapshots)?;
        Ok(())
    }

    /// One listing of the whole repository, sorted into the kinds of files; anything that
    /// fits no kind is reported as junk rather than silently ignored.
    fn list_all(&mut self) -> Result<()> {
        let backend = self.repo.backend();
        let mut junk = Vec::new();
        for item in backend.list("")? {
            let item = item?;
            let path = item.path;
            if path == layout::CONFIG {
                continue;
            }
            if let Some(rest) = path.strip_prefix(&format!("{}/", layout::ADMIN_KEYS)) {
                if rest.parse::<Id16>().is_ok() {
                    self.key_files.push(path);
                } else {
                    junk.push((path, "not a key file name"));
                }
                continue;
            }
            match layout::parse_host_file(&path) {
                Some((host, HostDir::Sessions, name)) => self.sessions.push((host, name)),
                Some((host, _, _)) if host != self.host => {
                    junk.push((path, "belongs to another host; not checked"));
                }
                Some((_, HostDir::Packs, name)) => {
                    self.listed_packs.insert(name, item.size);
                }
                Some((_, dir @ (HostDir::Index | HostDir::TreeIndex), name)) => {
                    self.index_names.push((dir, name));
                }
                Some((_, HostDir::Snapshots, name)) => self.snapshot_names.push(name),
                // Plans and sweep records are checked by `check_prune_state`, which lists
                // them itself.
                None if path == layout::PRUNE_LOCK || layout::parse_admin_file(&path).is_some() => {
                }
                None => junk.push((path, "not part of the repository layout")),
            }
        }
        self.report.packs = self.listed_packs.len();
        for (path, why) in junk {
            self.report.add(Problem::new(K::UnknownFile, path, why));
        }
        Ok(())
    }

    /// The config was verified at open; this catches it going missing or changing since.
    fn check_config(&mut self) {
        let detail = match self.repo.backend().read(layout::CONFIG, None) {
            Ok(b) if b == self.repo.config_bytes() => return,
            Ok(b) => match crate::config::Config::from_file(&b) {
                Err(e) => reason(&e),
                Ok(_) => "differs from the config verified when the repository was opened".into(),
            },
            Err(e) => reason(&Error::Backend(e)),
        };
        self.report
            .add(Problem::new(K::ConfigInvalid, layout::CONFIG, detail));
    }

    /// Key files cannot be unwrapped without their passwords, but their plain checksum
    /// tells a damaged file from an intact one.
    fn check_keys(&mut self) {
        if self.key_files.is_empty() {
            self.report.add(Problem::new(
                K::NoKeyFile,
                layout::ADMIN_KEYS,
                "no key file in the repository: only a key file kept elsewhere opens it",
            ));
        }
        let repo_id = self.repo.config().repo_id.to_hex();
        for path in std::mem::take(&mut self.key_files) {
            let problem = match self.repo.backend().read(&path, None) {
                Err(e) => Some(reason(&Error::Backend(e))),
                Ok(bytes) => match KeyFile::parse(&path, &bytes) {
                    Err(e) => Some(reason(&e)),
                    Ok(kf) => key_file_problem(&kf, &path, &repo_id),
                },
            };
            if let Some(detail) = problem {
                self.report
                    .add(Problem::new(K::KeyFileDamaged, path, detail));
            }
        }
    }

    fn check_index_files(&mut self) -> Result<()> {
        let mut files = Vec::new();
        for (dir, name) in std::mem::take(&mut self.index_names) {
            self.cancel_point()?;
            let path = layout::host_file(&self.host, dir, &name);
            let (ftype, shared) = match dir {
                HostDir::Index => (FileType::SharedIndex, true),
                _ => (FileType::PrivateIndex, false),
            };
            match self.repo.read_index_file(
                self.repo.own_keys(),
                &path,
                &IndexFileId(name),
                ftype,
                false,
            ) {
                Err(e) => {
                    let p = Problem::new(K::IndexFileDamaged, path, reason(&e));
                    self.report.add(p);
                }
                // A shared index is sealed under the group key and must list only group
                // packs; anything else means its writer is broken.
                Ok(f)
                    if f.packs
                        .iter()
                        .any(|p| (p.kind == PackKind::Group) != shared) =>
                {
                    let p = Problem::new(
                        K::IndexFileDamaged,
                        path,
                        "lists packs of the wrong kind for its directory",
                    );
                    self.report.add(p);
                }
                Ok(f) => files.push((path, f)),
            }
        }
        for (path, f) in files {
            self.index.add_file(&f);
            for pack in f.packs {
                self.indexed.entry(pack.name).or_insert(Indexed {
                    pack,
                    index_path: path.clone(),
                });
            }
        }
        self.index.finalize();
        Ok(())
    }

    fn check_snapshots(&mut self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let mut out = Vec::new();
        for name in std::mem::take(&mut self.snapshot_names) {
            self.cancel_point()?;
            let name = SnapshotId(name);
            match self.repo.load_snapshot(&name) {
                Ok(s) => out.push((name, s)),
                Err(e) => {
                    let path = layout::host_file(&self.host, HostDir::Snapshots, name.as_id());
                    self.report
                        .add(Problem::new(K::SnapshotDamaged, path, reason(&e)));
                }
            }
        }
        out.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
        self.report.snapshots = out.len();
        Ok(out)
    }

    /// Listed packs against indexed packs, then every present pack's header (in parallel:
    /// each is one or two small ranged reads).
    fn check_packs(&mut self) -> Result<()> {
        let mut missing: Vec<&Indexed> = self
            .indexed
            .values()
            .filter(|i| !self.listed_packs.contains_key(&i.pack.name))
            .collect();
        missing.sort_by_key(|i| i.pack.name);
        let mut problems = Vec::new();
        for i in missing {
            let detail = format!("missing (listed in index file {})", i.index_path);
            let path = self.pack_path(&i.pack.name);
            problems.push(Problem::new(K::PackMissing, path, detail));
            self.lost.insert(i.pack.name, 0);
        }
        let results: Vec<(Vec<Problem>, Vec<Id>)> = self
            .listed_packs
            .par_iter()
            .map(|(name, size)| {
                if self.progress.cancelled() {
                    return (Vec::new(), Vec::new());
                }
                self.check_pack(name, *size)
            })
            .collect();
        self.cancel_point()?;
        for ((name, size), (probs, orphans)) in self.listed_packs.iter().zip(results) {
            problems.extend(probs);
            for id in orphans {
                self.orphan_blobs.insert(id, *name);
            }
            if let Some(i) = self.indexed.get(name) {
                if *size < i.pack.len {
                    self.lost.insert(*name, *size);
                }
            }
        }
        for p in problems {
            self.report.add(p);
        }
        Ok(())
    }

    /// One pack: size against its index, header against its index. For an unindexed pack,
    /// returns its blob ids (it is a warning if its header reads, an error if not).
    fn check_pack(&self, name: &Id, size: u64) -> (Vec<Problem>, Vec<Id>) {
        let path = self.pack_path(name);
        let indexed = self.indexed.get(name);
        if let Some(i) = indexed {
            if i.pack.len != size {
                let detail = format!(
                    "{size} bytes, but index file {} lists {}",
                    i.index_path, i.pack.len
                );
                // The header sits at the end, so reading it would only repeat the finding.
                return (
                    vec![Problem::new(K::PackSizeMismatch, path, detail)],
                    vec![],
                );
            }
        }
        let header = match self.repo.read_pack_header(self.host, name, size) {
            Ok(h) => h,
            Err(e) => {
                let kind = match &e {
                    Error::Backend(b) if b.kind != BackendErrorKind::RangeNotSatisfiable => {
                        K::PackUnreadable
                    }
                    _ => K::PackHeaderDamaged,
                };
                return (vec![Problem::new(kind, path, reason(&e))], vec![]);
            }
        };
        let Some(i) = indexed else {
            let ids = header.entries.iter().map(|e| e.id).collect();
            let detail = format!(
                "no index file lists this pack of {} blobs (left by an interrupted backup; \
                 the next backup indexes it)",
                header.entries.len()
            );
            return (vec![Problem::new(K::UnindexedPack, path, detail)], ids);
        };
        let mut problems = Vec::new();
        if header.kind != i.pack.kind {
            let detail = format!(
                "header says {:?} pack, index file {} says {:?}",
                header.kind, i.index_path, i.pack.kind
            );
            problems.push(Problem::new(K::PackHeaderMismatch, path, detail));
        } else if sorted(&header.entries) != sorted(&i.pack.entries) {
            let detail = format!(
                "header lists other blobs than index file {} ({} vs {} entries)",
                i.index_path,
                header.entries.len(),
                i.pack.entries.len()
            );
            problems.push(Problem::new(K::PackHeaderMismatch, path, detail));
        }
        (problems, vec![])
    }

    /// Walks every snapshot's trees, each distinct tree once, checking that every tree
    /// opens and every content blob is indexed in a readable pack.
    fn walk_trees(&mut self, snapshots: &[(SnapshotId, Snapshot)]) -> Result<()> {
        let mut seen: HashSet<Id> = HashSet::new();
        for (sid, snap) in snapshots {
            // Problems name the snapshot by its file.
            let sid = sid.as_id();
            let spath = layout::host_file(&self.host, HostDir::Snapshots, sid);
            let mut stack = vec![(snap.tree, String::from("/"))];
            while let Some((tid, dir)) = stack.pop() {
                if !seen.insert(tid) {
                    continue;
                }
                self.cancel_point()?;
                let Some(tree) = self.load_tree(&tid, sid, &spath, &dir) else {
                    continue;
                };
                for node in &tree.nodes {
                    let name = String::from_utf8_lossy(&node.name);
                    let path = if dir.ends_with('/') {
                        format!("{dir}{name}")
                    } else {
                        format!("{dir}/{name}")
                    };
                    self.check_content(node, sid, &spath, &path);
                    if let Some(st) = node.subtree {
                        stack.push((st, path));
                    }
                }
            }
        }
        self.report.trees = seen.len();
        Ok(())
    }

    /// Loads a tree through the check's own index; reports why it cannot.
    fn load_tree(&mut self, tid: &Id, sid: &Id, spath: &str, dir: &str) -> Option<Tree> {
        let Some(loc) = self.index.lookup(tid) else {
            let detail = self.not_indexed("tree", tid);
            let p = Problem::new(K::TreeMissing, spath, detail)
                .in_snapshot(*sid, dir)
                .blob(*tid, None);
            self.report.add(p);
            return None;
        };
        let ppath = self.pack_path(&loc.pack.name);
        let range = loc.offset..loc.offset + u64::from(loc.slen);
        let stored = match self.tree_packs.as_mut() {
            Some(t) => t.read(self.repo, &ppath, &loc.pack.name, range),
            None => self.repo.backend().read(&ppath, Some(range)),
        };
        let r = stored
            .map_err(Error::from)
            .and_then(|stored| {
                self.repo
                    .open_blob(BlobType::Tree, tid, None, &loc, &stored)
            })
            .and_then(|plain| {
                Tree::decode(&plain)
                    .map_err(|e| Error::corrupt("tree", tid.to_hex(), e.to_string()))
            });
        match r {
            Ok(t) => Some(t),
            Err(e) => {
                let detail = format!("tree cannot be read: {}", reason(&e));
                let p = Problem::new(K::TreeDamaged, ppath, detail)
                    .in_snapshot(*sid, dir)
                    .blob(*tid, Some(loc.offset));
                self.report.add(p);
                None
            }
        }
    }

    /// Checks a file's content blobs; at most one problem per file and damaged pack, so a
    /// large file in a lost pack is one line, not thousands.
    fn check_content(&mut self, node: &crate::tree::Node, sid: &Id, spath: &str, path: &str) {
        let mut missing: Option<(Id, usize)> = None;
        let mut lost: BTreeMap<Id, (Id, u64)> = BTreeMap::new();
        for c in &node.content {
            let (_, id) = self.repo.content_id(c);
            let Some(loc) = self.index.lookup(&id) else {
                missing.get_or_insert((id, 0)).1 += 1;
                continue;
            };
            if let Some(present) = self.lost.get(&loc.pack.name) {
                if loc.offset + u64::from(loc.slen) > *present {
                    lost.entry(loc.pack.name).or_insert((id, loc.offset));
                }
            }
            if self.keep_keys {
                self.cks.insert(id, c.ck);
            }
        }
        if let Some((id, n)) = missing {
            let detail = format!(
                "{n} content blob(s) of this file: {}",
                self.not_indexed("data blob", &id)
            );
            let p = Problem::new(K::DataBlobMissing, spath, detail)
                .in_snapshot(*sid, path)
                .blob(id, None);
            self.report.add(p);
        }
        for (pack, (id, offset)) in lost {
            let p = Problem::new(
                K::DataBlobLost,
                self.pack_path(&pack),
                "content of this file lies in a missing or truncated pack",
            )
            .in_snapshot(*sid, path)
            .blob(id, Some(offset));
            self.report.add(p);
        }
    }

    /// Why a blob is not indexed, with the hint that matters: whether it survives in an
    /// unindexed pack (then the next backup re-indexes it and nothing is lost).
    fn not_indexed(&self, what: &str, id: &Id) -> String {
        match self.orphan_blobs.get(id) {
            Some(pack) => format!(
                "{what} is in no index file, but survives in unindexed pack {} \
                 (the next backup indexes it)",
                self.pack_path(pack)
            ),
            None => format!("{what} is in no index file and in no pack"),
        }
    }
}

/// Entries in storage order, for comparing header and index regardless of listing order.
fn sorted(e: &[PackEntry]) -> Vec<PackEntry> {
    let mut v = e.to_vec();
    v.sort_by_key(|x| x.offset);
    v
}

/// What is wrong with a parsed key file, as far as can be told without its password.
fn key_file_problem(kf: &KeyFile, path: &str, repo_id: &str) -> Option<String> {
    if !kf.checksum_ok() {
        return Some("checksum mismatch (the file is damaged)".into());
    }
    if kf.kind != "admin" {
        return Some(format!("unknown key kind {:?}", kf.kind));
    }
    if !path.ends_with(&format!("/{}", kf.key_id)) {
        return Some(format!(
            "holds key id {}, not the one in its name",
            kf.key_id
        ));
    }
    if kf.repo_id != repo_id {
        return Some("belongs to another repository".into());
    }
    if let Err(e) = kf.kdf.check_bounds() {
        return Some(format!("KDF parameters out of bounds ({e})"));
    }
    None
}
