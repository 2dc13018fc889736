//! Fetching a batch's content by pack: the repository streams the needed blobs of each
//! pack, or of each stretch of a local one (nearby blobs share a ranged read,
//! `Repository::stream_pack_blobs_buffered`), and each blob is fanned out to every file
//! offset that needs it (`write.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::collect::Listing;
use super::write::Writer;
use super::RestoreProgress;
use crate::crypto::blob::BlobType;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::master::PackRef;
use crate::index::BlobLocation;
use crate::pack::PackEntry;
use crate::repository::Repository;

/// What happens to each listed entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A file whose content must be written, created (or emptied) beforehand.
    Write,
    /// A file whose parent this restore created: nothing can be in the way, so it is
    /// created when its first blob arrives (or after the fetch, when it has none).
    WriteNew,
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
    plen: u32,
    targets: Vec<Target>,
}

/// Where a blob's bytes go: a whole blob, or a bundle member's slice of it.
#[derive(Clone, Copy)]
pub(super) struct Target {
    pub entry: usize,
    /// Offset in the file.
    pub off: u64,
    /// Where the file's bytes start in a bundle; `None` for a whole blob.
    pub bundle_off: Option<u32>,
    /// How many bytes of the blob are the file's.
    pub len: u32,
}

/// A stretch of a local pack worth a worker of its own: a batch of small files often needs
/// only two or three packs, and one worker per pack left a core idle while the other cut,
/// decrypted and wrote a whole pack's blobs alone.
const LOCAL_UNIT_BYTES: u64 = 2 << 20;

/// Blobs to fetch, grouped by pack, and on a local repository split into stretches of a
/// pack (a remote one keeps one ranged read per run of nearby blobs: each split would be
/// one request more).
pub struct Plan {
    packs: Vec<(u32, Vec<BlobJob>)>,
    pack_count: usize,
    /// Per entry, the writes planned for it: the one that completes a file's count
    /// applies its metadata through the descriptor it wrote with.
    writes: Vec<u32>,
    /// Problems found while planning (missing blobs).
    pub missing: Vec<String>,
}

impl Plan {
    /// Plans every file marked [`Action::Write`].
    pub fn build(repo: &Repository, listing: &Listing, actions: &[Action]) -> Result<Self> {
        let mut by_pack: HashMap<u32, (Vec<BlobJob>, HashMap<Id, usize>)> = HashMap::new();
        let mut missing = Vec::new();
        let mut writes = vec![0u32; listing.entries.len()];
        for (i, e) in listing.entries.iter().enumerate() {
            if !matches!(actions[i], Action::Write | Action::WriteNew) {
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
                                plen: loc.plen,
                                targets: Vec::new(),
                            });
                            jobs.len() - 1
                        });
                        jobs[j].targets.push(Target {
                            entry: i,
                            off,
                            bundle_off: c.slice.map(|sl| sl.off),
                            len: c.plen,
                        });
                        writes[i] += 1;
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
        let pack_count = by_pack.len();
        let split = repo.backend().properties().is_local;
        let mut packs: Vec<(u32, Vec<BlobJob>)> = Vec::with_capacity(pack_count);
        for (p, (mut jobs, _)) in by_pack {
            jobs.sort_by_key(|j| j.offset);
            if !split {
                packs.push((p, jobs));
                continue;
            }
            let mut unit: Vec<BlobJob> = Vec::new();
            for j in jobs {
                if unit
                    .first()
                    .is_some_and(|f| j.offset - f.offset >= LOCAL_UNIT_BYTES)
                {
                    packs.push((p, std::mem::take(&mut unit)));
                }
                unit.push(j);
            }
            packs.push((p, unit));
        }
        packs.sort_by_key(|(p, jobs)| (*p, jobs.first().map(|j| j.offset)));
        Ok(Self {
            packs,
            pack_count,
            writes,
            missing,
        })
    }

    /// Number of packs to read.
    pub fn pack_count(&self) -> usize {
        self.pack_count
    }

    /// Fetches and writes everything, and gives each written file its metadata; returns
    /// bytes written, problems (files not restored fully) and warnings (metadata that could
    /// not be set). Blobs that fail their checks are reported and skipped (other files
    /// still restore); a write error (disk full) stops the restore.
    pub fn execute(
        &self,
        repo: &Repository,
        listing: &Listing,
        actions: &[Action],
        progress: &dyn RestoreProgress,
        cancel: &AtomicBool,
    ) -> Result<Outcome> {
        let problems = Mutex::new(self.missing.clone());
        let writer = Writer::new(listing, actions, &self.writes, progress);
        self.packs
            .par_iter()
            .try_for_each(|(pack_no, jobs)| -> Result<()> {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Error::Cancelled);
                }
                let Some(pack) = repo.index().packs().get(*pack_no as usize) else {
                    return Ok(());
                };
                let stretch = fetch_stretch(repo, pack, *pack_no, jobs, &writer)?;
                let mut p = problems
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                p.extend(stretch.bad);
                if let Some((e, next)) = stretch.unread {
                    // The pack is missing or unreadable: the files whose blobs had not
                    // arrived are incomplete, everything else goes on.
                    for j in &jobs[next.min(jobs.len())..] {
                        for t in &j.targets {
                            p.push(format!(
                                "{}: {e}",
                                listing.entries[t.entry].snap_path.display()
                            ));
                        }
                    }
                }
                Ok(())
            })?;
        writer.finish_the_rest()?;
        let mut problems = problems.into_inner().unwrap_or_default();
        problems.sort();
        problems.dedup();
        let (written, warnings) = writer.into_outcome();
        Ok(Outcome {
            written,
            problems,
            warnings,
        })
    }
}

