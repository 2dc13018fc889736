//! Reading a file system entry into a tree [`Node`]: stat fields, symlink target, device
//! numbers, extended attributes (POSIX ACLs and file capabilities are xattrs on Linux), and
//! owner names for display.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::OnceLock;

use crate::tree::{Node, NodeKind};

/// What kind of node a file type becomes; `None` for sockets, which cannot be restored.
pub fn node_kind(m: &Metadata) -> Option<NodeKind> {
    let t = m.file_type();
    Some(if t.is_file() {
        NodeKind::File
    } else if t.is_dir() {
        NodeKind::Dir
    } else if t.is_symlink() {
        NodeKind::Symlink
    } else if t.is_char_device() {
        NodeKind::CharDev
    } else if t.is_block_device() {
        NodeKind::BlockDev
    } else if t.is_fifo() {
        NodeKind::Fifo
    } else {
        return None;
    })
}

/// Time in ns since the epoch from seconds and nanoseconds.
pub fn time_ns(sec: i64, nsec: i64) -> i64 {
    sec.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// Builds the node of `path` from its `lstat` metadata. Content and subtree are left empty
/// for the caller. Reading xattrs or a link target may fail; the error is returned so the
/// caller can record it.
pub fn read_node(path: &Path, name: &OsStr, m: &Metadata, kind: NodeKind) -> std::io::Result<Node> {
    let mut n = Node {
        name: name.as_bytes().to_vec(),
        kind: Some(kind),
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        user: user_name(m.uid()),
        group: group_name(m.gid()),
        mtime_ns: time_ns(m.mtime(), m.mtime_nsec()),
        ctime_ns: time_ns(m.ctime(), m.ctime_nsec()),
        size: if kind == NodeKind::File { m.size() } else { 0 },
        nlink: if kind == NodeKind::Dir { 0 } else { m.nlink() },
        inode: m.ino(),
        dev: m.dev(),
        ..Node::default()
    };
    match kind {
        NodeKind::Symlink => n.target = std::fs::read_link(path)?.as_os_str().as_bytes().to_vec(),
        NodeKind::CharDev | NodeKind::BlockDev => n.rdev = m.rdev(),
        _ => {}
    }
    n.xattrs = read_xattrs(path)?;
    Ok(n)
}

/// Extended attributes of the entry itself (not a symlink's target), sorted by name.
pub fn read_xattrs(path: &Path) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        // File systems without xattr support have none to back up.
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        match xattr::get(path, &name) {
            Ok(Some(v)) => out.push((name.as_bytes().to_vec(), v)),
            Ok(None) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

fn id_names(file: &str) -> HashMap<u32, String> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id = f.nth(1)?.parse().ok()?;
            Some((id, name.to_owned()))
        })
        .collect()
}

/// The user name of a uid (from /etc/passwd; empty if unknown).
pub fn user_name(uid: u32) -> String {
    static USERS: OnceLock<HashMap<u32, String>> = OnceLock::new();
    USERS
        .get_or_init(|| id_names("/etc/passwd"))
        .get(&uid)
        .cloned()
        .unwrap_or_default()
}

/// The group name of a gid (from /etc/group; empty if unknown).
pub fn group_name(gid: u32) -> String {
    static GROUPS: OnceLock<HashMap<u32, String>> = OnceLock::new();
    GROUPS
        .get_or_init(|| id_names("/etc/group"))
        .get(&gid)
        .cloned()
        .unwrap_or_default()
}
