//! Sealed files (`docs/format.md`, "Sealed files"): snapshots, index files, pack headers.
//!
//! ```text
//! hdr    = "SEF1" || ftype(1) || repo_id(16) || writer_id(16) || scope_id(16) || scope_epoch(u32 LE)
//!          || seq(u64 LE) || salt(32)                                                   97 bytes
//! k_file = KH(K_scope, "SEF1-key" || ftype || salt)     a fresh key per file: nonce 0 is safe
//! file   = hdr || AES-256-GCM(k_file, 0^12, codec || CBOR, aad = hdr)
//! ```
//! The header is authenticated as AAD, so a file cannot be moved to another repository, type,
//! writer or scope without failing to open.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};

use super::keys::kh;
use super::secret::Key32;
use crate::compress;
use crate::id::Id16;

/// Length of the header.
pub const HEADER_LEN: usize = 97;
/// Largest sealed file accepted, sealed or opened.
pub const MAX_SEALED_LEN: usize = 64 << 20;

/// File types of sealed files (the `ftype` byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FileType {
    /// A snapshot (host key).
    Snapshot = 1,
    /// A shared index file (group key).
    SharedIndex = 2,
    /// A tree/private index file (host key).
    PrivateIndex = 3,
    /// The header of a group data pack (group key).
    GroupPackHeader = 4,
    /// The header of a tree or private data pack (host key).
    HostPackHeader = 5,
    /// A backup session marker (host key).
    SessionMarker = 6,
    /// A prune plan (group key, signed by the admin).
    PrunePlan = 9,
    /// A sweep record (group key, signed by the admin).
    SweepRecord = 11,
}

impl FileType {
    /// Human name, for errors.
    pub fn name(self) -> &'static str {
        match self {
            FileType::Snapshot => "snapshot",
            FileType::SharedIndex => "index file",
            FileType::PrivateIndex => "tree index file",
            FileType::GroupPackHeader | FileType::HostPackHeader => "pack header",
            FileType::SessionMarker => "session marker",
            FileType::PrunePlan => "prune plan",
            FileType::SweepRecord => "sweep record",
        }
    }
}

/// The plaintext header of a sealed file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedHeader {
    /// File type.
    pub ftype: u8,
    /// Repository id.
    pub repo_id: Id16,
    /// Host id of the writer, or all-ones for the admin.
    pub writer_id: Id16,
    /// Group or host id whose key sealed it.
    pub scope_id: Id16,
    /// Epoch of that scope.
    pub scope_epoch: u32,
    /// Per-writer sequence number (rollback detection).
    pub seq: u64,
    /// Random salt of the per-file key.
    pub salt: [u8; 32],
}

impl SealedHeader {
    /// Encodes the 97 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(b"SEF1");
        h[4] = self.ftype;
        h[5..21].copy_from_slice(&self.repo_id.0);
        h[21..37].copy_from_slice(&self.writer_id.0);
        h[37..53].copy_from_slice(&self.scope_id.0);
        h[53..57].copy_from_slice(&self.scope_epoch.to_le_bytes());
        h[57..65].copy_from_slice(&self.seq.to_le_bytes());
        h[65..97].copy_from_slice(&self.salt);
        h
    }

    /// Decodes the header at the start of `b`.
    pub fn decode(b: &[u8]) -> Result<Self, &'static str> {
        let h = b
            .get(..HEADER_LEN)
            .ok_or("shorter than a sealed-file header")?;
        if &h[..4] != b"SEF1" {
            return Err("not a sealed file (bad magic)");
        }
        let id16 = |r: std::ops::Range<usize>| {
            let mut a = [0u8; 16];
            a.copy_from_slice(&h[r]);
            Id16(a)
        };
        let mut epoch = [0u8; 4];
        epoch.copy_from_slice(&h[53..57]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&h[57..65]);
        let mut salt = [0u8; 32];
        salt.copy_from_slice(&h[65..97]);
        Ok(Self {
            ftype: h[4],
            repo_id: id16(5..21),
            writer_id: id16(21..37),
            scope_id: id16(37..53),
            scope_epoch: u32::from_le_bytes(epoch),
            seq: u64::from_le_bytes(seq),
            salt,
        })
    }
}

