//! Comparing a restored tree with its source: types, contents, modes, times, owners,
//! symlink targets, xattrs, device numbers and hardlink structure.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::support::is_root;

/// One side of a comparison.
struct Entry {
    meta: std::fs::Metadata,
    xattrs: BTreeMap<OsString, Vec<u8>>,
}

fn xattrs_of(p: &Path) -> BTreeMap<OsString, Vec<u8>> {
    let mut out = BTreeMap::new();
    let names = match xattr::list(p) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return out,
        Err(e) => panic!("listxattr {}: {e}", p.display()),
    };
    for n in names {
        // Only user.* is ours; security.selinux and friends depend on the host.
        if !n.as_bytes().starts_with(b"user.") {
            continue;
        }
        if let Ok(Some(v)) = xattr::get(p, &n) {
            out.insert(n, v);
        }
    }
    out
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
    let dir = root.join(rel);
    let rd = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
    for e in rd {
        let e = e.expect("dir entry");
        let r = rel.join(e.file_name());
        let p = root.join(&r);
        let meta = std::fs::symlink_metadata(&p).expect("lstat");
        let is_dir = meta.is_dir();
        out.insert(
            r.clone(),
            Entry {
                xattrs: xattrs_of(&p),
                meta,
            },
        );
        if is_dir {
            walk(root, &r, out);
        }
    }
}

fn kind(m: &std::fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_file() {
        "file"
    } else if t.is_dir() {
        "dir"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_char_device() {
        "chardev"
    } else if t.is_block_device() {
        "blockdev"
    } else {
        "socket"
    }
}

fn meta_diffs(what: &str, a: &std::fs::Metadata, b: &std::fs::Metadata, d: &mut Vec<String>) {
    if kind(a) != kind(b) {
        d.push(format!("{what}: type {} vs {}", kind(a), kind(b)));
        return;
    }
    if !a.file_type().is_symlink() && a.mode() & 0o7777 != b.mode() & 0o7777 {
        d.push(format!(
            "{what}: mode {:o} vs {:o}",
            a.mode() & 0o7777,
            b.mode() & 0o7777
        ));
    }
    let (ta, tb) = ((a.mtime(), a.mtime_nsec()), (b.mtime(), b.mtime_nsec()));
    if ta != tb {
        d.push(format!("{what}: mtime {ta:?} vs {tb:?}"));
    }
    if is_root() && (a.uid(), a.gid()) != (b.uid(), b.gid()) {
        d.push(format!(
            "{what}: owner {}:{} vs {}:{}",
            a.uid(),
            a.gid(),
            b.uid(),
            b.gid()
        ));
    }
    if (a.file_type().is_char_device() || a.file_type().is_block_device()) && a.rdev() != b.rdev() {
        d.push(format!("{what}: rdev {} vs {}", a.rdev(), b.rdev()));
    }
    if a.is_file() && a.size() != b.size() {
        d.push(format!("{what}: size {} vs {}", a.size(), b.size()));
    }
}

/// Differences between the trees at `src` and `dst` (type, content, mode, mtime, owner when
/// root, symlink target, user xattrs, device numbers, hardlink groups). With `with_root`,
/// the roots' own metadata is compared too.
pub fn diff_trees(src: &Path, dst: &Path, with_root: bool) -> Vec<String> {
    let mut d = Vec::new();
    if with_root {
        let (a, b) = (
            std::fs::symlink_metadata(src).expect("lstat src"),
            std::fs::symlink_metadata(dst).expect("lstat dst"),
        );
        meta_diffs("<root>", &a, &b, &mut d);
        if xattrs_of(src) != xattrs_of(dst) {
            d.push("<root>: xattrs differ".into());
        }
    }
    let (mut sa, mut sb) = (BTreeMap::new(), BTreeMap::new());
    walk(src, Path::new(""), &mut sa);
    walk(dst, Path::new(""), &mut sb);
    for r in sa.keys().filter(|r| !sb.contains_key(*r)) {
        d.push(format!("{}: missing from restore", r.display()));
    }
    for r in sb.keys().filter(|r| !sa.contains_key(*r)) {
        d.push(format!("{}: extra in restore", r.display()));
    }
    for (r, a) in &sa {
        let Some(b) = sb.get(r) else { continue };
        let what = r.display().to_string();
        meta_diffs(&what, &a.meta, &b.meta, &mut d);
        if a.xattrs != b.xattrs {
            d.push(format!("{what}: xattrs {:?} vs {:?}", a.xattrs, b.xattrs));
        }
        if kind(&a.meta) != kind(&b.meta) {
            continue;
        }
        if a.meta.file_type().is_symlink() {
            let (ta, tb) = (
                std::fs::read_link(src.join(r)).expect("readlink"),
                std::fs::read_link(dst.join(r)).expect("readlink"),
            );
            if ta != tb {
                d.push(format!("{what}: symlink target {ta:?} vs {tb:?}"));
            }
        } else if a.meta.is_file() {
            let (ca, cb) = (
                std::fs::read(src.join(r)).expect("read src"),
                std::fs::read(dst.join(r)).expect("read dst"),
            );
            if ca != cb {
                let first = ca.iter().zip(&cb).position(|(x, y)| x != y);
                d.push(format!("{what}: content differs (first at {first:?})"));
            }
        }
    }
    let groups = |m: &BTreeMap<PathBuf, Entry>| -> BTreeSet<Vec<PathBuf>> {
        let mut by: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
        for (r, e) in m {
            if e.meta.is_file() && e.meta.nlink() > 1 {
                by.entry((e.meta.dev(), e.meta.ino()))
                    .or_default()
                    .push(r.clone());
            }
        }
        // Only links inside the compared tree: a sub-path restore cannot keep a link to a
        // file outside it.
        by.into_values().filter(|g| g.len() > 1).collect()
    };
    let (ga, gb) = (groups(&sa), groups(&sb));
    if ga != gb {
        d.push(format!("hardlink groups {ga:?} vs {gb:?}"));
    }
    d
}

/// Asserts the trees are the same (see [`diff_trees`]).
pub fn assert_same(src: &Path, dst: &Path, with_root: bool) {
    let d = diff_trees(src, dst, with_root);
    assert!(
        d.is_empty(),
        "restore of {} at {} differs:\n  {}",
        src.display(),
        dst.display(),
        d.join("\n  ")
    );
}

/// Regular files (paths, not inodes) below `root`.
pub fn count_files(root: &Path) -> u64 {
    let mut m = BTreeMap::new();
    walk(root, Path::new(""), &mut m);
    m.values().filter(|e| e.meta.is_file()).count() as u64
}
