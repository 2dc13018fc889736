//! Filling packs and uploading them while a backup runs.
//!
//! Workers hand sealed blobs to the [`Packer`], which keeps two group-data packs (blobs are
//! assigned at random, so the provider cannot line pack sizes up with file boundaries), one
//! private-data pack and one tree pack open, spooled to local files. Full packs go through a
//! bounded channel to uploader threads: when uploads fall behind, workers block, so memory
//! and spool space stay bounded. Every `FLUSH_EVERY` packs an index file is written, so a
//! killed backup loses at most that much work; write order is always pack, then the index
//! that lists it, then (at the end) the snapshot.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::Repository;
use crate::backend::layout::{self, HostDir};
use crate::backend::WriteBody;
use crate::crypto::sealed::FileType;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{IndexFile, IndexPack};
use crate::pack::writer::{FinishedPack, PackWriter};
use crate::pack::PackKind;

use super::blobs::SealedBlob;

/// Packs uploaded between two index files.
const FLUSH_EVERY: usize = 32;
/// Blobs per index file before it is written early: keeps a sealed index file far below
/// the 64 MiB reader limit however small the blobs are (about 90 bytes per entry).
const FLUSH_BLOBS: usize = 200_000;
/// Blobs per pack: keeps a pack header far below the 16 MiB reader limit.
const MAX_PACK_BLOBS: usize = 60_000;

/// Counts of what a packer added.
#[derive(Clone, Debug, Default)]
pub struct PackerStats {
    /// Blobs added.
    pub blobs: u64,
    /// Stored bytes added (blobs only).
    pub bytes: u64,
    /// Packs uploaded.
    pub packs: u64,
    /// Index files written.
    pub index_files: u64,
}

#[derive(Default)]
struct Slots {
    group: [Option<PackWriter>; 2],
    private: Option<PackWriter>,
    tree: Option<PackWriter>,
    next: u64,
}

#[derive(Default)]
struct Pending {
    shared: Vec<IndexPack>,
    private: Vec<IndexPack>,
}

/// Accepts sealed blobs during a backup.
pub struct Packer<'r> {
    repo: &'r Repository,
    slots: Mutex<Slots>,
    seen: Mutex<HashSet<Id>>,
    tx: Mutex<Option<Sender<FinishedPack>>>,
    pending: Mutex<Pending>,
    failed: AtomicBool,
    error: Mutex<Option<Error>>,
    blobs: AtomicU64,
    bytes: AtomicU64,
    packs: AtomicU64,
    index_files: AtomicU64,
}

impl Repository {
    /// Runs `f` with a packer; when it returns, flushes the open packs, waits for every
    /// upload and writes the final index files. Returns `f`'s result and the counts.
    pub fn with_packer<R>(
        &self,
        f: impl FnOnce(&Packer<'_>) -> Result<R>,
    ) -> Result<(R, PackerStats)> {
        let uploaders = self.backend.properties().max_connections.clamp(1, 8);
        let (tx, rx) = bounded::<FinishedPack>(uploaders);
        let packer = Packer {
            repo: self,
            slots: Mutex::new(Slots {
                // Seeded from the OS so the provider cannot predict which pack a chunk joins.
                next: u64::from_le_bytes(crate::crypto::random_array()),
                ..Slots::default()
            }),
            seen: Mutex::default(),
            tx: Mutex::new(Some(tx)),
            pending: Mutex::default(),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            blobs: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            packs: AtomicU64::new(0),
            index_files: AtomicU64::new(0),
        };
        let result = std::thread::scope(|s| {
            for _ in 0..uploaders {
                let rx: Receiver<FinishedPack> = rx.clone();
                let p = &packer;
                s.spawn(move || p.upload_loop(&rx));
            }
            drop(rx);
            // Dropping the last sender ends the uploaders once the queue drains. It must
            // happen even if `f` panics: the scope waits for the uploaders before passing
            // the panic on, and they wait for the sender.
            let _close = CloseQueue(&packer.tx);
            let r = f(&packer);
            let flushed = packer.flush_open();
            drop(_close);
            (r, flushed)
        });
        let (r, flushed) = result;
        // Whatever happened, packs that reached the repository get indexed, so an
        // interrupted backup's uploads are reused by the next one.
        let indexed = packer.write_index(true);
        if let Some(e) = packer.take_error() {
            return Err(e);
        }
        flushed?;
        let r = r?;
        indexed?;
        let stats = PackerStats {
            blobs: packer.blobs.load(Ordering::Relaxed),
            bytes: packer.bytes.load(Ordering::Relaxed),
            packs: packer.packs.load(Ordering::Relaxed),
            index_files: packer.index_files.load(Ordering::Relaxed),
        };
        Ok((r, stats))
    }
}

/// Closes the upload queue when dropped (see [`Repository::with_packer`]).
struct CloseQueue<'a>(&'a Mutex<Option<Sender<FinishedPack>>>);

