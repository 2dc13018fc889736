//! Creating what a restore writes into: directories first (in tree order, serially, so
//! parents exist), then files and special files in parallel (each a few syscalls, and a
//! snapshot has tens of thousands), then hardlinks once their first name exists. Files in a
//! directory the restore made are left to their first write ([`Fresh`]).

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;

use super::collect::{Entry, Listing};
use super::plan::Action;
use super::{Overwrite, RestoreOptions, RestoreSummary};
use crate::error::{Error, Result};
use crate::tree::{Node, NodeKind};

fn create_err(path: &Path, e: std::io::Error) -> Error {
    Error::io("create", path, e)
}

#[derive(Default)]
struct Tally {
    restored: u64,
    skipped: u64,
    others: u64,
    bytes: u64,
}

/// Hard-linked files seen so far: (device, inode) → the target of the first name, which
/// gets the content; later names link to it, in this batch or a later one.
pub type FirstNames = HashMap<(u64, u64), PathBuf>;

/// Where nothing can be in the way: the directories this restore created (and the target
/// itself when it was new or empty). Entries directly inside them are created without the
/// existence check that costs a path walk and a directory search each (tens of thousands
/// on a big restore). Tracking this per directory, not only for the whole target, matters:
/// a target that is a fresh file system's root holds `lost+found`, yet everything below the
/// directories the restore makes is new. Grows with the directories, not the files.
pub struct Fresh {
    target: PathBuf,
    target_fresh: bool,
    created: HashSet<PathBuf>,
}

impl Fresh {
    /// Asked once, before the first batch creates anything.
    pub fn new(opts: &RestoreOptions) -> Self {
        Self {
            target: opts.target.clone(),
            target_fresh: std::fs::read_dir(&opts.target).map_or(true, |mut d| d.next().is_none()),
            created: HashSet::new(),
        }
    }

    /// Whether `path` can only be new: its parent is a directory this restore created.
    fn holds_nothing_at(&self, path: &Path) -> bool {
        match path.parent() {
            Some(p) if p == self.target => self.target_fresh,
            Some(p) => self.created.contains(p),
            None => false,
        }
    }
}

/// Creates a batch's directories, empty files of final size, links and special files.
pub fn prepare_targets(
    listing: &Listing,
    opts: &RestoreOptions,
    fresh: &mut Fresh,
    first_names: &mut FirstNames,
    summary: &mut RestoreSummary,
) -> Result<Vec<Action>> {
    if !opts.dry_run {
        std::fs::create_dir_all(&opts.target).map_err(|e| create_err(&opts.target, e))?;
    }
    let n = listing.entries.len();
    let mut actions = vec![Action::Created; n];
    let mut link_to: Vec<Option<PathBuf>> = vec![None; n];
    for (i, e) in listing.entries.iter().enumerate() {
        let nd = &e.node;
        match nd.kind {
            Some(NodeKind::Dir) => {
                summary.dirs += 1;
                if opts.dry_run {
                    continue;
                }
                if fresh.holds_nothing_at(&e.target) {
                    std::fs::create_dir(&e.target).map_err(|err| create_err(&e.target, err))?;
                    fresh.created.insert(e.target.clone());
                } else if !std::fs::symlink_metadata(&e.target).is_ok_and(|m| m.is_dir()) {
                    std::fs::create_dir_all(&e.target).map_err(|err| create_err(&e.target, err))?;
                    fresh.created.insert(e.target.clone());
                }
            }
            Some(NodeKind::File) if nd.nlink > 1 => match first_names.get(&(nd.dev, nd.inode)) {
                Some(f) => link_to[i] = Some(f.clone()),
                None => {
                    first_names.insert((nd.dev, nd.inode), e.target.clone());
                }
            },
            _ => {}
        }
    }
    let warnings = Mutex::new(Vec::new());
    // One directory per worker at a time: every create takes its directory's lock, so
    // workers creating in the same directory only queue on it (measured: batches of
    // consecutive entries spread over threads doubled the kernel time of a restore).
    let mut by_dir: HashMap<&Path, Vec<usize>> = HashMap::new();
    for (i, (e, link)) in listing.entries.iter().zip(&link_to).enumerate() {
        if link.is_none() && e.node.kind != Some(NodeKind::Dir) {
            by_dir
                .entry(e.target.parent().unwrap_or(&opts.target))
                .or_default()
                .push(i);
        }
    }
    let groups: Vec<Vec<usize>> = by_dir.into_values().collect();
    let results: Vec<Result<(usize, Action, Tally)>> = groups
        .par_iter()
        .flat_map_iter(|g| {
            g.iter().map(|&i| {
                let e = &listing.entries[i];
                let (a, t) = prepare_entry(e, opts, fresh.holds_nothing_at(&e.target), &warnings)?;
                Ok((i, a, t))
            })
        })
        .collect();
    for r in results {
        let (i, a, t) = r?;
        actions[i] = a;
        summary.files_restored += t.restored;
        summary.files_skipped += t.skipped;
        summary.others += t.others;
        summary.bytes += t.bytes;
    }
    for (i, first) in link_to.iter().enumerate() {
        let Some(first) = first else { continue };
        summary.others += 1;
        let e = &listing.entries[i];
        if !opts.dry_run {
            if !fresh.holds_nothing_at(&e.target) && std::fs::symlink_metadata(&e.target).is_ok() {
                remove_any(&e.target)?;
            }
            std::fs::hard_link(first, &e.target).map_err(|err| create_err(&e.target, err))?;
        }
    }
    summary
        .warnings
        .extend(warnings.into_inner().unwrap_or_default());
    Ok(actions)
}

