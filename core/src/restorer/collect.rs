//! Walking a snapshot's tree into the list of things to restore.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::RestoreOptions;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repository::Repository;
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

/// Everything to restore, parents before children.
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

pub(super) fn collect(repo: &Repository, root: &Id, opts: &RestoreOptions) -> Result<Listing> {
    let mut tid = *root;
    let mut snap_root = PathBuf::from("/");
    if let Some(sub) = &opts.subpath {
        for comp in sub.components() {
            let name = match comp {
                std::path::Component::RootDir => continue,
                std::path::Component::Normal(n) => n,
                _ => {
                    return Err(Error::InvalidInput(format!(
                        "invalid path {} in snapshot",
                        sub.display()
                    )))
                }
            };
            let tree = repo.load_tree(&tid)?;
            let node = tree
                .nodes
                .iter()
                .find(|n| n.name == name.as_bytes())
                .ok_or_else(|| Error::NotFound {
                    what: "path in snapshot",
                    name: sub.display().to_string(),
                })?;
            snap_root.push(name);
            match (node.kind, node.subtree) {
                (Some(NodeKind::Dir), Some(t)) => tid = t,
                _ => {
                    // A single file: restore it into the target under its own name.
                    let mut entries = Vec::new();
                    if !excluded(opts, &snap_root, false) && included(opts, &snap_root, false) {
                        entries.push(Entry {
                            snap_path: snap_root.clone(),
                            target: opts.target.join(name),
                            node: node.clone(),
                            depth: 1,
                        });
                    }
                    return Ok(Listing { entries });
                }
            }
        }
    }
    let mut entries = Vec::new();
    walk(repo, &tid, &snap_root, &opts.target, 1, opts, &mut entries)?;
    Ok(Listing { entries })
}

/// Adds the entries below tree `tid`; returns whether anything was added (so a directory
/// leading only to excluded entries is left out when `--include` is used).
fn walk(
    repo: &Repository,
    tid: &Id,
    snap_dir: &Path,
    target_dir: &Path,
    depth: usize,
    opts: &RestoreOptions,
    out: &mut Vec<Entry>,
) -> Result<bool> {
    let tree = repo.load_tree(tid)?;
    let mut any = false;
    for node in tree.nodes {
        let name = OsStr::from_bytes(&node.name);
        let snap_path = snap_dir.join(name);
        let target = target_dir.join(name);
        let is_dir = node.kind == Some(NodeKind::Dir);
        if excluded(opts, &snap_path, is_dir) {
            continue;
        }
        let inc = included(opts, &snap_path, is_dir);
        if is_dir {
            let at = out.len();
            let sub = node.subtree;
            out.push(Entry {
                snap_path: snap_path.clone(),
                target: target.clone(),
                node,
                depth,
            });
            let below = match sub {
                Some(t) => walk(repo, &t, &snap_path, &target, depth + 1, opts, out)?,
                None => false,
            };
            if !inc && !below {
                out.truncate(at);
            } else {
                any = true;
            }
        } else if inc {
            out.push(Entry {
                snap_path,
                target,
                node,
                depth,
            });
            any = true;
        }
    }
    Ok(any)
}

/// Removes what lies in the target but not in the listing (`--delete`).
pub(super) fn delete_extraneous(listing: &Listing, target: &Path) -> Result<u64> {
    let keep: HashSet<&Path> = listing.entries.iter().map(|e| e.target.as_path()).collect();
    let mut removed = 0;
    let mut stack = vec![target.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => return Err(Error::io("list", dir, e)),
        };
        for entry in rd {
            let entry = entry.map_err(|e| Error::io("list", &dir, e))?;
            let p = entry.path();
            let ft = entry.file_type().map_err(|e| Error::io("stat", &p, e))?;
            if keep.contains(p.as_path()) {
                if ft.is_dir() {
                    stack.push(p);
                }
                continue;
            }
            let r = if ft.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            r.map_err(|e| Error::io("remove", &p, e))?;
            removed += 1;
        }
    }
    Ok(removed)
}
