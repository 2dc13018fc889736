//! Backup: a source tree becomes packs, index files, trees and finally a snapshot.
//!
//! Directories are walked in parallel (rayon); within a directory every entry is processed
//! by a worker, and a large file's chunks are sealed in parallel batches. Trees are built
//! bottom-up: a directory's tree is stored once all its children resolved. Write order:
//! packs (the [`Packer`](crate::repository::packer::Packer) uploads as packs fill), index
//! files, and only then the snapshot.
//!
//! Change detection: a file whose size, mtime, ctime and inode match the parent snapshot's
//! node reuses that node's content list without reading the file, provided every blob it
//! names is still in the index.

mod bundle;
mod prefetch;
mod session;
mod walk;

pub use session::{swept_meanwhile, with_session};

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::id::{Id, SnapshotId};
use crate::repository::packer::{Packer, PackerStats};
use crate::repository::Repository;
use crate::snapshot::{Snapshot, Summary};
use crate::source::exclude::Excluder;
use crate::source::scope::PrivateScope;
use crate::tree::{Node, NodeKind, Scopes, Tree};

/// What to back up and how.
pub struct BackupOptions {
    /// Absolute paths to back up.
    pub paths: Vec<PathBuf>,
    /// Host name recorded in the snapshot.
    pub hostname: String,
    /// User name recorded in the snapshot.
    pub username: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Snapshot whose unchanged files are reused unread.
    pub parent: Option<(SnapshotId, Snapshot)>,
    /// Exclusion rules.
    pub excluder: Excluder,
    /// Do not cross into other file systems below the given paths.
    pub one_file_system: bool,
    /// Read and chunk everything, but write nothing.
    pub dry_run: bool,
    /// Snapshot time, ns since the epoch.
    pub time_ns: i64,
    /// Program version string.
    pub program: String,
    /// Back up standard input as one file of this name instead of `paths`.
    pub stdin_name: Option<String>,
}

/// Live progress of a backup; every method has a default that ignores it.
pub trait Progress: Sync {
    /// A file was processed (`reused`: unchanged, not read).
    fn file_done(&self, _path: &Path, _bytes: u64, _reused: bool) {}
    /// Bytes of file content were read.
    fn bytes_read(&self, _n: u64) {}
    /// A source entry could not be backed up.
    fn error(&self, _path: &Path, _msg: &str) {}
}

/// Progress that shows nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What a backup did.
pub struct BackupOutcome {
    /// The snapshot written (`None` on a dry run).
    pub snapshot_id: Option<SnapshotId>,
    /// The snapshot (also on a dry run).
    pub snapshot: Snapshot,
    /// Packs, blobs and index files written.
    pub packer: PackerStats,
}

#[derive(Default)]
struct Counters {
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unchanged: AtomicU64,
    dirs_new: AtomicU64,
    dirs_changed: AtomicU64,
    dirs_unchanged: AtomicU64,
    bytes_read: AtomicU64,
    total_bytes: AtomicU64,
}

/// Shared state of one backup run.
struct Ctx<'a> {
    repo: &'a Repository,
    packer: &'a Packer<'a>,
    opts: &'a BackupOptions,
    scope: PrivateScope,
    scopes: Scopes,
    progress: &'a dyn Progress,
    cancel: &'a AtomicBool,
    errors: Mutex<Vec<(String, String)>>,
    counts: Counters,
    /// Bytes held by directories waiting for their parent's bundle (`bundle::Pending`).
    pending: AtomicU64,
}

impl Ctx<'_> {
    fn error(&self, path: &Path, msg: impl Into<String>) {
        let msg = msg.into();
        self.progress.error(path, &msg);
        if let Ok(mut e) = self.errors.lock() {
            e.push((path.display().to_string(), msg));
        }
    }

    fn check_cancel(&self) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) || self.packer.has_failed() {
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    /// Stores a tree (unless already known) and returns its id.
    fn store_tree(&self, tree: &Tree) -> Result<Id> {
        let encoded = tree.encode();
        let tid = self.repo.tree_id(&encoded);
        if self.packer.reserve(&tid) && !self.opts.dry_run {
            self.packer.add(self.repo.seal_tree(&encoded, tid))?;
        }
        Ok(tid)
    }
}

/// The requested paths as a trie from `/`: intermediate directories are stored with their
/// metadata but only the requested children.
#[derive(Default)]
struct Trie {
    requested: bool,
    children: BTreeMap<OsString, Trie>,
}

