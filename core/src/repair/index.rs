//! `repair index`: every host's index rebuilt from the pack headers themselves.
//!
//! The pack header is the truth about a pack (its writer verified it before upload); index
//! files are a cache of the headers. So the repair lists every pack of every host, reads
//! each header, writes fresh index files per host, and only then removes the index files it
//! read: a repair killed half way leaves old and new files side by side, which list only
//! packs that exist.
//!
//! Two kinds of pack are handled with care:
//! - a pack whose header cannot be read keeps the entry an old index file gave it (its
//!   blobs may still read fine, and a flaky read must not cost the index anything); it is
//!   reported either way;
//! - a pack an open prune plan names and no index lists is never adopted: Sweep is about to
//!   delete it, and a backup that reused its blobs would lose them.

use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::layout::{self, HostDir};
use crate::backend::BackendErrorKind;
use crate::crypto::sealed::FileType;
use crate::error::{Error, Result};
use crate::id::{Id, Id16};
use crate::index::file::batches;
use crate::index::{IndexFile, IndexPack};
use crate::pack::PackKind;
use crate::prune::lock::{LockOwner, PruneLock};
use crate::repository::{HostFiles, Repository};

/// How to repair the index.
#[derive(Clone, Debug, Default)]
pub struct IndexRepairOptions {
    /// Read everything and report; write and remove nothing.
    pub dry_run: bool,
    /// Who takes the prune lock while the index is rewritten (a Sweep rewrites index files
    /// from its own census and deletes packs: the two must not interleave). `None` takes
    /// no lock: for a caller that holds it already. A dry run never takes it.
    pub owner: Option<LockOwner>,
}

/// A pack whose header could not be read.
#[derive(Clone, Debug, Serialize)]
pub struct UnreadablePack {
    /// Its repository path.
    pub path: String,
    /// Why.
    pub error: String,
    /// Whether the entry an old index file gave it was kept.
    pub kept_old_entry: bool,
}

/// What `repair index` did (or, dry, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct IndexRepairReport {
    /// Nothing was written or removed.
    pub dry_run: bool,
    /// Packs the new index lists.
    pub packs_indexed: usize,
    /// Blobs the new index lists.
    pub blobs_indexed: u64,
    /// Packs no readable index file listed before (paths).
    pub packs_added: Vec<String>,
    /// Packs an old index file listed that are not in the repository (paths).
    pub packs_dropped: Vec<String>,
    /// Packs whose header could not be read.
    pub unreadable: Vec<UnreadablePack>,
    /// Unindexed packs an open prune plan names, left out (paths).
    pub left_out: Vec<String>,
    /// Old index files that could not be read (replaced like the others).
    pub damaged_index_files: Vec<String>,
    /// Index files written.
    pub index_files_written: usize,
    /// Old index files removed.
    pub index_files_removed: usize,
    /// Plans or sweep records ignored because they failed to verify.
    pub warnings: Vec<String>,
}

/// What the old index files of one host said.
#[derive(Default)]
struct OldIndex {
    /// Their paths.
    paths: Vec<String>,
    /// Packs they list, with the creation time of the first file listing each.
    packs: HashMap<Id, (IndexPack, i64)>,
}

/// Rebuilds every host's index from its packs' headers, holding the prune lock (see
/// [`IndexRepairOptions::owner`]); a holder `lock_holder_is_dead` says has ended is taken
/// over, as prune does.
pub fn repair_index(
    repo: &Repository,
    opts: &IndexRepairOptions,
    lock_holder_is_dead: &dyn Fn(&LockOwner) -> bool,
) -> Result<IndexRepairReport> {
    let lock = match (&opts.owner, opts.dry_run) {
        (Some(owner), false) => Some(PruneLock::acquire(repo, owner, lock_holder_is_dead)?),
        _ => None,
    };
    let r = repair_unlocked(repo, opts);
    // Released on failure too: what a failed repair left is still a consistent index.
    if let Some(lock) = lock {
        let released = lock.release();
        let r = r?;
        released?;
        return Ok(r);
    }
    r
}

fn repair_unlocked(repo: &Repository, opts: &IndexRepairOptions) -> Result<IndexRepairReport> {
    let mut r = IndexRepairReport {
        dry_run: opts.dry_run,
        ..IndexRepairReport::default()
    };
    let open = repo.open_plans()?;
    r.warnings = open
        .warnings
        .iter()
        .map(|e| format!("ignored: {e}"))
        .collect();
    let hosts = repo.list_all_hosts()?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut plans: Vec<(Id16, Vec<IndexFile>, Vec<String>)> = Vec::new();
    for (host, files) in &hosts {
        let old = read_old_index(repo, *host, files, &mut r);
        let packs = rebuild_host(repo, *host, files, &old, &open, &mut r);
        let written = new_files(*host, packs, &old, now);
        plans.push((*host, written, old.paths));
    }
    r.index_files_written = plans.iter().map(|(_, w, _)| w.len()).sum();
    r.index_files_removed = plans.iter().map(|(_, _, o)| o.len()).sum();
    if opts.dry_run {
        return Ok(r);
    }
    // Every host's new files before any old one goes, so a failure half way never leaves
    // a pack in no index.
    for (host, written, _) in &plans {
        let keys = repo.host_keys_of(*host);
        for f in written {
            let private = f.packs.first().is_some_and(|p| p.kind != PackKind::Group);
            repo.save_index_file_as(&keys, f, private)?;
        }
    }
    for (_, _, old) in &plans {
        for path in old {
            repo.remove_path(path)?;
        }
    }
    Ok(r)
}

