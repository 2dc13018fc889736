//! Streaming the blobs of a pack: the one loop restore, repack and `check --read-data` cut
//! blobs out of a pack with. Memory is one blob, never the pack; each blob reaches the
//! consumer once, even when the backend retries a read from its start; bytes are handed
//! over as stored, and the caller authenticates them with what it knows (cid, content key).

use std::io::Read;

use super::Repository;
use crate::error::{Error, Result};
use crate::id::{Id, PackId};
use crate::pack::PackEntry;

/// Blobs of one pack closer than this are fetched with one ranged read.
pub const MERGE_GAP: u64 = 1 << 20;

/// A consumer of a whole-pack read: each entry with its stored bytes, or `None` when the
/// pack does not hold it (overlapping, or past the end).
pub type WholePackConsumer<'a> = dyn FnMut(&PackEntry, Option<&[u8]>) -> Result<()> + 'a;

/// What [`cut`] hands its stored bytes to: mutable, so that a consumer may open a blob
/// in place (see [`Repository::stream_pack_blobs_buffered`]).
type CutConsumer<'a> = dyn FnMut(&PackEntry, Option<&mut [u8]>) -> Result<()> + 'a;

/// Reads the blobs of `run` (sorted by offset) from `rd`, which starts at `pos`, handing
/// each one not yet `delivered` to `f`. An entry that overlaps the one before it, or lies
/// past the end of the stream, is handed over as `None` (only a whole-pack read meets them:
/// ranges never span such entries). Returns where the stream stands.
fn cut(
    rd: &mut dyn Read,
    mut pos: u64,
    run: &[&PackEntry],
    delivered: &mut usize,
    buf: &mut Vec<u8>,
    f: &mut CutConsumer<'_>,
    failed: &mut Option<Error>,
) -> std::io::Result<u64> {
    let mut ended = false;
    for (i, e) in run.iter().enumerate() {
        let blob = if ended || e.offset < pos {
            None
        } else {
            let skip = e.offset - pos;
            let skipped = std::io::copy(&mut (&mut *rd).take(skip), &mut std::io::sink())?;
            pos += skipped;
            buf.resize(e.slen as usize, 0);
            let got = read_full(rd, buf)?;
            pos += got as u64;
            if skipped < skip || got < buf.len() {
                ended = true;
                None
            } else {
                Some(&mut buf[..])
            }
        };
        if i < *delivered {
            continue; // handed over before the read was retried
        }
        *delivered += 1;
        if let Err(err) = f(e, blob) {
            *failed = Some(err);
            return Err(std::io::Error::other("consumer failed"));
        }
    }
    Ok(pos)
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl Repository {
    /// Streams the stored bytes of `entries` (blobs of `pack`, any order)
    /// to `f` in offset order, with one ranged read per run of nearby blobs. A blob the
    /// pack does not hold whole is an error.
    pub fn stream_pack_blobs(
        &self,
        pack: &PackId,
        entries: &[PackEntry],
        f: &mut dyn FnMut(&PackEntry, &[u8]) -> Result<()>,
    ) -> Result<()> {
        self.stream_pack_blobs_buffered(pack, entries, &mut Vec::new(), &mut |e, b| f(e, b))
    }

    /// [`Self::stream_pack_blobs`] reading each blob into `buf`, which a caller streaming
    /// many packs keeps (its pages are then faulted in once, not once per blob), and
    /// handing the bytes over mutable, for [`Repository::open_blob_in_place`].
    pub fn stream_pack_blobs_buffered(
        &self,
        pack: &PackId,
        entries: &[PackEntry],
        buf: &mut Vec<u8>,
        f: &mut dyn FnMut(&PackEntry, &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        let path = pack.path();
        let mut sorted: Vec<&PackEntry> = entries.iter().collect();
        sorted.sort_by_key(|e| e.offset);
        let mut whole = |e: &PackEntry, blob: Option<&mut [u8]>| match blob {
            Some(b) => f(e, b),
            None => Err(Error::corrupt(
                "pack",
                path.clone(),
                format!("blob {} lies outside the pack", e.id.short()),
            )),
        };
        let mut start = 0;
        while start < sorted.len() {
            let mut end = start + 1;
            let mut range_end = sorted[start].offset + u64::from(sorted[start].slen);
            while end < sorted.len()
                && sorted[end].offset >= range_end
                && sorted[end].offset <= range_end + MERGE_GAP
            {
                range_end = sorted[end].offset + u64::from(sorted[end].slen);
                end += 1;
            }
            let run = &sorted[start..end];
            let first = run[0].offset;
            let mut delivered = 0usize;
            let mut failed: Option<Error> = None;
            let r = self
                .backend
                .read_stream(&path, Some(first..range_end), &mut |rd| {
                    cut(rd, first, run, &mut delivered, buf, &mut whole, &mut failed).map(|_| ())
                });
            if let Some(e) = failed {
                return Err(e);
            }
            r?;
            start = end;
        }
        Ok(())
    }

    /// Reads `pack` whole, handing `f` each of `entries` in offset
    /// order (`None` for one that overlaps the blob before it or lies past the end), and
    /// returns the BLAKE3 of every byte read and how many there were: a pack's name must
    /// be that hash.
    pub fn stream_whole_pack(
        &self,
        pack: &PackId,
        entries: &[PackEntry],
        f: &mut WholePackConsumer<'_>,
    ) -> Result<(Id, u64)> {
        let path = pack.path();
        let mut sorted: Vec<&PackEntry> = entries.iter().collect();
        sorted.sort_by_key(|e| e.offset);
        let mut delivered = 0usize;
        let mut failed: Option<Error> = None;
        let mut buf = Vec::new();
        let mut outcome = (Id([0; 32]), 0u64);
        let r = self.backend.read_stream(&path, None, &mut |rd| {
            let mut h = Hashing {
                inner: rd,
                hasher: blake3::Hasher::new(),
            };
            let mut g = |e: &PackEntry, b: Option<&mut [u8]>| f(e, b.map(|b| &*b));
            cut(
                &mut h,
                0,
                &sorted,
                &mut delivered,
                &mut buf,
                &mut g,
                &mut failed,
            )?;
            std::io::copy(&mut h, &mut std::io::sink())?;
            let n = h.hasher.count();
            outcome = (Id(*h.hasher.finalize().as_bytes()), n);
            Ok(())
        });
        if let Some(e) = failed {
            return Err(e);
        }
        r?;
        Ok(outcome)
    }
}

/// A reader that hashes everything passing through.
struct Hashing<'r> {
    inner: &'r mut dyn Read,
    hasher: blake3::Hasher,
}

impl Read for Hashing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
