//! Writing a batch's fetched blobs into its files, and finishing each file (size, owner,
//! mode, xattrs, times) through the descriptor of its last write.

use std::cell::OnceCell;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::collect::Listing;
use super::plan::{Action, Target};
use super::RestoreProgress;
use crate::error::{Error, Result};

/// Writes blobs into a batch's files and finishes each file after its last write.
pub(super) struct Writer<'a> {
    listing: &'a Listing,
    actions: &'a [Action],
    /// Per entry, the writes planned.
    planned: &'a [u32],
    /// Per entry, the writes not done yet: the one that takes it to zero finishes the file.
    left: Vec<AtomicU32>,
    root: bool,
    written: AtomicU64,
    warnings: Mutex<Vec<String>>,
    progress: &'a dyn RestoreProgress,
}

impl<'a> Writer<'a> {
    pub(super) fn new(
        listing: &'a Listing,
        actions: &'a [Action],
        planned: &'a [u32],
        progress: &'a dyn RestoreProgress,
    ) -> Self {
        Self {
            listing,
            actions,
            planned,
            left: planned.iter().map(|&n| AtomicU32::new(n)).collect(),
            root: nix::unistd::geteuid().is_root(),
            written: AtomicU64::new(0),
            warnings: Mutex::new(Vec::new()),
            progress,
        }
    }

    pub(super) fn snap_path(&self, entry: usize) -> &Path {
        &self.listing.entries[entry].snap_path
    }

    /// Writes `plain` (or a member's part of it) at every target; all-zero bytes stay a
    /// hole and are not written. Bytes the blob does not hold as the tree says (a slice
    /// outside its bundle, a whole blob of another length) leave that file incomplete,
    /// reported in `bad`.
    pub(super) fn fan_out(
        &self,
        targets: &[Target],
        plain: &[u8],
        bad: &mut Vec<String>,
    ) -> Result<()> {
        let whole_zero = OnceCell::new();
        for t in targets {
            let Some(data) = crate::tree::part_of(plain, t.bundle_off, t.len) else {
                bad.push(format!(
                    "{}: its blob does not hold the bytes the tree says",
                    self.snap_path(t.entry).display()
                ));
                self.count_down(t.entry, None)?;
                continue;
            };
            let zero = match t.bundle_off {
                None => *whole_zero.get_or_init(|| plain.iter().all(|b| *b == 0)),
                Some(_) => data.iter().all(|b| *b == 0),
            };
            let file = if zero {
                None
            } else {
                Some(self.write(t.entry, data, t.off)?)
            };
            self.count_down(t.entry, file)?;
            self.progress.bytes_done(data.len() as u64);
        }
        Ok(())
    }

    /// A blob that failed its checks: its files are incomplete, but they still get made
    /// and get their metadata when their other writes are done.
    pub(super) fn skip(&self, targets: &[Target]) -> Result<()> {
        targets
            .iter()
            .try_for_each(|t| self.count_down(t.entry, None))
    }

    /// Files with nothing to fetch (empty, or every blob missing) and files a failed pack
    /// left unfinished are made and finished here, at their full size with holes.
    pub(super) fn finish_the_rest(&self) -> Result<()> {
        (0..self.listing.entries.len())
            .into_par_iter()
            .filter(|&i| {
                matches!(self.actions[i], Action::Write | Action::WriteNew)
                    && (self.planned[i] == 0 || self.left[i].load(Ordering::Acquire) != 0)
            })
            .try_for_each(|i| self.finish(i, None))
    }

    /// Bytes written and the metadata that could not be set.
    pub(super) fn into_outcome(self) -> (u64, Vec<String>) {
        (
            self.written.into_inner(),
            self.warnings.into_inner().unwrap_or_default(),
        )
    }

    fn open(&self, entry: usize) -> Result<File> {
        let target = &self.listing.entries[entry].target;
        // Several workers may make the same new file at once (its blobs live in different
        // packs): creating without truncating lets each of them do so safely.
        OpenOptions::new()
            .write(true)
            .create(self.actions[entry] == Action::WriteNew)
            .truncate(false)
            .open(target)
            .map_err(|err| Error::io("create", target, err))
    }

    fn write(&self, entry: usize, data: &[u8], off: u64) -> Result<File> {
        let f = self.open(entry)?;
        let n = write_sparse(&f, data, off)
            .map_err(|err| Error::io("write", &self.listing.entries[entry].target, err))?;
        self.written.fetch_add(n, Ordering::Relaxed);
        Ok(f)
    }

    /// One of `entry`'s writes is done (`file` is open if it wrote anything); the last
    /// one finishes the file. Every write before it has returned: each counts down after.
    fn count_down(&self, entry: usize, file: Option<File>) -> Result<()> {
        if self.left[entry].fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish(entry, file)?;
        }
        Ok(())
    }

    /// Gives a written file its full size (trailing zero blobs are a hole, not written)
    /// and its metadata, through one descriptor.
    fn finish(&self, entry: usize, file: Option<File>) -> Result<()> {
        let e = &self.listing.entries[entry];
        let f = match file {
            Some(f) => f,
            None => self.open(entry)?,
        };
        let size = f
            .metadata()
            .map_err(|err| Error::io("stat", &e.target, err))?
            .len();
        if size != e.node.size {
            f.set_len(e.node.size)
                .map_err(|err| Error::io("resize", &e.target, err))?;
        }
        if let Err(w) = super::metadata::apply_to_file(&f, e, self.root) {
            self.warnings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(w);
        }
        Ok(())
    }
}

/// Writes `data` at `off` of a file created empty at its final size, skipping the 4 KiB
/// blocks (aligned in the file) that are all zeros so they stay holes: a chunk that is
/// mostly zeros (up to the chunker's maximum size) must not allocate its zero runs.
/// Returns the bytes written.
fn write_sparse(f: &std::fs::File, data: &[u8], off: u64) -> std::io::Result<u64> {
    const BLOCK: u64 = 4096;
    let mut written = 0u64;
    let mut run: Option<usize> = None;
    let mut i = 0usize;
    while i < data.len() {
        let to_boundary = (BLOCK - (off + i as u64) % BLOCK) as usize;
        let end = (i + to_boundary).min(data.len());
        let zero = data[i..end].iter().all(|b| *b == 0);
        match (zero, run) {
            (false, None) => run = Some(i),
            (true, Some(start)) => {
                f.write_all_at(&data[start..i], off + start as u64)?;
                written += (i - start) as u64;
                run = None;
            }
            _ => {}
        }
        i = end;
    }
    if let Some(start) = run {
        f.write_all_at(&data[start..], off + start as u64)?;
        written += (data.len() - start) as u64;
    }
    Ok(written)
}
