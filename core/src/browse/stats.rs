//! Statistics over snapshots, in restic's three counting modes.

use std::collections::HashSet;
use std::path::Path;

use super::{walk, Visit};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repository::{Repository, TreeCache};
use crate::tree::NodeKind;

/// `restore-size`: what restoring every selected snapshot would write.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RestoreSize {
    /// Non-directory entries.
    pub total_file_count: u64,
    /// Directories.
    pub total_dir_count: u64,
    /// Sum of entry sizes; hardlinked files counted once per snapshot.
    pub total_size: u64,
}

/// `files-by-contents`: files with distinct content.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ContentStats {
    /// Distinct contents (an empty file counts once).
    pub total_file_count: u64,
    /// Sum of their sizes.
    pub total_size: u64,
}

/// `raw-data`: the blobs the selected snapshots reference, as stored.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RawData {
    /// Distinct blobs (data and trees) the index knows.
    pub total_blob_count: u64,
    /// Distinct tree blobs referenced (missing ones included).
    pub tree_blob_count: u64,
    /// Stored bytes (compressed and sealed), from the index.
    pub total_size: u64,
    /// Plain bytes.
    pub total_uncompressed_size: u64,
    /// Plain bytes per stored byte.
    pub compression_ratio: f64,
    /// Referenced blobs the index does not know (`check` explains them).
    pub missing_blob_count: u64,
}

/// Totals of the whole repository, from the index alone.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepoTotals {
    /// Packs.
    pub pack_count: u64,
    /// Bytes of all packs.
    pub total_pack_size: u64,
    /// Distinct blobs.
    pub total_blob_count: u64,
}

/// Sums sizes over every snapshot root in `roots`.
pub fn restore_size(repo: &Repository, cache: &TreeCache, roots: &[Id]) -> Result<RestoreSize> {
    let mut s = RestoreSize::default();
    for root in roots {
        // Hardlinks are restored as links: their size is written once per snapshot.
        let mut links: HashSet<(u64, u64)> = HashSet::new();
        walk(repo, cache, root, Path::new("/"), &mut |_, n| {
            if n.kind == Some(NodeKind::Dir) {
                s.total_dir_count += 1;
                return Ok::<_, Error>(Visit::Continue);
            }
            s.total_file_count += 1;
            let linked = n.nlink > 1 && n.inode != 0;
            if !linked || links.insert((n.dev, n.inode)) {
                s.total_size += n.size;
            }
            Ok(Visit::Continue)
        })?;
    }
    Ok(s)
}

/// Counts files by distinct content list over `roots`. A subtree seen in an earlier
/// snapshot holds no new content and is skipped.
pub fn files_by_contents(
    repo: &Repository,
    cache: &TreeCache,
    roots: &[Id],
) -> Result<ContentStats> {
    let mut s = ContentStats::default();
    let mut seen_trees: HashSet<Id> = HashSet::new();
    // A digest per content list keeps memory at 32 bytes per distinct file.
    let mut seen: HashSet<[u8; 32]> = HashSet::new();
    for root in roots {
        if !seen_trees.insert(*root) {
            continue;
        }
        walk(repo, cache, root, Path::new("/"), &mut |_, n| {
            match n.kind {
                Some(NodeKind::Dir) => {
                    return Ok::<_, Error>(match n.subtree {
                        Some(t) if !seen_trees.insert(t) => Visit::SkipSubtree,
                        _ => Visit::Continue,
                    })
                }
                Some(NodeKind::File) => {
                    let mut h = blake3::Hasher::new();
                    for c in &n.content {
                        // The same content counts once, bundled or whole.
                        let (scope, key, plen) = c.identity();
                        h.update(&[scope]);
                        h.update(key);
                        h.update(&plen.to_le_bytes());
                    }
                    if seen.insert(*h.finalize().as_bytes()) {
                        s.total_file_count += 1;
                        s.total_size += n.size;
                    }
                }
                _ => {}
            }
            Ok(Visit::Continue)
        })?;
    }
    Ok(s)
}

/// Sizes of the distinct blobs (data and trees) referenced by `roots`.
pub fn raw_data(repo: &Repository, cache: &TreeCache, roots: &[Id]) -> Result<RawData> {
    let mut trees: HashSet<Id> = HashSet::new();
    let mut data: HashSet<Id> = HashSet::new();
    for root in roots {
        if !trees.insert(*root) {
            continue;
        }
        walk(repo, cache, root, Path::new("/"), &mut |_, n| {
            if let Some(t) = n.subtree {
                if !trees.insert(t) {
                    return Ok::<_, Error>(Visit::SkipSubtree);
                }
            }
            for c in &n.content {
                data.insert(repo.content_id(c).1);
            }
            Ok(Visit::Continue)
        })?;
    }
    let mut s = RawData {
        tree_blob_count: trees.len() as u64,
        ..RawData::default()
    };
    for id in trees.iter().chain(data.iter()) {
        match repo.index().lookup(id) {
            Some(loc) => {
                s.total_blob_count += 1;
                s.total_size += u64::from(loc.slen);
                s.total_uncompressed_size += u64::from(loc.plen);
            }
            None => s.missing_blob_count += 1,
        }
    }
    if s.total_size > 0 {
        s.compression_ratio = s.total_uncompressed_size as f64 / s.total_size as f64;
    }
    Ok(s)
}

/// Pack and blob totals of the loaded index.
pub fn repo_totals(repo: &Repository) -> RepoTotals {
    let idx = repo.index();
    RepoTotals {
        pack_count: idx.packs().len() as u64,
        total_pack_size: idx.packs().iter().map(|p| p.len).sum(),
        total_blob_count: idx.blob_count() as u64,
    }
}