fn prepare_entry(
    e: &Entry,
    opts: &RestoreOptions,
    fresh: bool,
    warnings: &Mutex<Vec<String>>,
) -> Result<(Action, Tally)> {
    let n = &e.node;
    let mut t = Tally::default();
    let exists = if fresh {
        None
    } else {
        std::fs::symlink_metadata(&e.target).ok()
    };
    let Some(kind) = n.kind else {
        return Ok((Action::Failed, t));
    };
    if kind == NodeKind::File {
        let skip = match (&exists, opts.overwrite) {
            (None, _) | (Some(_), Overwrite::Always) => false,
            (Some(_), Overwrite::Never) => true,
            (Some(m), Overwrite::IfChanged) => {
                m.is_file()
                    && m.size() == n.size
                    && crate::source::node::time_ns(m.mtime(), m.mtime_nsec()) == n.mtime_ns
            }
        };
        if skip {
            t.skipped = 1;
            return Ok((Action::Skip, t));
        }
        t.restored = 1;
        t.bytes = n.size;
        if fresh && n.nlink <= 1 && !opts.dry_run {
            // Nothing is in the way: the file is made when its first blob arrives, so
            // it is opened once, not once to create and once more to write.
            return Ok((Action::WriteNew, t));
        }
        if !opts.dry_run {
            if exists.as_ref().is_some_and(|m| !m.is_file()) {
                remove_any(&e.target)?;
            }
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&e.target)
                .map_err(|err| create_err(&e.target, err))?;
            // Final size first: chunks that are all zeros are then never written and
            // stay holes.
            f.set_len(n.size)
                .map_err(|err| Error::io("resize", &e.target, err))?;
        }
        return Ok((Action::Write, t));
    }
    t.others = 1;
    if opts.dry_run {
        return Ok((Action::Created, t));
    }
    if exists.is_some() {
        if opts.overwrite == Overwrite::Never {
            return Ok((Action::Skip, t));
        }
        remove_any(&e.target)?;
    }
    match create_special(kind, &e.target, n) {
        Ok(()) => Ok((Action::Created, t)),
        Err(err) => {
            if let Ok(mut w) = warnings.lock() {
                w.push(format!("cannot create {}: {err}", e.target.display()));
            }
            Ok((Action::Failed, t))
        }
    }
}

fn remove_any(p: &Path) -> Result<()> {
    let r = match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(_) => Ok(()),
    };
    r.map_err(|e| Error::io("remove", p, e))
}

fn create_special(kind: NodeKind, path: &Path, n: &Node) -> std::io::Result<()> {
    use nix::sys::stat::{Mode, SFlag};
    use std::os::unix::ffi::OsStrExt;
    let mode = Mode::from_bits_truncate(n.mode & 0o777);
    match kind {
        NodeKind::Symlink => {
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&n.target), path)
        }
        NodeKind::Fifo => nix::unistd::mkfifo(path, mode).map_err(std::io::Error::from),
        NodeKind::CharDev | NodeKind::BlockDev => {
            let t = if kind == NodeKind::CharDev {
                SFlag::S_IFCHR
            } else {
                SFlag::S_IFBLK
            };
            nix::sys::stat::mknod(path, t, mode, n.rdev).map_err(std::io::Error::from)
        }
        NodeKind::File | NodeKind::Dir => Ok(()),
    }
}
