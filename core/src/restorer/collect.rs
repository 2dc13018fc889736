//! Walking a snapshot's tree into batches of things to restore.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::RestoreOptions;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repository::{Repository, TreeCache};
use crate::tree::{Node, NodeKind};

/// One thing to restore.
pub struct Entry {
    /// Path in the snapshot (absolute), for include/exclude and messages.
    pub snap_path: PathBuf,
    /// Path at the target.
    pub target: PathBuf,
    /// Its node.
    pub node: Node,
    /// Directory depth below the target (metadata is applied deepest first).
    pub depth: usize,
}

/// A batch of things to restore, parents before children.
pub struct Listing {
    /// Entries in tree order.
    pub entries: Vec<Entry>,
}

fn excluded(opts: &RestoreOptions, snap_path: &Path, is_dir: bool) -> bool {
    opts.exclude
        .as_ref()
        .is_some_and(|e| e.excludes_path(snap_path, is_dir))
}

fn included(opts: &RestoreOptions, snap_path: &Path, is_dir: bool) -> bool {
    opts.include
        .as_ref()
        .is_none_or(|i| i.excludes_path(snap_path, is_dir))
}

/// One directory being walked.
struct Frame {
    /// Its remaining nodes, in name order.
    nodes: std::vec::IntoIter<Node>,
    snap_dir: PathBuf,
    target_dir: PathBuf,
    depth: usize,
    /// The directory's own entry, held back until it or something below it is included
    /// (with `--include`, a directory leading only to excluded entries is left out).
    pending: Option<Entry>,
    /// Names restored into it, for `--delete` (only that directory's, so bounded by its size).
    kept: HashSet<Vec<u8>>,
}

/// Walks a snapshot's tree depth-first and hands out what to restore a batch at a time,
/// so the restore's memory follows the batch and the directory depth, not the number of
/// files in the snapshot. With `--delete`, each directory's extraneous entries are removed
/// once the walk has seen all of it.
pub(super) struct Walker<'a> {
    repo: &'a Repository,
    opts: &'a RestoreOptions,
    stack: Vec<Frame>,
    /// A sub-path naming a single file: the whole restore.
    single: Option<Entry>,
    /// Entries `--delete` removed.
    pub deleted: u64,
}

impl<'a> Walker<'a> {
    /// A walk of tree `root`, or of the sub-path the options name.
    pub fn new(repo: &'a Repository, root: &Id, opts: &'a RestoreOptions) -> Result<Self> {
        let mut w = Walker {
            repo,
            opts,
            stack: Vec::new(),
            single: None,
            deleted: 0,
        };
        let mut tid = *root;
        let mut snap_root = PathBuf::from("/");
        if let Some(sub) = &opts.subpath {
            let node = crate::browse::lookup(repo, &TreeCache::default(), root, sub)?;
            snap_root.extend(
                sub.components()
                    .filter(|c| matches!(c, std::path::Component::Normal(_))),
            );
            match (node.kind, node.subtree, snap_root.file_name()) {
                (Some(NodeKind::Dir), Some(t), _) => tid = t,
                (Some(NodeKind::Dir), None, _) | (_, _, None) => return Ok(w),
                (_, _, Some(name)) => {
                    // A single file: restore it into the target under its own name.
                    if !excluded(opts, &snap_root, false) && included(opts, &snap_root, false) {
                        w.single = Some(Entry {
                            target: opts.target.join(name),
                            snap_path: snap_root.clone(),
                            node,
                            depth: 1,
                        });
                    }
                    return Ok(w);
                }
            }
        }
        w.stack.push(Frame {
            nodes: repo.load_tree(&tid)?.nodes.into_iter(),
            snap_dir: snap_root,
            target_dir: opts.target.clone(),
            depth: 1,
            pending: None,
            kept: HashSet::new(),
        });
        Ok(w)
    }

    /// The next batch: about `limit` entries (fewer at the end; none once the walk is done).
    pub fn next_batch(&mut self, limit: usize) -> Result<Listing> {
        let mut out = Vec::new();
        if let Some(e) = self.single.take() {
            out.push(e);
        }
        while out.len() < limit {
            let Some(top) = self.stack.last_mut() else {
                break;
            };
            let Some(node) = top.nodes.next() else {
                self.leave()?;
                continue;
            };
            let name = OsStr::from_bytes(&node.name);
            let snap_path = top.snap_dir.join(name);
            let target = top.target_dir.join(name);
            let depth = top.depth;
            let is_dir = node.kind == Some(NodeKind::Dir);
            if excluded(self.opts, &snap_path, is_dir) {
                continue;
            }
            let inc = included(self.opts, &snap_path, is_dir);
            if !is_dir {
                if inc {
                    self.emit_ancestors(&mut out);
                    if let Some(top) = self.stack.last_mut() {
                        top.kept.insert(node.name.clone());
                    }
                    out.push(Entry {
                        snap_path,
                        target,
                        node,
                        depth,
                    });
                }
                continue;
            }
            let nodes = match node.subtree {
                Some(t) => self.repo.load_tree(&t)?.nodes,
                None => Vec::new(),
            };
            let entry = Entry {
                snap_path: snap_path.clone(),
                target: target.clone(),
                node,
                depth,
            };
            self.stack.push(Frame {
                nodes: nodes.into_iter(),
                snap_dir: snap_path,
                target_dir: target,
                depth: depth + 1,
                pending: Some(entry),
                kept: HashSet::new(),
            });
            if inc {
                self.emit_ancestors(&mut out);
            }
        }
        Ok(Listing { entries: out })
    }

    /// Emits the held-back entries of the directories on the stack, outermost first.
    fn emit_ancestors(&mut self, out: &mut Vec<Entry>) {
        for i in 0..self.stack.len() {
            if let Some(e) = self.stack[i].pending.take() {
                if let Some(parent) = i.checked_sub(1).map(|p| &mut self.stack[p]) {
                    parent.kept.insert(e.node.name.clone());
                }
                out.push(e);
            }
        }
    }

    /// Done with the innermost directory: with `--delete`, remove what its target holds
    /// that the snapshot does not (a directory never restored is removed whole by its
    /// parent, as it is not among the parent's kept names).
    fn leave(&mut self) -> Result<()> {
        let Some(frame) = self.stack.pop() else {
            return Ok(());
        };
        if self.opts.delete && !self.opts.dry_run && frame.pending.is_none() {
            self.deleted += delete_extraneous(&frame.target_dir, &frame.kept)?;
        }
        Ok(())
    }
}

/// Removes the entries of `dir` whose names are not in `keep` (`--delete`).
fn delete_extraneous(dir: &Path, keep: &HashSet<Vec<u8>>) -> Result<u64> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut removed = 0;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        if keep.contains(entry.file_name().as_bytes()) {
            continue;
        }
        let p = entry.path();
        let ft = entry.file_type().map_err(|e| Error::io("stat", &p, e))?;
        let r = if ft.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        r.map_err(|e| Error::io("remove", &p, e))?;
        removed += 1;
    }
    Ok(removed)
}