fn file_key(k_scope: &Key32, ftype: u8, salt: &[u8; 32]) -> Key32 {
    let mut m = [0u8; 8 + 1 + 32];
    m[..8].copy_from_slice(b"SEF1-key");
    m[8] = ftype;
    m[9..].copy_from_slice(salt);
    Key32::from_bytes(kh(k_scope, &m))
}

/// Seals a CBOR payload. The header's salt should be fresh random bytes.
pub fn seal(k_scope: &Key32, hdr: &SealedHeader, payload: &[u8], level: i32) -> Vec<u8> {
    let head = hdr.encode();
    let mut buf = compress::encode(payload, level, HEADER_LEN);
    buf[..HEADER_LEN].copy_from_slice(&head);
    let key = file_key(k_scope, hdr.ftype, &hdr.salt);
    let cipher = Aes256Gcm::new(key.expose().into());
    let (aad, body) = buf.split_at_mut(HEADER_LEN);
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(&[0u8; 12]), aad, body)
        .unwrap_or_default();
    buf.extend_from_slice(&tag);
    buf
}

/// What a reader expects of a sealed file's header before it tries the key.
pub struct Expect {
    /// File type.
    pub ftype: FileType,
    /// Repository id.
    pub repo_id: Id16,
    /// Writer, when the file's location names it.
    pub writer_id: Option<Id16>,
}

/// Opens a sealed file; returns its header and the decoded CBOR payload.
pub fn open(
    k_scope: &Key32,
    expect: &Expect,
    file: &[u8],
) -> Result<(SealedHeader, Vec<u8>), String> {
    if file.len() > MAX_SEALED_LEN {
        return Err(format!("larger than the {MAX_SEALED_LEN}-byte limit"));
    }
    let hdr = SealedHeader::decode(file)?;
    if hdr.ftype != expect.ftype as u8 {
        return Err(format!(
            "file type {} where {} was expected",
            hdr.ftype, expect.ftype as u8
        ));
    }
    if hdr.repo_id != expect.repo_id {
        return Err("belongs to another repository".into());
    }
    if let Some(w) = expect.writer_id {
        if hdr.writer_id != w {
            return Err("writer id does not match the directory it was read from".into());
        }
    }
    if file.len() < HEADER_LEN + 1 + 16 {
        return Err("truncated".into());
    }
    let key = file_key(k_scope, hdr.ftype, &hdr.salt);
    let cipher = Aes256Gcm::new(key.expose().into());
    let (aad, rest) = file.split_at(HEADER_LEN);
    let (body, tag) = rest.split_at(rest.len() - 16);
    let mut out = body.to_vec();
    cipher
        .decrypt_in_place_detached(
            Nonce::from_slice(&[0u8; 12]),
            aad,
            &mut out,
            Tag::from_slice(tag),
        )
        .map_err(|_| "authentication failed (damaged, or sealed with another key)".to_owned())?;
    let plain = compress::decode(&out, MAX_SEALED_LEN)?;
    Ok((hdr, plain))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hdr() -> SealedHeader {
        SealedHeader {
            ftype: FileType::Snapshot as u8,
            repo_id: Id16([1; 16]),
            writer_id: Id16([2; 16]),
            scope_id: Id16([2; 16]),
            scope_epoch: 1,
            seq: 7,
            salt: [9; 32],
        }
    }

    #[test]
    fn round_trip_and_binding() {
        let k = Key32::from_bytes([4; 32]);
        let f = seal(&k, &hdr(), b"payload payload payload", 3);
        let exp = Expect {
            ftype: FileType::Snapshot,
            repo_id: Id16([1; 16]),
            writer_id: Some(Id16([2; 16])),
        };
        let (h, p) = open(&k, &exp, &f).unwrap();
        assert_eq!(h, hdr());
        assert_eq!(p, b"payload payload payload");
        assert!(open(&Key32::from_bytes([5; 32]), &exp, &f).is_err());
        let other_writer = Expect {
            writer_id: Some(Id16([3; 16])),
            ..exp
        };
        assert!(
            open(&k, &other_writer, &f).is_err(),
            "moved between prefixes (T-2)"
        );
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 0x40;
            assert!(open(&k, &exp, &g).is_err(), "byte {i}");
        }
        assert!(
            open(&k, &exp, &f[..f.len() - 1]).is_err(),
            "truncated (T-3)"
        );
    }
}