impl Drop for CloseQueue<'_> {
    fn drop(&mut self) {
        drop(lock(self.0).take());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock means a worker panicked; the data is still consistent enough to
    // report the error that follows.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Packer<'_> {
    /// Whether the blob must be uploaded: unknown to the index and not yet added by this
    /// session. Reserves it, so two workers never upload the same blob.
    pub fn reserve(&self, id: &Id) -> bool {
        !self.repo.index().contains(id) && lock(&self.seen).insert(*id)
    }

    /// Whether an upload has failed (workers stop early).
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Adds a sealed blob; may block while uploads catch up.
    pub fn add(&self, blob: SealedBlob) -> Result<()> {
        if self.has_failed() {
            return Err(Error::Cancelled);
        }
        let kind = PackKind::for_blob(blob.btype);
        let target = self.repo.config().pack_target;
        let full = {
            let mut slots = lock(&self.slots);
            slots.next = slots
                .next
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let pick = (slots.next >> 63) as usize;
            let slot = match kind {
                PackKind::Group => &mut slots.group[pick],
                PackKind::Private => &mut slots.private,
                PackKind::Tree => &mut slots.tree,
            };
            // Past the target, a pack only takes blobs that still fit below its Padmé
            // boundary: the space padding would waste is filled with data instead.
            let mut closed = Vec::new();
            if let Some(w) = slot.as_ref() {
                let size = w.size();
                if size >= target && size + blob.stored.len() as u64 > crate::pack::padme(size) {
                    closed.extend(slot.take());
                }
            }
            if slot.is_none() {
                *slot =
                    Some(PackWriter::new(kind, self.repo.spool_dir()).map_err(|e| {
                        Error::io("create spool file in", self.repo.spool_dir(), e)
                    })?);
            }
            let w = slot.as_mut().ok_or(Error::Cancelled)?;
            w.add_with_cid(blob.id, blob.plen, &blob.stored, blob.cid)
                .map_err(|e| Error::io("write spool file in", self.repo.spool_dir(), e))?;
            let size = w.size();
            let full = size >= 2 * target
                || w.len() >= MAX_PACK_BLOBS
                || (size >= target && size == crate::pack::padme(size));
            if full {
                closed.extend(slot.take());
            }
            closed
        };
        self.blobs.fetch_add(1, Ordering::Relaxed);
        self.bytes
            .fetch_add(blob.stored.len() as u64, Ordering::Relaxed);
        for w in full {
            self.send(w)?;
        }
        Ok(())
    }

    fn send(&self, w: PackWriter) -> Result<()> {
        let ftype = if w.kind() == PackKind::Group {
            FileType::GroupPackHeader
        } else {
            FileType::HostPackHeader
        };
        let host = self.repo.host_id();
        let done = w
            .finish(
                |plain| self.repo.seal_file(ftype, plain),
                |sealed| {
                    self.repo
                        .open_file(ftype, host, "new pack header", sealed)
                        .map_err(|e| e.to_string())
                },
            )
            .map_err(|e| Error::io("finish pack in", self.repo.spool_dir(), e))?;
        let tx = lock(&self.tx).clone().ok_or(Error::Cancelled)?;
        tx.send(done)
            .map_err(|_| self.take_error().unwrap_or(Error::Cancelled))
    }

    fn flush_open(&self) -> Result<()> {
        let writers: Vec<PackWriter> = {
            let mut s = lock(&self.slots);
            let [a, b] = &mut s.group;
            [a.take(), b.take(), s.private.take(), s.tree.take()]
                .into_iter()
                .flatten()
                .collect()
        };
        for w in writers {
            if !w.is_empty() {
                self.send(w)?;
            }
        }
        Ok(())
    }

    fn fail(&self, e: Error) {
        self.failed.store(true, Ordering::Relaxed);
        lock(&self.error).get_or_insert(e);
    }

    fn take_error(&self) -> Option<Error> {
        lock(&self.error).take()
    }

    fn upload_loop(&self, rx: &Receiver<FinishedPack>) {
        while let Ok(pack) = rx.recv() {
            if self.has_failed() {
                continue; // drain so senders never block forever
            }
            let path = layout::host_file(&self.repo.host_id(), HostDir::Packs, &pack.name);
            let body = WriteBody::File {
                path: pack.path.to_path_buf(),
                len: pack.len,
            };
            if let Err(e) = self.repo.backend().write(&path, &body) {
                self.fail(e.into());
                continue;
            }
            self.packs.fetch_add(1, Ordering::Relaxed);
            if let (Some(c), PackKind::Tree) = (self.repo.cache(), pack.kind) {
                // The next backup reads its parent's trees from here.
                c.store_file(&path, &pack.path);
            }
            let entry = IndexPack {
                name: pack.name,
                len: pack.len,
                kind: pack.kind,
                entries: pack.entries,
            };
            let due = {
                let mut p = lock(&self.pending);
                if pack.kind == PackKind::Group {
                    p.shared.push(entry);
                } else {
                    p.private.push(entry);
                }
                let blobs: usize = p
                    .shared
                    .iter()
                    .chain(&p.private)
                    .map(|x| x.entries.len())
                    .sum();
                p.shared.len() + p.private.len() >= FLUSH_EVERY || blobs >= FLUSH_BLOBS
            };
            if due {
                if let Err(e) = self.write_index(false) {
                    self.fail(e);
                }
            }
        }
    }

    /// Writes index files for the packs uploaded since the last one.
    fn write_index(&self, _final: bool) -> Result<()> {
        let batch = std::mem::take(&mut *lock(&self.pending));
        let now = chrono::Utc::now().timestamp_millis();
        for (packs, private) in [(batch.shared, false), (batch.private, true)] {
            if packs.is_empty() {
                continue;
            }
            let f = IndexFile {
                writer: self.repo.host_id(),
                created_ms: now,
                packs,
            };
            self.repo.save_index_file(&f, private)?;
            self.index_files.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}
