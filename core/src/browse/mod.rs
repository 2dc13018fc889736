//! Read-only browsing of snapshots: path lookup and the depth-first tree walk shared by
//! `ls`, `find`, `diff`, `dump` and `stats`.
//!
//! Paths are absolute in-snapshot paths (`/home/simon/x`), built from raw name bytes, so
//! non-UTF-8 names survive until the caller decides how to print them.

pub mod diff;
pub mod find;
pub mod layout;
pub mod reader;
pub mod stats;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::repository::{Repository, TreeCache};
use crate::tree::{Node, NodeKind};

/// What the walk does after visiting a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visit {
    /// Go on, descending into the node if it is a directory.
    Continue,
    /// Go on, but do not descend into this directory.
    SkipSubtree,
    /// End the walk.
    Stop,
}

/// A directory node standing for the snapshot's root, which has no node of its own.
pub fn root_node(tree: Id) -> Node {
    Node {
        kind: Some(NodeKind::Dir),
        mode: 0o755,
        subtree: Some(tree),
        ..Node::default()
    }
}

/// The node at absolute in-snapshot `path` below root tree `root` ("/" gives [`root_node`]).
/// A missing path is [`Error::NotFound`].
pub fn lookup(repo: &Repository, cache: &TreeCache, root: &Id, path: &Path) -> Result<Node> {
    let mut node = root_node(*root);
    for comp in path.components() {
        let name = match comp {
            Component::RootDir | Component::CurDir => continue,
            Component::Normal(n) => n,
            // ".." and prefixes have no meaning inside a snapshot.
            _ => {
                return Err(Error::InvalidInput(format!(
                    "invalid path {} in snapshot",
                    path.display()
                )))
            }
        };
        let not_found = || Error::NotFound {
            what: "path in snapshot",
            name: path.display().to_string(),
        };
        let Some(tid) = node.subtree.filter(|_| node.kind == Some(NodeKind::Dir)) else {
            return Err(not_found());
        };
        let tree = cache.get(repo, &tid)?;
        let i = tree
            .nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name.as_bytes()))
            .map_err(|_| not_found())?;
        node = tree.nodes[i].clone();
    }
    Ok(node)
}

/// Walks tree `tid` depth-first, parents before children, nodes in name order, calling
/// `visit` with each node's absolute path (`base` joined with its name). The error type is
/// the caller's so its own failures (a closed stdout) pass through unchanged.
pub fn walk<E: From<Error>>(
    repo: &Repository,
    cache: &TreeCache,
    tid: &Id,
    base: &Path,
    visit: &mut dyn FnMut(&Path, &Node) -> std::result::Result<Visit, E>,
) -> std::result::Result<(), E> {
    walk_inner(repo, cache, tid, &mut base.to_path_buf(), visit).map(|_| ())
}

/// Returns false once the walk was stopped.
fn walk_inner<E: From<Error>>(
    repo: &Repository,
    cache: &TreeCache,
    tid: &Id,
    path: &mut PathBuf,
    visit: &mut dyn FnMut(&Path, &Node) -> std::result::Result<Visit, E>,
) -> std::result::Result<bool, E> {
    let tree = cache.get(repo, tid)?;
    for node in &tree.nodes {
        path.push(OsStr::from_bytes(&node.name));
        let v = visit(path, node)?;
        let go_on = match (v, node.kind, node.subtree) {
            (Visit::Stop, _, _) => false,
            (Visit::Continue, Some(NodeKind::Dir), Some(sub)) => {
                walk_inner(repo, cache, &sub, path, visit)?
            }
            _ => true,
        };
        path.pop();
        if !go_on {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Refuses anything but a regular file, by name.
pub(crate) fn require_file(node: &Node) -> Result<()> {
    if node.kind != Some(NodeKind::File) {
        return Err(Error::InvalidInput(format!(
            "{} is not a regular file",
            String::from_utf8_lossy(&node.name)
        )));
    }
    Ok(())
}

/// Passes a file's content to `sink` blob by blob, so memory stays at one chunk whatever
/// the file's size. Returns the bytes passed. The error type is the caller's, so a write
/// failure (a closed pipe) comes back exactly as the sink raised it.
pub fn dump_file<E: From<Error>>(
    repo: &Repository,
    node: &Node,
    sink: &mut dyn FnMut(&[u8]) -> std::result::Result<(), E>,
) -> std::result::Result<u64, E> {
    require_file(node)?;
    let mut n = 0u64;
    for c in &node.content {
        let (btype, id) = repo.content_id(c);
        let blob = repo.load_blob(btype, &id, Some(&c.ck))?;
        let plain = c.part(&blob).ok_or_else(|| {
            Error::corrupt(
                "file content",
                id.short(),
                "does not hold the bytes the tree says".to_owned(),
            )
        })?;
        sink(plain)?;
        n += plain.len() as u64;
    }
    Ok(n)
}