/// What streaming one stretch of a pack came to.
struct Stretch {
    /// Blobs that failed their checks, as problems.
    bad: Vec<String>,
    /// The pack could not be read: the error, and how many jobs were done before it.
    unread: Option<(Error, usize)>,
}

/// Streams one stretch of a pack and writes its blobs; a write error is the `Err`, and
/// stops the restore.
fn fetch_stretch(
    repo: &Repository,
    pack: &PackRef,
    pack_no: u32,
    jobs: &[BlobJob],
    writer: &Writer<'_>,
) -> Result<Stretch> {
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
    // A write error must stop the restore, where a read error fails only this pack's
    // files: it leaves the stream as a stand-in and is returned from here.
    let mut fatal: Option<Error> = None;
    let mut bad: Vec<String> = Vec::new();
    let mut bufs = BUFFERS.take();
    let Buffers { read, plain } = &mut bufs;
    let res = repo.stream_pack_blobs_buffered(&pack.id(), &entries, read, &mut |e, stored| {
        let Some(i) = jobs[next..].iter().position(|j| j.offset == e.offset) else {
            return Ok(());
        };
        let j = &jobs[next + i];
        next += i + 1;
        let loc = BlobLocation {
            pack,
            pack_no,
            offset: j.offset,
            slen: j.slen,
            plen: j.plen,
        };
        let done = match repo.open_blob_in_place(j.btype, &j.id, Some(&j.ck), &loc, stored, plain) {
            Ok(p) => writer.fan_out(&j.targets, p, &mut bad),
            Err(err) => {
                bad.extend(j.targets.iter().map(|t| {
                    let path = writer.snap_path(t.entry);
                    format!("{} at offset {}: {err}", path.display(), t.off)
                }));
                writer.skip(&j.targets)
            }
        };
        done.map_err(|err| {
            fatal = Some(err);
            Error::Cancelled
        })
    });
    BUFFERS.set(bufs);
    if let Some(e) = fatal {
        return Err(e);
    }
    Ok(Stretch {
        bad,
        unread: res.err().map(|e| (e, next)),
    })
}

/// A worker's buffers for reading and opening blobs, kept between pack stretches: a
/// restore's chunks are MiBs each, and fresh buffers for each cost it a page fault per
/// 4 KiB of content (7% of its CPU time, measured). Blobs are decrypted where they were
/// read, so a worker holds at most the largest stored and the largest plain chunk.
#[derive(Default)]
struct Buffers {
    read: Vec<u8>,
    plain: Vec<u8>,
}

thread_local! {
    static BUFFERS: std::cell::Cell<Buffers> = std::cell::Cell::new(Buffers::default());
}

/// What [`Plan::execute`] did.
pub struct Outcome {
    /// Bytes written (holes are not).
    pub written: u64,
    /// Files not restored fully.
    pub problems: Vec<String>,
    /// Metadata that could not be set.
    pub warnings: Vec<String>,
}