/// Reads every index file of `host`; damaged ones are noted and replaced all the same.
fn read_old_index(
    repo: &Repository,
    host: Id16,
    files: &HostFiles,
    r: &mut IndexRepairReport,
) -> OldIndex {
    let keys = repo.host_keys_of(host);
    let mut old = OldIndex::default();
    for (dir, ftype, names) in [
        (HostDir::Index, FileType::SharedIndex, &files.index),
        (HostDir::TreeIndex, FileType::PrivateIndex, &files.tindex),
    ] {
        for name in names {
            let path = layout::host_file(&host, dir, name.as_id());
            match repo.read_index_file(&keys, &path, name, ftype, false) {
                Ok(f) => {
                    for p in f.packs {
                        old.packs.entry(p.name).or_insert((p, f.created_ms));
                    }
                }
                Err(_) => r.damaged_index_files.push(path.clone()),
            }
            old.paths.push(path);
        }
    }
    old
}

/// The packs `host`'s new index lists: every readable header, old entries for unreadable
/// headers, nothing an open plan is about to delete.
fn rebuild_host(
    repo: &Repository,
    host: Id16,
    files: &HostFiles,
    old: &OldIndex,
    open: &crate::repository::OpenPlans,
    r: &mut IndexRepairReport,
) -> Vec<IndexPack> {
    let pack_path = |name: &Id| layout::host_file(&host, HostDir::Packs, name);
    let listed: HashSet<Id> = files.packs.iter().map(|(n, _)| *n).collect();
    // (name, length, whether the listing saw it)
    let mut wanted = Vec::new();
    for (name, len) in &files.packs {
        let condemned = open.names_pack(name);
        if condemned && !old.packs.contains_key(name) {
            r.left_out.push(pack_path(name));
        } else {
            wanted.push((*name, *len, true));
        }
    }
    // A pack an old index file lists but the listing did not see is looked for all the
    // same: `tindex/` sorts after `packs/`, so a backup running meanwhile may have
    // uploaded a pack and indexed it between the two. Only "not found" drops it.
    let mut unseen: Vec<(Id, u64, bool)> = old
        .packs
        .iter()
        .filter(|(n, _)| !listed.contains(*n))
        .map(|(n, (p, _))| (*n, p.len, false))
        .collect();
    unseen.sort();
    wanted.extend(unseen);
    // Each header is one or two small ranged reads: worth doing in parallel.
    let headers: Vec<_> = wanted
        .par_iter()
        .map(|(name, len, _)| repo.read_pack_header(host, name, *len))
        .collect();
    let mut packs = Vec::new();
    for ((name, len, seen), h) in wanted.into_iter().zip(headers) {
        match h {
            Ok(h) => {
                if !old.packs.contains_key(&name) {
                    r.packs_added.push(pack_path(&name));
                }
                packs.push(IndexPack {
                    name,
                    len,
                    kind: h.kind,
                    entries: h.entries,
                });
            }
            Err(Error::Backend(b)) if !seen && b.kind == BackendErrorKind::NotFound => {
                r.packs_dropped.push(pack_path(&name));
            }
            Err(e) => {
                let kept = old.packs.get(&name).map(|(p, _)| p.clone());
                r.unreadable.push(UnreadablePack {
                    path: pack_path(&name),
                    error: describe(&e),
                    kept_old_entry: kept.is_some(),
                });
                packs.extend(kept);
            }
        }
    }
    r.packs_indexed += packs.len();
    r.blobs_indexed += packs.iter().map(|p| p.entries.len() as u64).sum::<u64>();
    packs
}

/// The index files of `host`'s packs: shared and private apart, split by size. A pack's
/// age (its first index file's creation time, which prune prices minimum storage duration
/// by) is kept as far as a file can carry it: packs are grouped oldest first and each file
/// takes the youngest time among its packs, so no pack looks older than it is.
fn new_files(host: Id16, mut packs: Vec<IndexPack>, old: &OldIndex, now: i64) -> Vec<IndexFile> {
    let age = |p: &IndexPack| old.packs.get(&p.name).map_or(now, |(_, t)| *t);
    packs.sort_by_key(|p| (age(p), p.name));
    let mut by_kind: BTreeMap<bool, Vec<IndexPack>> = BTreeMap::new();
    for p in packs {
        by_kind
            .entry(p.kind != PackKind::Group)
            .or_default()
            .push(p);
    }
    let mut out = Vec::new();
    for (_, packs) in by_kind {
        for batch in batches(packs) {
            let created_ms = batch.iter().map(age).max().unwrap_or(now);
            out.push(IndexFile {
                writer: host,
                created_ms,
                packs: batch,
            });
        }
    }
    out
}

fn describe(e: &Error) -> String {
    match e {
        Error::Corrupt { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}
