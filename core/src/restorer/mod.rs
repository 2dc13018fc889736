//! Restore: a snapshot's tree becomes files again.
//!
//! 1. Collect: walk the tree (from the root or a sub-path), apply `--include`/`--exclude`,
//!    and list directories, files and other entries with their target paths.
//! 2. Create directories, then empty files at their final size (so all-zero chunks stay
//!    holes: sparse files come back sparse), then hardlinks, symlinks and special files.
//! 3. Fetch content planned by pack (see [`plan`]): each pack range is read once, in
//!    parallel across packs, and every blob is written to every place that needs it.
//! 4. Apply metadata last, deepest first: owner (as root), mode, xattrs, times. Doing it
//!    last means a read-only mode never blocks a write and a directory's mtime is not
//!    bumped by its children afterwards.
//!
//! An interrupted restore leaves files with holes where blobs were not yet written;
//! running it again with `--overwrite always` completes it.

mod collect;
mod metadata;
pub mod plan;
mod targets;
mod verify;

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

/// Restores the tree `root` of a snapshot.
pub fn restore(
    repo: &Repository,
    root: &Id,
    opts: &RestoreOptions,
    progress: &dyn RestoreProgress,
    cancel: &AtomicBool,
) -> Result<RestoreSummary> {
    let listing = collect::collect(repo, root, opts)?;
    let mut summary = RestoreSummary::default();
    let jobs = targets::prepare_targets(&listing, opts, &mut summary)?;
    progress.total(summary.files_restored, summary.bytes);
    if opts.dry_run {
        return Ok(summary);
    }
    let plan = plan::Plan::build(repo, &listing, &jobs)?;
    summary.packs_read = plan.pack_count() as u64;
    let (written, errors) = plan.execute(repo, &listing, progress, cancel)?;
    summary.bytes_written = written;
    summary.errors = errors;
    // Before metadata: removing an entry bumps its directory's mtime, and a directory
    // restored read-only would refuse the removal.
    if opts.delete {
        summary.deleted = collect::delete_extraneous(&listing, &opts.target)?;
    }
    metadata::apply_all(&listing, &jobs, &mut summary);
    if opts.verify {
        summary.verify_failures = verify::verify(repo, &listing, &jobs)?;
    }
    Ok(summary)
}
