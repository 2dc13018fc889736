//! The pack header's plaintext: `{0: v=1, 1: kind, 2: pad_len, 3: [[btype, id, cid, slen, plen]...]}`.
//! Offsets are implicit: blobs are stored back to back from offset 0.

use crate::cbor::{CborError, Dec, Enc};
use crate::crypto::blob::BlobType;
use crate::id::Id;

/// What a pack holds; never mixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PackKind {
    /// Group data blobs (header sealed with the group key).
    Group = 1,
    /// Private data blobs (header sealed with the host key).
    Private = 2,
    /// Tree blobs (header sealed with the host key).
    Tree = 3,
}

impl PackKind {
    /// The blob type this pack holds.
    pub fn blob_type(self) -> BlobType {
        match self {
            PackKind::Group => BlobType::GroupData,
            PackKind::Private => BlobType::PrivateData,
            PackKind::Tree => BlobType::Tree,
        }
    }

    /// The pack kind holding `t`.
    pub fn for_blob(t: BlobType) -> Self {
        match t {
            BlobType::GroupData => PackKind::Group,
            BlobType::PrivateData => PackKind::Private,
            BlobType::Tree => PackKind::Tree,
        }
    }

    /// From the format byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Group,
            2 => Self::Private,
            3 => Self::Tree,
            _ => return None,
        })
    }
}

/// One blob in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PackEntry {
    /// Blob id.
    pub id: Id,
    /// BLAKE3 of the stored bytes, for group data only: it is what a peer checks before
    /// it dedups against a blob it did not write. Host-private blobs (private data, trees)
    /// are never shared, the AEAD already detects their corruption, so they carry none and
    /// save 32 bytes in both the pack header and the index.
    pub cid: Option<Id>,
    /// Offset in the pack (implicit in the encoding).
    pub offset: u64,
    /// Stored length.
    pub slen: u32,
    /// Plain length.
    pub plen: u32,
}

/// The decoded header.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PackHeader {
    /// What the pack holds.
    pub kind: PackKind,
    /// Bytes of random padding after the last blob.
    pub pad_len: u64,
    /// Blobs in storage order.
    pub entries: Vec<PackEntry>,
}

impl PackHeader {
    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.buf.reserve(16 + self.entries.len() * 76);
        e.map(4);
        e.key(0).u64(1);
        e.key(1).u64(self.kind as u64);
        e.key(2).u64(self.pad_len);
        e.key(3).array(self.entries.len());
        let bt = self.kind.blob_type() as u64;
        let group = self.kind == PackKind::Group;
        for x in &self.entries {
            e.array(if group { 5 } else { 4 }).u64(bt).bytes(&x.id.0);
            if group {
                e.bytes(&x.cid.unwrap_or_default().0);
            }
            e.u64(x.slen.into()).u64(x.plen.into());
        }
        e.buf
    }

    /// Decodes and checks that the blobs and padding fit in `data_len` bytes (the pack's
    /// length without header and trailer).
    pub fn decode(b: &[u8], data_len: u64) -> Result<Self, CborError> {
        let mut d = Dec::new(b);
        if d.map()? != 4 {
            return Err(d.err("pack header must have 4 fields"));
        }
        let mut prev = None;
        if d.key(&mut prev)? != 0 || d.u64()? != 1 {
            return Err(d.err("unsupported pack header version"));
        }
        d.key(&mut prev)?;
        let kind = PackKind::from_u8(d.u8()?).ok_or(d.err("unknown pack kind"))?;
        d.key(&mut prev)?;
        let pad_len = d.u64()?;
        if d.key(&mut prev)? != 3 {
            return Err(d.err("missing entries"));
        }
        let n = d.array()?;
        let mut entries = Vec::with_capacity(n);
        let mut offset = 0u64;
        for _ in 0..n {
            let group = kind == PackKind::Group;
            if d.array()? != if group { 5 } else { 4 } {
                return Err(d.err("pack entry has the wrong number of fields for its kind"));
            }
            if d.u8()? != kind.blob_type() as u8 {
                return Err(d.err("blob type does not match the pack kind"));
            }
            let id = Id(d.fixed()?);
            let cid = if group { Some(Id(d.fixed()?)) } else { None };
            let slen = d.u32()?;
            let plen = d.u32()?;
            if slen == 0 {
                return Err(d.err("empty blob"));
            }
            entries.push(PackEntry {
                id,
                cid,
                offset,
                slen,
                plen,
            });
            offset += u64::from(slen);
        }
        d.finish()?;
        if offset.checked_add(pad_len) != Some(data_len) {
            return Err(d.err("blobs and padding do not add up to the pack's length"));
        }
        Ok(Self {
            kind,
            pad_len,
            entries,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn header(kind: PackKind, cid: Option<Id>) -> PackHeader {
        PackHeader {
            kind,
            pad_len: 3,
            entries: vec![PackEntry {
                id: Id([1; 32]),
                cid,
                offset: 0,
                slen: 40,
                plen: 70,
            }],
        }
    }

    #[test]
    fn only_group_entries_carry_a_cid() {
        let g = header(PackKind::Group, Some(Id([2; 32])));
        assert_eq!(PackHeader::decode(&g.encode(), 43).unwrap(), g);
        let t = header(PackKind::Tree, None);
        let enc = t.encode();
        assert_eq!(PackHeader::decode(&enc, 43).unwrap(), t);
        assert!(
            enc.len() + 32 < g.encode().len(),
            "no cid in a tree pack header"
        );
        // A tree pack entry with a cid (the group layout) is refused.
        let mut forged = g.encode();
        forged[4] = PackKind::Tree as u8; // kind field
        assert!(PackHeader::decode(&forged, 43).is_err());
    }
}
