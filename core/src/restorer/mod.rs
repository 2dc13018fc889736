//! Restore: a snapshot's tree becomes files again.
//!
//! The tree is walked depth-first (from the root or a sub-path, with `--include`/
//! `--exclude`) and restored a batch of entries at a time, so memory does not grow with
//! the number of files in the snapshot. For each batch:
//! 1. Create directories, then empty files at their final size (so all-zero chunks stay
//!    holes: sparse files come back sparse), then hardlinks, symlinks and special files.
//! 2. Fetch content planned by pack (see [`plan`]): each pack range the batch needs is
//!    read once, in parallel across packs, and every blob is written to every place that
//!    needs it.
//! 3. Apply the files' metadata: owner (as root), mode, xattrs, times, after the content,
//!    so a read-only mode never blocks a write.
//!
//! Directories' metadata comes last, deepest first, so a directory's mtime is not bumped
//! by its children afterwards.
//!
//! An interrupted restore leaves files with holes where blobs were not yet written;
//! running it again with `--overwrite always` completes it.

mod collect;
mod metadata;
pub mod plan;
mod targets;
mod verify;
mod write;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use crate::error::Result;
use crate::id::Id;
use crate::repository::Repository;
use crate::source::exclude::Excluder;

pub use collect::{Entry, Listing};

/// When to replace an existing file at the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// Always write.
    #[default]
    Always,
    /// Only when size or mtime differ from the snapshot.
    IfChanged,
    /// Never touch an existing file.
    Never,
}

/// What to restore and how.
pub struct RestoreOptions {
    /// Directory to restore into.
    pub target: PathBuf,
    /// Path inside the snapshot to restore (its contents land directly in `target`).
    pub subpath: Option<PathBuf>,
    /// Restore only entries matching these (and what lies below a matching directory).
    pub include: Option<Excluder>,
    /// Skip entries matching these.
    pub exclude: Option<Excluder>,
    /// Re-read every restored file and check it against the snapshot.
    pub verify: bool,
    /// Existing files policy.
    pub overwrite: Overwrite,
    /// Remove files in the target that are not in the snapshot.
    pub delete: bool,
    /// Plan only.
    pub dry_run: bool,
}

/// What a restore did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RestoreSummary {
    /// Files restored (content written).
    pub files_restored: u64,
    /// Files skipped because they were already as in the snapshot (or `--overwrite never`).
    pub files_skipped: u64,
    /// Directories created.
    pub dirs: u64,
    /// Other entries (symlinks, hardlinks, devices, fifos).
    pub others: u64,
    /// Bytes of file content in the restored files.
    pub bytes: u64,
    /// Bytes written (zero chunks are holes, not written).
    pub bytes_written: u64,
    /// Packs read.
    pub packs_read: u64,
    /// Entries removed by `--delete`.
    pub deleted: u64,
    /// Files whose content could not be restored fully (missing or damaged blobs or packs).
    pub errors: Vec<String>,
    /// Files that failed `--verify`.
    pub verify_failures: Vec<String>,
    /// Non-fatal problems (metadata that could not be applied, ...).
    pub warnings: Vec<String>,
}

/// Live progress of a restore.
pub trait RestoreProgress: Sync {
    /// Total bytes to write, once known.
    fn total(&self, _files: u64, _bytes: u64) {}
    /// Bytes of content written (or found to be holes).
    fn bytes_done(&self, _n: u64) {}
}

/// Progress that shows nothing.
pub struct NoRestoreProgress;
impl RestoreProgress for NoRestoreProgress {}

/// Entries per batch: enough for every pack of a batch to be read in parallel, few enough
/// that a batch's paths, nodes and plan stay a few MiB whatever the snapshot's size.
const BATCH_ENTRIES: usize = 8192;

/// Restores the tree `root` of a snapshot, a batch of entries at a time (see
/// [`collect::Walker`]): create, fetch, write and apply metadata per batch; directories'
/// metadata comes last, deepest first.
pub fn restore(
    repo: &Repository,
    root: &Id,
    opts: &RestoreOptions,
    progress: &dyn RestoreProgress,
    cancel: &AtomicBool,
) -> Result<RestoreSummary> {
    restore_batched(repo, root, opts, progress, cancel, BATCH_ENTRIES)
}

/// [`restore`] in batches of `batch_entries` entries (tests use tiny batches so that
/// hard links, `--include` and `--delete` cross batch boundaries).
pub fn restore_batched(
    repo: &Repository,
    root: &Id,
    opts: &RestoreOptions,
    progress: &dyn RestoreProgress,
    cancel: &AtomicBool,
    batch_entries: usize,
) -> Result<RestoreSummary> {
    let mut walker = collect::Walker::new(repo, root, opts)?;
    let mut summary = RestoreSummary::default();
    let mut fresh = targets::Fresh::new(opts);
    let mut first_names = targets::FirstNames::new();
    let mut dirs = Vec::new();
    let mut problems = Vec::new();
    let mut verify_failures = Vec::new();
    loop {
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(crate::error::Error::Cancelled);
        }
        let mut batch = walker.next_batch(batch_entries.max(1))?;
        if batch.entries.is_empty() {
            break;
        }
        let jobs =
            targets::prepare_targets(&batch, opts, &mut fresh, &mut first_names, &mut summary)?;
        // Totals grow batch by batch; the progress line shows what is known so far.
        progress.total(summary.files_restored, summary.bytes);
        if !opts.dry_run {
            let plan = plan::Plan::build(repo, &batch, &jobs)?;
            summary.packs_read += plan.pack_count() as u64;
            let done = plan.execute(repo, &batch, &jobs, progress, cancel)?;
            summary.bytes_written += done.written;
            problems.extend(done.problems);
            summary.warnings.extend(done.warnings);
            metadata::apply_entries(&batch, &jobs, &mut summary);
            if opts.verify {
                verify_failures.extend(verify::verify(repo, &batch, &jobs)?);
            }
        }
        // Directories are kept (without content lists) for their metadata at the end:
        // memory grows with the directories, not the files.
        for (e, a) in batch.entries.drain(..).zip(jobs) {
            if e.node.kind == Some(crate::tree::NodeKind::Dir) && a != plan::Action::Failed {
                dirs.push(e);
            }
        }
    }
    summary.deleted = walker.deleted;
    if !opts.dry_run {
        metadata::apply_dirs(dirs, &mut summary);
    }
    problems.sort();
    problems.dedup();
    summary.errors = problems;
    summary.verify_failures = verify_failures;
    Ok(summary)
}
