//! Building a pack on local disk: blobs are appended to a spool file as they come, so a pack
//! never sits whole in memory, and the pack's name (BLAKE3 of its bytes) is hashed on the way.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use tempfile::TempPath;

use super::header::{PackEntry, PackHeader, PackKind};
use super::{padme, MAGIC};
use crate::id::Id;

/// Bytes gathered before they are written to the spool file and hashed.
const BUF_LEN: usize = 256 << 10;

/// A pack being filled.
pub struct PackWriter {
    kind: PackKind,
    out: File,
    /// Bytes not yet written nor hashed. BLAKE3 hashes a long buffer several chunks at a
    /// time with SIMD, but a blob of a few hundred bytes one block at a time: hashing what
    /// the buffer gathered is several times faster for packs of small blobs.
    buf: Vec<u8>,
    path: TempPath,
    hasher: blake3::Hasher,
    entries: Vec<PackEntry>,
    size: u64,
}

/// A finished pack, spooled in a temporary file that is removed when this is dropped.
pub struct FinishedPack {
    /// What it holds.
    pub kind: PackKind,
    /// Its name: BLAKE3 of its bytes.
    pub name: Id,
    /// Its length.
    pub len: u64,
    /// The spool file.
    pub path: TempPath,
    /// Its blobs.
    pub entries: Vec<PackEntry>,
}

impl PackWriter {
    /// A new pack spooled in `dir`.
    pub fn new(kind: PackKind, dir: &Path) -> std::io::Result<Self> {
        let f = tempfile::Builder::new()
            .prefix("cairn-pack-")
            .tempfile_in(dir)?;
        let (file, path) = f.into_parts();
        Ok(Self {
            kind,
            out: file,
            buf: Vec::with_capacity(BUF_LEN),
            path,
            hasher: blake3::Hasher::new(),
            entries: Vec::new(),
            size: 0,
        })
    }

    /// What it holds.
    pub fn kind(&self) -> PackKind {
        self.kind
    }

    /// Bytes of blobs so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of blobs so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        if self.buf.len() + b.len() > BUF_LEN {
            self.flush()?;
        }
        if b.len() >= BUF_LEN {
            self.out.write_all(b)?;
            self.hasher.update(b);
        } else {
            self.buf.extend_from_slice(b);
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.hasher.update(&self.buf);
        self.buf.clear();
        Ok(())
    }

    /// Appends a sealed blob.
    pub fn add(&mut self, id: Id, plen: u32, stored: &[u8]) -> std::io::Result<()> {
        self.add_with_cid(id, plen, stored, None)
    }

    /// Appends a sealed blob whose `cid` (BLAKE3 of `stored`, used by group packs only) the
    /// caller may have computed already: the packer calls this under its lock, and hashing
    /// the blob before taking the lock lets other workers add theirs meanwhile.
    pub fn add_with_cid(
        &mut self,
        id: Id,
        plen: u32,
        stored: &[u8],
        cid: Option<Id>,
    ) -> std::io::Result<()> {
        debug_assert!(cid.is_none_or(|c| c == Id::of_bytes(stored)));
        let slen = u32::try_from(stored.len()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "blob larger than 4 GiB")
        })?;
        self.entries.push(PackEntry {
            id,
            cid: (self.kind == PackKind::Group)
                .then(|| cid.unwrap_or_else(|| Id::of_bytes(stored))),
            offset: self.size,
            slen,
            plen,
        });
        self.put(stored)?;
        self.size += u64::from(slen);
        Ok(())
    }

    /// Pads, appends the sealed header and trailer, and checks that the header decodes back
    /// to what was meant (`open` reverses `seal`): a pack whose header cannot be read loses
    /// every blob in it, so the writer verifies before anything is uploaded.
    pub fn finish(
        mut self,
        seal: impl FnOnce(&[u8]) -> Vec<u8>,
        open: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
    ) -> std::io::Result<FinishedPack> {
        let pad_len = padme(self.size) - self.size;
        let mut remaining = pad_len;
        let mut buf = vec![0u8; 64 << 10];
        while remaining > 0 {
            let n = remaining.min(buf.len() as u64) as usize;
            crate::crypto::fill_random(&mut buf[..n]);
            self.put(&buf[..n])?;
            remaining -= n as u64;
        }
        let header = PackHeader {
            kind: self.kind,
            pad_len,
            entries: std::mem::take(&mut self.entries),
        };
        let plain = header.encode();
        let sealed = seal(&plain);
        let invalid =
            |m: String| std::io::Error::other(format!("pack header verification failed: {m}"));
        let reopened = open(&sealed).map_err(invalid)?;
        let decoded = PackHeader::decode(&reopened, self.size + pad_len)
            .map_err(|e| invalid(e.to_string()))?;
        if decoded != header {
            return Err(invalid("decoded header differs".into()));
        }
        let hlen = u32::try_from(sealed.len()).map_err(|_| invalid("header too large".into()))?;
        self.put(&sealed)?;
        self.put(&hlen.to_le_bytes())?;
        self.put(MAGIC)?;
        // No fsync: the spool file is scratch; durability comes from the backend's write.
        self.flush()?;
        let len = self.size + pad_len + u64::from(hlen) + 8;
        Ok(FinishedPack {
            kind: self.kind,
            name: Id(*self.hasher.finalize().as_bytes()),
            len,
            path: self.path,
            entries: header.entries,
        })
    }
}
