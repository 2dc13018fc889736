//! `repair snapshots`: a snapshot that references lost content is rewritten without it.
//!
//! restic's semantics, in their simplest honest form: a file with a content blob the index
//! does not know is removed from its directory, and a directory whose tree cannot be read
//! becomes an empty directory; each loss is listed in the new snapshot's summary errors
//! with its path, so what the snapshot no longer holds stays on record. The new snapshot
//! keeps the original's time, paths and tags (plus `repaired`) and names it as its parent;
//! the original is removed only when asked (`forget`).
//!
//! Which blobs are lost is what the loaded index says: run `repair index` first, so a
//! pack that is gone is no longer listed as present.

use std::collections::HashSet;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::{Id, SnapshotId};
use crate::repository::packer::Packer;
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::tree::{Node, Scopes, Tree};

/// The tag every repaired snapshot carries.
pub const REPAIRED_TAG: &str = "repaired";

/// How to repair snapshots.
#[derive(Clone, Debug, Default)]
pub struct SnapshotRepairOptions {
    /// Report what would change; write and remove nothing.
    pub dry_run: bool,
    /// Remove each original once its repaired snapshot is written.
    pub forget: bool,
}

/// One snapshot that referenced lost content.
#[derive(Clone, Debug, Serialize)]
pub struct RepairedSnapshot {
    /// The original snapshot.
    pub original: SnapshotId,
    /// The repaired one (`None` on a dry run).
    pub repaired: Option<SnapshotId>,
    /// What was dropped: (path in the snapshot, why).
    pub lost: Vec<(String, String)>,
    /// Whether the original was removed.
    pub forgotten: bool,
}

/// What `repair snapshots` did (or, dry, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct SnapshotRepairReport {
    /// Nothing was written or removed.
    pub dry_run: bool,
    /// Snapshots read.
    pub snapshots_checked: usize,
    /// Snapshots that lost content.
    pub repaired: Vec<RepairedSnapshot>,
    /// Snapshot files that could not be read (nothing to repair them from).
    pub unreadable: Vec<String>,
}

/// Rewrites every snapshot of this host that references lost content.
pub fn repair_snapshots(
    repo: &Repository,
    opts: &SnapshotRepairOptions,
) -> Result<SnapshotRepairReport> {
    let (snapshots, bad) = repo.load_snapshots()?;
    let mut r = SnapshotRepairReport {
        dry_run: opts.dry_run,
        snapshots_checked: snapshots.len(),
        unreadable: bad.iter().map(ToString::to_string).collect(),
        ..SnapshotRepairReport::default()
    };
    let cfg = repo.config();
    let scopes = Scopes {
        group: (cfg.groups[0].id, cfg.groups[0].epoch),
        host: (repo.host_id(), 1),
    };
    let rewrite = |packer: Option<&Packer<'_>>| -> Result<Vec<(SnapshotId, Snapshot, Vec<_>)>> {
        let mut w = Rewriter {
            repo,
            packer,
            intact: HashSet::new(),
            lost: Vec::new(),
        };
        let mut out = Vec::new();
        for (id, snap) in &snapshots {
            w.lost.clear();
            let root = w.dir(&snap.tree, "/", &scopes)?;
            if let Some(root) = root {
                out.push((*id, repaired(*id, snap, root, &w.lost), w.lost.clone()));
            }
        }
        Ok(out)
    };
    let rewritten = if opts.dry_run {
        rewrite(None)?
    } else {
        // Trees first (the packer indexes them when it returns), snapshots after.
        repo.with_packer(|p| rewrite(Some(p)))?.0
    };
    for (original, snap, lost) in rewritten {
        let mut entry = RepairedSnapshot {
            original,
            repaired: None,
            lost,
            forgotten: false,
        };
        if !opts.dry_run {
            // A run without `forget` leaves the original, and the next run finds it damaged
            // again: the copy an earlier run wrote is reused, so repeating a repair never
            // piles up identical snapshots.
            let earlier = snapshots.iter().find(|(_, s)| {
                s.parent == Some(original)
                    && s.tree == snap.tree
                    && s.tags.iter().any(|t| t == REPAIRED_TAG)
            });
            entry.repaired = Some(match earlier {
                Some((id, _)) => *id,
                None => repo.save_snapshot(&snap)?,
            });
            if opts.forget {
                repo.remove_snapshot(&original)?;
                entry.forgotten = true;
            }
        }
        r.repaired.push(entry);
    }
    Ok(r)
}

/// The repaired copy of `snap`: same time and paths, the new tree, the losses on record.
fn repaired(
    original: SnapshotId,
    snap: &Snapshot,
    tree: Id,
    lost: &[(String, String)],
) -> Snapshot {
    let mut s = snap.clone();
    s.tree = tree;
    s.parent = Some(original);
    if !s.tags.iter().any(|t| t == REPAIRED_TAG) {
        s.tags.push(REPAIRED_TAG.into());
    }
    s.summary.errors.extend(lost.iter().cloned());
    s
}

struct Rewriter<'a, 'p> {
    repo: &'a Repository,
    /// Where new trees go; `None` on a dry run (ids are computed, nothing is stored).
    packer: Option<&'a Packer<'p>>,
    /// Trees known to reach only indexed content, so each is walked once per run.
    intact: HashSet<Id>,
    /// Losses of the snapshot being rewritten.
    lost: Vec<(String, String)>,
}

impl Rewriter<'_, '_> {
    /// The directory `tid` at `path` without its lost content: `None` when nothing was
    /// lost below it, else the id of its rewritten tree. An unreadable tree becomes an
    /// empty one in `scopes` (its parent's).
    fn dir(&mut self, tid: &Id, path: &str, scopes: &Scopes) -> Result<Option<Id>> {
        if self.intact.contains(tid) {
            return Ok(None);
        }
        let mut tree = match self.repo.load_tree(tid) {
            Ok(t) => t,
            Err(e @ Error::Cancelled) => return Err(e),
            Err(e) => {
                self.lost.push((
                    path.to_owned(),
                    format!("lost: tree {tid} unreadable ({e})"),
                ));
                let empty = Tree {
                    scopes: *scopes,
                    nodes: Vec::new(),
                };
                return self.store(&empty).map(Some);
            }
        };
        let mut changed = false;
        let mut kept: Vec<Node> = Vec::with_capacity(tree.nodes.len());
        for mut node in std::mem::take(&mut tree.nodes) {
            let name = String::from_utf8_lossy(&node.name);
            let child = if path.ends_with('/') {
                format!("{path}{name}")
            } else {
                format!("{path}/{name}")
            };
            let missing = node
                .content
                .iter()
                .map(|c| self.repo.content_id(c).1)
                .find(|id| !self.repo.index().contains(id));
            if let Some(id) = missing {
                self.lost.push((child, format!("lost: blob {id} missing")));
                changed = true;
                continue;
            }
            if let Some(st) = node.subtree {
                if let Some(new) = self.dir(&st, &child, &tree.scopes)? {
                    node.subtree = Some(new);
                    changed = true;
                }
            }
            kept.push(node);
        }
        if !changed {
            self.intact.insert(*tid);
            return Ok(None);
        }
        tree.nodes = kept;
        self.store(&tree).map(Some)
    }

    fn store(&self, tree: &Tree) -> Result<Id> {
        let encoded = tree.encode();
        let tid = self.repo.tree_id(&encoded);
        if let Some(p) = self.packer {
            if p.reserve(&tid) {
                p.add(self.repo.seal_tree(&encoded, tid))?;
            }
        }
        Ok(tid)
    }
}
