//! Metadata applied after all content: owner (when root), mode, xattrs, times.
//!
//! Order matters: chown clears setuid bits and file capabilities, so mode and xattrs come
//! after it; chmod rewrites the ACL mask, so ACL xattrs come after it; times come last
//! because every other change bumps ctime/mtime. Directories are done deepest first so a
//! child's changes do not touch its parent's mtime afterwards.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;

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
pub(super) fn apply_to_file(f: &std::fs::File, e: &Entry, root: bool) -> Result<(), String> {
    use xattr::FileExt;
    let n = &e.node;
    let fail = |what: &str, err: std::io::Error| {
        format!("cannot set {what} of {}: {err}", e.target.display())
    };
    if root {
        std::os::unix::fs::fchown(f, Some(n.uid), Some(n.gid)).map_err(|err| fail("owner", err))?;
    }
    f.set_permissions(std::fs::Permissions::from_mode(n.mode))
        .map_err(|err| fail("mode", err))?;
    for (name, value) in &n.xattrs {
        let name = OsStr::from_bytes(name);
        if let Err(err) = f.set_xattr(name, value) {
            return Err(fail(&format!("xattr {}", name.to_string_lossy()), err));
        }
    }
    let mtime = mtime_of(n);
    filetime::set_file_handle_times(f, Some(mtime), Some(mtime)).map_err(|err| fail("times", err))
}

fn mtime_of(n: &crate::tree::Node) -> FileTime {
    FileTime::from_unix_time(
        n.mtime_ns.div_euclid(1_000_000_000),
        n.mtime_ns.rem_euclid(1_000_000_000) as u32,
    )
}

fn apply(e: &Entry, root: bool) -> Result<(), String> {
    let n = &e.node;
    let p = &e.target;
    let fail =
        |what: &str, err: std::io::Error| format!("cannot set {what} of {}: {err}", p.display());
    let symlink = n.kind == Some(NodeKind::Symlink);
    if root {
        std::os::unix::fs::lchown(p, Some(n.uid), Some(n.gid)).map_err(|err| fail("owner", err))?;
    }
    if !symlink {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(n.mode))
            .map_err(|err| fail("mode", err))?;
    }
    for (name, value) in &n.xattrs {
        let name = OsStr::from_bytes(name);
        // Without root, trusted.* and security.* cannot be set; say so but go on.
        if let Err(err) = xattr::set(p, name, value) {
            return Err(fail(&format!("xattr {}", name.to_string_lossy()), err));
        }
    }
    let mtime = mtime_of(n);
    filetime::set_symlink_file_times(p, mtime, mtime).map_err(|err| fail("times", err))
}
