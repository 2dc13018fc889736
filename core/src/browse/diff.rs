//! Differences between two snapshot trees, restic-style: added, removed, type changed,
//! content modified and (optionally) metadata-only changes.
//!
//! Two directories with the same subtree id are identical all the way down (tree ids are
//! keyed hashes of canonical encodings), so they are skipped without being loaded: that
//! is what keeps a diff of two mostly equal snapshots cheap.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{walk, Visit};
use crate::error::Error;
use crate::id::Id;
use crate::repository::{Repository, TreeCache};
use crate::tree::{Node, NodeKind};

/// How an entry differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Modifier {
    /// Only in the second snapshot.
    Added,
    /// Only in the first snapshot.
    Removed,
    /// The kind changed (file became a directory, ...).
    TypeChanged,
    /// Content (file chunks, symlink target, device number) changed.
    Modified,
    /// Content and metadata changed (only reported with metadata on).
    ModifiedAndMetadata,
    /// Only metadata changed (only reported with metadata on).
    Metadata,
}

impl Modifier {
    /// restic's one- or two-letter symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Modifier::Added => "+",
            Modifier::Removed => "-",
            Modifier::TypeChanged => "T",
            Modifier::Modified => "M",
            Modifier::ModifiedAndMetadata => "MU",
            Modifier::Metadata => "U",
        }
    }
}

/// One difference. `node` is the entry in the second snapshot, or the first for removals.
#[derive(Debug)]
pub struct Change<'a> {
    /// Absolute in-snapshot path.
    pub path: &'a Path,
    /// What changed.
    pub modifier: Modifier,
    /// The entry.
    pub node: &'a Node,
}

/// Counts of one side of a diff (restic's "added"/"removed" blocks).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SideStats {
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks, devices, fifos.
    pub others: u64,
    /// Data blobs only on this side.
    pub data_blobs: u64,
    /// Tree blobs only on this side.
    pub tree_blobs: u64,
    /// Plain bytes of the data blobs only on this side.
    pub bytes: u64,
}

/// Totals of a diff.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiffStats {
    /// Entries whose content or kind changed.
    pub changed_files: u64,
    /// Only in the second snapshot.
    pub added: SideStats,
    /// Only in the first snapshot.
    pub removed: SideStats,
}

type Report<'r, E> = dyn FnMut(&Change<'_>) -> Result<(), E> + 'r;

struct Differ<'a> {
    repo: &'a Repository,
    cache: &'a TreeCache,
    metadata: bool,
    // Blobs met in the differing parts of each side; what is on one side only was
    // added or removed (a moved file lands in both and counts as neither).
    data: [HashMap<Id, u32>; 2],
    trees: [HashSet<Id>; 2],
    stats: DiffStats,
}

const OLD: usize = 0;
const NEW: usize = 1;

/// Whether the metadata restore applies differs (not ctime, inode, dev or link count,
/// which change on every copy without the file changing).
fn metadata_differs(a: &Node, b: &Node) -> bool {
    a.mode != b.mode
        || a.uid != b.uid
        || a.gid != b.gid
        || a.user != b.user
        || a.group != b.group
        || a.mtime_ns != b.mtime_ns
        || a.xattrs != b.xattrs
}

/// Whether two nodes of the same non-directory kind hold different content.
fn content_differs(a: &Node, b: &Node) -> bool {
    !crate::tree::same_bytes(&a.content, &b.content)
        || a.target != b.target
        || a.rdev != b.rdev
        || a.size != b.size
}

