//! Creating the targets, then fetching content by pack: the repository streams the needed
//! blobs of each pack (nearby ones share a ranged read, `Repository::stream_pack_blobs`) and
//! each blob is fanned out to every file offset that needs it.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::collect::Listing;
use super::RestoreProgress;
use crate::crypto::blob::BlobType;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::PackEntry;
use crate::repository::Repository;

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
                let entries: Vec<PackEntry> = jobs
                    .iter()
                    .map(|j| PackEntry {
                        id: j.id,
                        cid: None,
                        offset: j.offset,
                        slen: j.slen,
                        plen: 0,
                    })
                    .collect();
                // Jobs are sorted by offset and blobs arrive in offset order, once each.
                let mut next = 0usize;
                let mut fatal: Option<Error> = None;
                let mut bad: Vec<String> = Vec::new();
                let res = repo.stream_pack_blobs(&pack.id(), &entries, &mut |e, stored| {
                    let Some(i) = jobs[next..].iter().position(|j| j.offset == e.offset) else {
                        return Ok(());
                    };
                    let j = &jobs[next + i];
                    next += i + 1;
                    let loc = match repo.index().lookup(&j.id) {
                        Some(l) => l,
                        None => return Ok(()),
                    };
                    let plain = match repo.open_blob(j.btype, &j.id, Some(&j.ck), &loc, stored) {
                        Ok(p) => p,
                        Err(err) => {
                            for (entry, off) in &j.targets {
                                bad.push(format!(
                                    "{} at offset {off}: {err}",
                                    listing.entries[*entry].snap_path.display()
                                ));
                            }
                            return Ok(());
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
                                Err(err) => {
                                    fatal = Some(Error::io("write", target, err));
                                    return Err(Error::Cancelled);
                                }
                            }
                        }
                        progress.bytes_done(plain.len() as u64);
                    }
                    Ok(())
                });
                if let Some(e) = fatal {
                    return Err(e);
                }
                let mut p = problems
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                p.extend(bad);
                if let Err(e) = res {
                    // The pack is missing or unreadable: the files whose blobs had not
                    // arrived are incomplete, everything else goes on.
                    for j in &jobs[next.min(jobs.len())..] {
                        for (entry, _) in &j.targets {
                            p.push(format!(
                                "{}: {e}",
                                listing.entries[*entry].snap_path.display()
                            ));
                        }
                    }
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
