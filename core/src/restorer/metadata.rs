//! Metadata applied after all content: owner (when root), mode, xattrs, times.
//!
//! Order matters: chown clears setuid bits and file capabilities, so mode and xattrs come
//! after it; chmod rewrites the ACL mask, so ACL xattrs come after it; times come last
//! because every other change bumps ctime/mtime. Directories are done deepest first so a
//! child's changes do not touch its parent's mtime afterwards.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use filetime::FileTime;
use rayon::prelude::*;

use super::collect::{Entry, Listing};
use super::plan::Action;
use super::RestoreSummary;
use crate::tree::NodeKind;

/// Applies the metadata of a batch's links, special files and skipped files, in parallel
/// (none of it touches another entry). Files with content got theirs through their open
/// descriptor once written ([`apply_to_file`]); directories wait for [`apply_dirs`].
pub(super) fn apply_entries(listing: &Listing, actions: &[Action], summary: &mut RestoreSummary) {
    let root = nix::unistd::geteuid().is_root();
    let warnings: Vec<String> = (0..listing.entries.len())
        .into_par_iter()
        .filter(|&i| {
            !matches!(
                actions[i],
                Action::Failed | Action::Write | Action::WriteNew
            ) && listing.entries[i].node.kind != Some(NodeKind::Dir)
        })
        .filter_map(|i| apply(&listing.entries[i], root).err())
        .collect();
    summary.warnings.extend(warnings);
}

/// Applies the directories' metadata once everything is restored, deepest first, so
/// nothing bumps their mtime again.
pub(super) fn apply_dirs(mut dirs: Vec<Entry>, summary: &mut RestoreSummary) {
    let root = nix::unistd::geteuid().is_root();
    dirs.sort_by_key(|e| std::cmp::Reverse(e.depth));
    summary
        .warnings
        .extend(dirs.iter().filter_map(|e| apply(e, root).err()));
}

/// [`apply`] through a written file's descriptor: no path walk per call, which for tens
/// of thousands of small files deep in a tree was a good part of a restore's kernel time.
pub(super) fn apply_to_file(f: &File, e: &Entry, root: bool) -> Result<(), String> {
    apply_at(e, At::File(f), root)
}

fn apply(e: &Entry, root: bool) -> Result<(), String> {
    apply_at(e, At::Path(&e.target), root)
}

/// What metadata is set through: a path (a final symlink is not followed), or the open
/// descriptor of a file just written.
enum At<'a> {
    Path(&'a Path),
    File(&'a File),
}

impl At<'_> {
    fn chown(&self, uid: u32, gid: u32) -> std::io::Result<()> {
        match self {
            At::Path(p) => std::os::unix::fs::lchown(p, Some(uid), Some(gid)),
            At::File(f) => std::os::unix::fs::fchown(f, Some(uid), Some(gid)),
        }
    }

    fn chmod(&self, mode: u32) -> std::io::Result<()> {
        let perm = std::fs::Permissions::from_mode(mode);
        match self {
            At::Path(p) => std::fs::set_permissions(p, perm),
            At::File(f) => f.set_permissions(perm),
        }
    }

    fn set_xattr(&self, name: &OsStr, value: &[u8]) -> std::io::Result<()> {
        use xattr::FileExt;
        match self {
            At::Path(p) => xattr::set(p, name, value),
            At::File(f) => f.set_xattr(name, value),
        }
    }

    fn set_mtime(&self, t: FileTime) -> std::io::Result<()> {
        match self {
            At::Path(p) => filetime::set_symlink_file_times(p, t, t),
            At::File(f) => filetime::set_file_handle_times(f, Some(t), Some(t)),
        }
    }
}

/// Owner (as root), mode, xattrs, times, in the order the module's doc gives.
fn apply_at(e: &Entry, at: At<'_>, root: bool) -> Result<(), String> {
    let n = &e.node;
    let fail = |what: &str, err: std::io::Error| {
        format!("cannot set {what} of {}: {err}", e.target.display())
    };
    if root {
        at.chown(n.uid, n.gid).map_err(|err| fail("owner", err))?;
    }
    if n.kind != Some(NodeKind::Symlink) {
        at.chmod(n.mode).map_err(|err| fail("mode", err))?;
    }
    for (name, value) in &n.xattrs {
        let name = OsStr::from_bytes(name);
        // Without root, trusted.* and security.* cannot be set; say so but go on.
        if let Err(err) = at.set_xattr(name, value) {
            return Err(fail(&format!("xattr {}", name.to_string_lossy()), err));
        }
    }
    let mtime = FileTime::from_unix_time(
        n.mtime_ns.div_euclid(1_000_000_000),
        n.mtime_ns.rem_euclid(1_000_000_000) as u32,
    );
    at.set_mtime(mtime).map_err(|err| fail("times", err))
}