impl Differ<'_> {
    fn collect(&mut self, side: usize, node: &Node) {
        for c in &node.content {
            let (_, id) = self.repo.content_id(c);
            // A bundle is one blob for all its members: its size, not a member's.
            let plen = match c.slice {
                Some(_) => self.repo.index().lookup(&id).map_or(c.plen, |l| l.plen),
                None => c.plen,
            };
            self.data[side].insert(id, plen);
        }
        if let Some(t) = node.subtree {
            self.trees[side].insert(t);
        }
    }

    fn count(&mut self, side: usize, node: &Node) {
        let s = if side == NEW {
            &mut self.stats.added
        } else {
            &mut self.stats.removed
        };
        match node.kind {
            Some(NodeKind::File) => s.files += 1,
            Some(NodeKind::Dir) => s.dirs += 1,
            _ => s.others += 1,
        }
    }

    /// Reports `node` and everything below it as added (NEW) or removed (OLD).
    fn one_side<E: From<Error>>(
        &mut self,
        side: usize,
        path: &Path,
        node: &Node,
        report: &mut Report<'_, E>,
    ) -> Result<(), E> {
        self.one_side_flat(side, path, node, report)?;
        if let Some(sub) = node.subtree.filter(|_| node.kind == Some(NodeKind::Dir)) {
            self.children_one_side(side, path, &sub, report)?;
        }
        Ok(())
    }

    fn children_one_side<E: From<Error>>(
        &mut self,
        side: usize,
        path: &Path,
        sub: &Id,
        report: &mut Report<'_, E>,
    ) -> Result<(), E> {
        let (repo, cache) = (self.repo, self.cache);
        walk(repo, cache, sub, path, &mut |p, n| {
            self.one_side_flat(side, p, n, report)?;
            Ok(Visit::Continue)
        })
    }

    /// Like [`Self::one_side`] without descending (the walk does that).
    fn one_side_flat<E: From<Error>>(
        &mut self,
        side: usize,
        path: &Path,
        node: &Node,
        report: &mut Report<'_, E>,
    ) -> Result<(), E> {
        self.count(side, node);
        self.collect(side, node);
        let modifier = if side == NEW {
            Modifier::Added
        } else {
            Modifier::Removed
        };
        report(&Change {
            path,
            modifier,
            node,
        })
    }

    fn both<E: From<Error>>(
        &mut self,
        path: &Path,
        a: &Node,
        b: &Node,
        report: &mut Report<'_, E>,
    ) -> Result<(), E> {
        let meta = self.metadata && metadata_differs(a, b);
        if a.kind != b.kind {
            self.stats.changed_files += 1;
            self.collect(OLD, a);
            self.collect(NEW, b);
            report(&Change {
                path,
                modifier: Modifier::TypeChanged,
                node: b,
            })?;
            // What was inside a directory that is now something else is gone, and the
            // other way round.
            for (side, n) in [(OLD, a), (NEW, b)] {
                if let Some(sub) = n.subtree.filter(|_| n.kind == Some(NodeKind::Dir)) {
                    self.children_one_side(side, path, &sub, report)?;
                }
            }
            return Ok(());
        }
        if a.kind == Some(NodeKind::Dir) {
            if meta {
                report(&Change {
                    path,
                    modifier: Modifier::Metadata,
                    node: b,
                })?;
            }
            if let (Some(ta), Some(tb)) = (a.subtree, b.subtree) {
                if ta != tb {
                    self.trees[OLD].insert(ta);
                    self.trees[NEW].insert(tb);
                    self.tree(&ta, &tb, path, report)?;
                }
            }
            return Ok(());
        }
        let content = content_differs(a, b);
        let modifier = match (content, meta) {
            (true, true) => Modifier::ModifiedAndMetadata,
            (true, false) => Modifier::Modified,
            (false, true) => Modifier::Metadata,
            (false, false) => return Ok(()),
        };
        if content {
            self.stats.changed_files += 1;
            self.collect(OLD, a);
            self.collect(NEW, b);
        }
        report(&Change {
            path,
            modifier,
            node: b,
        })
    }

    fn tree<E: From<Error>>(
        &mut self,
        ta: &Id,
        tb: &Id,
        dir: &Path,
        report: &mut Report<'_, E>,
    ) -> Result<(), E> {
        let a = self.cache.get(self.repo, ta)?;
        let b = self.cache.get(self.repo, tb)?;
        let (mut i, mut j) = (0, 0);
        let mut path = dir.to_path_buf();
        // Both node lists are sorted by name bytes: a merge join.
        while i < a.nodes.len() || j < b.nodes.len() {
            let order = match (a.nodes.get(i), b.nodes.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            let (name, step) = match order {
                std::cmp::Ordering::Less => (&a.nodes[i].name, (1, 0)),
                std::cmp::Ordering::Greater => (&b.nodes[j].name, (0, 1)),
                std::cmp::Ordering::Equal => (&a.nodes[i].name, (1, 1)),
            };
            path.push(OsStr::from_bytes(name));
            match step {
                (1, 0) => self.one_side(OLD, &path, &a.nodes[i], report)?,
                (0, 1) => self.one_side(NEW, &path, &b.nodes[j], report)?,
                _ => self.both(&path, &a.nodes[i], &b.nodes[j], report)?,
            }
            path.pop();
            i += step.0;
            j += step.1;
        }
        Ok(())
    }

    fn finish(mut self) -> DiffStats {
        for (side, other) in [(OLD, NEW), (NEW, OLD)] {
            let mut s = SideStats::default();
            for (id, plen) in &self.data[side] {
                if !self.data[other].contains_key(id) {
                    s.data_blobs += 1;
                    s.bytes += u64::from(*plen);
                }
            }
            s.tree_blobs = self.trees[side].difference(&self.trees[other]).count() as u64;
            let t = if side == NEW {
                &mut self.stats.added
            } else {
                &mut self.stats.removed
            };
            t.data_blobs = s.data_blobs;
            t.tree_blobs = s.tree_blobs;
            t.bytes = s.bytes;
        }
        self.stats
    }
}

/// Compares root trees `a` (older) and `b`, calling `report` for each difference in path
/// order (a directory before its entries). Metadata-only changes are reported only when
/// `metadata` is set.
pub fn diff<E: From<Error>>(
    repo: &Repository,
    cache: &TreeCache,
    a: &Id,
    b: &Id,
    metadata: bool,
    report: &mut Report<'_, E>,
) -> Result<DiffStats, E> {
    let mut d = Differ {
        repo,
        cache,
        metadata,
        data: [HashMap::new(), HashMap::new()],
        trees: [HashSet::new(), HashSet::new()],
        stats: DiffStats::default(),
    };
    if a != b {
        d.trees[OLD].insert(*a);
        d.trees[NEW].insert(*b);
        d.tree(a, b, &PathBuf::from("/"), report)?;
    }
    Ok(d.finish())
}
