//! Creating the targets, then fetching content by pack: each needed range of a pack is
//! streamed once and its blobs fanned out to every file offset that needs them.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::collect::Listing;
use super::RestoreProgress;
use crate::crypto::blob::BlobType;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repository::Repository;

/// Reads of one pack closer than this are merged into one request.
const MERGE_GAP: u64 = 1 << 20;

/// What happens to each listed entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A file whose content must be written.
    Write,
    /// A file left as it is.
    Skip,
    /// Created without content (directory, symlink, hardlink, device, fifo).
    Created,
    /// Could not be created (recorded as a warning).
    Failed,
}

struct BlobJob {
    id: Id,
    btype: BlobType,
    ck: [u8; 32],
    offset: u64,
    slen: u32,
    /// (entry, offset in file)
    targets: Vec<(usize, u64)>,
}

/// Blobs to fetch, grouped by pack.
pub struct Plan {
    packs: Vec<(u32, Vec<BlobJob>)>,
    /// Problems found while planning (missing blobs).
    pub missing: Vec<String>,
}

impl Plan {
    /// Plans every file marked [`Action::Write`].
    pub fn build(repo: &Repository, listing: &Listing, actions: &[Action]) -> Result<Self> {
        let mut by_pack: HashMap<u32, (Vec<BlobJob>, HashMap<Id, usize>)> = HashMap::new();
        let mut missing = Vec::new();
        for (i, e) in listing.entries.iter().enumerate() {
            if actions[i] != Action::Write {
                continue;
            }
            let mut off = 0u64;
            for c in &e.node.content {
                let (btype, id) = repo.content_id(c);
                match repo.index().lookup(&id) {
                    Some(loc) => {
                        let (jobs, seen) = by_pack.entry(loc.pack_no).or_default();
                        let j = *seen.entry(id).or_insert_with(|| {
                            jobs.push(BlobJob {
                                id,
                                btype,
                                ck: c.ck,
                                offset: loc.offset,
                                slen: loc.slen,
                                targets: Vec::new(),
                            });
                            jobs.len() - 1
                        });
                        jobs[j].targets.push((i, off));
                    }
                    None => missing.push(format!(
                        "{}: blob {} at offset {off} is missing from the index",
                        e.snap_path.display(),
                        id.short()
                    )),
                }
                off += u64::from(c.plen);
            }
        }
        let mut packs: Vec<(u32, Vec<BlobJob>)> = by_pack
            .into_iter()
            .map(|(p, (mut jobs, _))| {
                jobs.sort_by_key(|j| j.offset);
                (p, jobs)
            })
            .collect();
        packs.sort_by_key(|(p, _)| *p);
        Ok(Self { packs, missing })
    }

    /// Number of packs to read.
    pub fn pack_count(&self) -> usize {
        self.packs.len()
    }

    /// Fetches and writes everything; returns bytes written. Blobs that fail their checks
    /// are reported and skipped (other files still restore); a write error (disk full)
    /// stops the restore.
    pub fn execute(
        &self,
        repo: &Repository,
        listing: &Listing,
        progress: &dyn RestoreProgress,
        cancel: &AtomicBool,
    ) -> Result<(u64, Vec<String>)> {
        let written = AtomicU64::new(0);
        let problems = Mutex::new(self.missing.clone());
        self.packs
            .par_iter()
            .try_for_each(|(pack_no, jobs)| -> Result<()> {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Error::Cancelled);
                }
                let Some(pack) = repo.index().packs().get(*pack_no as usize) else {
                    return Ok(());
                };
                let path = crate::backend::layout::host_file(
                    &pack.host,
                    crate::backend::layout::HostDir::Packs,
                    &pack.name,
                );
                for range in ranges(jobs) {
                    let start = range[0].offset;
                    let end = range
                        .iter()
                        .map(|j| j.offset + u64::from(j.slen))
                        .max()
                        .unwrap_or(start);
                    let mut fatal: Option<Error> = None;
                    let mut bad: Vec<String> = Vec::new();
                    let mut consumer = |r: &mut dyn Read| -> std::io::Result<()> {
                        bad.clear();
                        let mut pos = start;
                        let mut buf = Vec::new();
                        for j in range {
                            std::io::copy(
                                &mut (&mut *r).take(j.offset - pos),
                                &mut std::io::sink(),
                            )?;
                            buf.resize(j.slen as usize, 0);
                            r.read_exact(&mut buf)?;
                            pos = j.offset + u64::from(j.slen);
                            let loc = match repo.index().lookup(&j.id) {
                                Some(l) => l,
                                None => continue,
                            };
                            let plain =
                                match repo.open_blob(j.btype, &j.id, Some(&j.ck), &loc, &buf) {
                                    Ok(p) => p,
                                    Err(e) => {
                                        for (entry, off) in &j.targets {
                                            bad.push(format!(
                                                "{} at offset {off}: {e}",
                                                listing.entries[*entry].snap_path.display()
                                            ));
                                        }
                                        continue;
                                    }
                                };
                            let zero = plain.iter().all(|b| *b == 0);
                            for (entry, off) in &j.targets {
                                if !zero {
                                    let target = &listing.entries[*entry].target;
                                    let res = OpenOptions::new()
                                        .write(true)
                                        .open(target)
                                        .and_then(|f| write_sparse(&f, &plain, *off));
                                    match res {
                                        Ok(n) => {
                                            written.fetch_add(n, Ordering::Relaxed);
                                        }
                                        Err(e) => {
                                            fatal = Some(Error::io("write", target, e));
                                            return Err(std::io::Error::other("write failed"));
                                        }
                                    }
                                }
                                progress.bytes_done(plain.len() as u64);
                            }
                        }
                        Ok(())
                    };
                    let res = repo
                        .backend()
                        .read_stream(&path, Some(start..end), &mut consumer);
                    if let Some(e) = fatal {
                        return Err(e);
                    }
                    if let Err(e) = res {
                        // The pack is missing or unreadable: the files that needed it are
                        // incomplete, everything else goes on.
                        let mut p = problems
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        for j in range {
                            for (entry, _) in &j.targets {
                                p.push(format!(
                                    "{}: {e}",
                                    listing.entries[*entry].snap_path.display()
                                ));
                            }
                        }
                        continue;
                    }
                    problems
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .extend(bad);
                }
                Ok(())
            })?;
        let mut problems = problems.into_inner().unwrap_or_default();
        problems.sort();
        problems.dedup();
        Ok((written.into_inner(), problems))
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

/// Splits a pack's sorted jobs into runs read with one request each.
fn ranges(jobs: &[BlobJob]) -> Vec<&[BlobJob]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=jobs.len() {
        let split = i == jobs.len() || {
            let prev_end = jobs[i - 1].offset + u64::from(jobs[i - 1].slen);
            jobs[i].offset > prev_end + MERGE_GAP || jobs[i].offset < prev_end
        };
        if split {
            if start < i {
                out.push(&jobs[start..i]);
            }
            start = i;
        }
    }
    out
}
