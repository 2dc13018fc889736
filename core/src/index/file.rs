//! The index file payload:
//! `{0: v=1, 1: writer(16), 2: created_ms, 3: [[pack_name(32), pack_len, kind, [[id, cid, off, slen, plen]...]]...]}`.

use crate::cbor::{CborError, Dec, Enc};
use crate::id::{Id, Id16};
use crate::pack::{PackEntry, PackKind};

/// Index entries per file when a host's index is rewritten whole (prune's sweep, `repair
/// index`): keeps each file far below the sealed-file size cap.
pub(crate) const BLOBS_PER_INDEX_FILE: usize = 50_000;

/// Splits a host's packs into index files of at most about [`BLOBS_PER_INDEX_FILE`] blobs
/// (a pack is never split, so one batch may pass it by one pack's blobs).
pub(crate) fn batches(packs: Vec<IndexPack>) -> Vec<Vec<IndexPack>> {
    let mut out = Vec::new();
    let mut batch = Vec::new();
    let mut blobs = 0;
    for p in packs {
        blobs += p.entries.len();
        batch.push(p);
        if blobs >= BLOBS_PER_INDEX_FILE {
            out.push(std::mem::take(&mut batch));
            blobs = 0;
        }
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

/// One pack listed in an index file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IndexPack {
    /// Pack name.
    pub name: Id,
    /// Pack length.
    pub len: u64,
    /// What it holds.
    pub kind: PackKind,
    /// Its blobs.
    pub entries: Vec<PackEntry>,
}

/// An index file's payload.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IndexFile {
    /// Host whose packs these are.
    pub writer: Id16,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// Packs.
    pub packs: Vec<IndexPack>,
}

impl IndexFile {
    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        let blobs: usize = self.packs.iter().map(|p| p.entries.len()).sum();
        e.buf.reserve(64 + self.packs.len() * 48 + blobs * 84);
        e.map(4);
        e.key(0).u64(1);
        e.key(1).bytes(&self.writer.0);
        e.key(2).i64(self.created_ms);
        e.key(3).array(self.packs.len());
        for p in &self.packs {
            e.array(4).bytes(&p.name.0).u64(p.len).u64(p.kind as u64);
            e.array(p.entries.len());
            let group = p.kind == PackKind::Group;
            for x in &p.entries {
                e.array(if group { 5 } else { 4 }).bytes(&x.id.0);
                if group {
                    e.bytes(&x.cid.unwrap_or_default().0);
                }
                e.u64(x.offset).u64(x.slen.into()).u64(x.plen.into());
            }
        }
        e.buf
    }

    /// Decodes an authenticated payload; checks that every blob lies inside its pack.
    pub fn decode(b: &[u8]) -> Result<Self, CborError> {
        let mut d = Dec::new(b);
        if d.map()? != 4 {
            return Err(d.err("index file must have 4 fields"));
        }
        let mut prev = None;
        if d.key(&mut prev)? != 0 || d.u64()? != 1 {
            return Err(d.err("unsupported index version"));
        }
        d.key(&mut prev)?;
        let writer = Id16(d.fixed()?);
        d.key(&mut prev)?;
        let created_ms = d.i64()?;
        if d.key(&mut prev)? != 3 {
            return Err(d.err("missing packs"));
        }
        let n = d.array()?;
        let mut packs = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            if d.array()? != 4 {
                return Err(d.err("index pack must have 4 fields"));
            }
            let name = Id(d.fixed()?);
            let len = d.u64()?;
            if len > u64::from(u32::MAX) {
                return Err(d.err("pack larger than 4 GiB"));
            }
            let kind = PackKind::from_u8(d.u8()?).ok_or(d.err("unknown pack kind"))?;
            let m = d.array()?;
            let mut entries = Vec::with_capacity(m.min(1 << 16));
            for _ in 0..m {
                // Only group data carries a cid (see PackEntry::cid).
                let group = kind == PackKind::Group;
                if d.array()? != if group { 5 } else { 4 } {
                    return Err(
                        d.err("index entry has the wrong number of fields for its pack kind")
                    );
                }
                let x = PackEntry {
                    id: Id(d.fixed()?),
                    cid: if group { Some(Id(d.fixed()?)) } else { None },
                    offset: d.u64()?,
                    slen: d.u32()?,
                    plen: d.u32()?,
                };
                if x.offset
                    .checked_add(x.slen.into())
                    .is_none_or(|end| end > len)
                    || x.slen == 0
                {
                    return Err(d.err("blob lies outside its pack"));
                }
                entries.push(x);
            }
            // The writer lists each pack once; a second listing would be half-ignored by
            // the in-memory index, so it is refused as damage instead.
            if packs.iter().any(|p: &IndexPack| p.name == name) {
                return Err(d.err("pack listed twice"));
            }
            packs.push(IndexPack {
                name,
                len,
                kind,
                entries,
            });
        }
        d.finish()?;
        Ok(Self {
            writer,
            created_ms,
            packs,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let mut f = IndexFile {
            writer: Id16([1; 16]),
            created_ms: 1_700_000_000_000,
            packs: vec![IndexPack {
                name: Id([2; 32]),
                len: 1000,
                kind: PackKind::Group,
                entries: vec![PackEntry {
                    id: Id([3; 32]),
                    cid: Some(Id([4; 32])),
                    offset: 0,
                    slen: 900,
                    plen: 2000,
                }],
            }],
        };
        assert_eq!(IndexFile::decode(&f.encode()).unwrap(), f);
        let mut twice = f.clone();
        twice.packs.push(twice.packs[0].clone());
        assert!(
            IndexFile::decode(&twice.encode()).is_err(),
            "a pack listed twice"
        );
        f.packs[0].entries[0].offset = 200;
        assert!(IndexFile::decode(&f.encode()).is_err());
    }
}