fn build_trie(paths: &[PathBuf]) -> Result<Trie> {
    let mut root = Trie::default();
    for p in paths {
        if !p.is_absolute() {
            return Err(Error::InvalidInput(format!(
                "backup path {} is not absolute",
                p.display()
            )));
        }
        let mut t = &mut root;
        for c in p.components() {
            match c {
                Component::RootDir => {}
                Component::Normal(n) => t = t.children.entry(n.to_owned()).or_default(),
                _ => {
                    return Err(Error::InvalidInput(format!(
                        "backup path {} must be normalised (no . or ..)",
                        p.display()
                    )))
                }
            }
        }
        t.requested = true;
    }
    Ok(root)
}

/// Runs a backup. `stdin` is read when `opts.stdin_name` is set.
pub fn backup(
    repo: &Repository,
    opts: &BackupOptions,
    stdin: Option<&mut (dyn Read + Send)>,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<BackupOutcome> {
    let started = std::time::Instant::now();
    let cfg = repo.config();
    let scope = PrivateScope::new(&cfg.private_globs, cfg.private_small_file_max)
        .map_err(|e| Error::corrupt("config", "config", e.to_string()))?;
    let scopes = Scopes {
        group: (cfg.groups[0].id, cfg.groups[0].epoch),
        host: (repo.host_id(), 1),
    };
    let trie = build_trie(&opts.paths)?;
    let ((tree, errors, counts), stats) = repo.with_packer(|packer| {
        let ctx = Ctx {
            repo,
            packer,
            opts,
            scope,
            scopes,
            progress,
            cancel,
            errors: Mutex::default(),
            counts: Counters::default(),
            pending: AtomicU64::new(0),
        };
        let parent_root = opts.parent.as_ref().map(|(_, s)| s.tree);
        let tree = match (&opts.stdin_name, stdin) {
            (Some(name), Some(input)) => walk::save_stdin(&ctx, name, input)?,
            (Some(_), None) => {
                return Err(Error::InvalidInput("--stdin needs standard input".into()))
            }
            _ => walk::save_trie(&ctx, Path::new("/"), &trie, parent_root)?,
        };
        // A path nested inside another requested path is covered by the outer walk; one that
        // does not exist must still be reported rather than silently dropped.
        for p in &opts.paths {
            let nested = opts.paths.iter().any(|o| o != p && p.starts_with(o));
            if nested {
                if let Err(e) = std::fs::symlink_metadata(p) {
                    ctx.error(p, format!("cannot stat: {e}"));
                }
            }
        }
        let errors = ctx.errors.into_inner().unwrap_or_default();
        Ok((tree, errors, ctx.counts))
    })?;
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let summary = Summary {
        files_new: c(&counts.files_new),
        files_changed: c(&counts.files_changed),
        files_unchanged: c(&counts.files_unchanged),
        dirs_new: c(&counts.dirs_new),
        dirs_changed: c(&counts.dirs_changed),
        dirs_unchanged: c(&counts.dirs_unchanged),
        bytes_read: c(&counts.bytes_read),
        bytes_added: stats.bytes,
        blobs_added: stats.blobs,
        total_files: c(&counts.files_new) + c(&counts.files_changed) + c(&counts.files_unchanged),
        total_bytes: c(&counts.total_bytes),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        errors,
    };
    let snapshot = Snapshot {
        host_id: repo.host_id(),
        time_ns: opts.time_ns,
        tree,
        paths: match &opts.stdin_name {
            Some(n) => vec![format!("/{n}")],
            None => opts.paths.iter().map(|p| p.display().to_string()).collect(),
        },
        hostname: opts.hostname.clone(),
        username: opts.username.clone(),
        tags: opts.tags.clone(),
        parent: opts.parent.as_ref().map(|(id, _)| *id),
        program: opts.program.clone(),
        summary,
    };
    let snapshot_id = if opts.dry_run {
        None
    } else {
        Some(repo.save_snapshot(&snapshot)?)
    };
    Ok(BackupOutcome {
        snapshot_id,
        snapshot,
        packer: stats,
    })
}

/// Finds the node called `name` in a sorted tree.
fn find_node<'t>(tree: Option<&'t Tree>, name: &[u8]) -> Option<&'t Node> {
    let t = tree?;
    t.nodes
        .binary_search_by(|n| n.name.as_slice().cmp(name))
        .ok()
        .map(|i| &t.nodes[i])
}

fn is_kind(n: Option<&Node>, k: NodeKind) -> bool {
    n.is_some_and(|n| n.kind == Some(k))
}
