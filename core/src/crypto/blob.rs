//! `DetSeal`: deterministic, content-keyed sealing of blobs (`docs/format.md`, "Blobs").
//!
//! ```text
//! AAD   = "BLB1" || repo_id(16) || btype(1) || scope_id(16) || scope_epoch(u32 LE) || id(32)   73 bytes
//! k_enc = DK("cairn repo-v1 blob enc", ck)     k_siv = DK("cairn repo-v1 blob siv", ck)
//! nonce = KH(k_siv, AAD || C)[0..12]           (synthetic IV: equal input, equal output)
//! S     = 0x01 || nonce || AES-256-GCM(k_enc, nonce, C, AAD)
//! ```
//! `C` is `codec || body` from [`crate::compress`]. The nonce is derived from the bytes sealed,
//! so two builds whose zstd output differs never reuse a (key, nonce) pair. GCM does not commit
//! to its key: the caller must re-check the content hash after [`open`].

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};

use super::keys::{ctx, dk, kh};
use crate::id::{Id, Id16};

/// Version byte of a sealed blob.
pub const BLOB_VERSION: u8 = 0x01;
/// Bytes a seal adds to `C`: version, nonce and tag.
pub const SEAL_OVERHEAD: usize = 1 + 12 + 16;
/// Length of the AAD.
pub const AAD_LEN: usize = 73;

/// What a blob is, bound into its AAD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlobType {
    /// File content in group scope: dedups across the hosts of a group.
    GroupData = 1,
    /// File content in a host's private scope.
    PrivateData = 2,
    /// A directory listing.
    Tree = 3,
}

impl BlobType {
    /// From the format byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::GroupData),
            2 => Some(Self::PrivateData),
            3 => Some(Self::Tree),
            _ => None,
        }
    }
}

/// The authenticated data of a blob: which repository, type, scope and id it belongs to.
pub fn aad(
    repo_id: &Id16,
    btype: BlobType,
    scope_id: &Id16,
    scope_epoch: u32,
    id: &Id,
) -> [u8; AAD_LEN] {
    let mut a = [0u8; AAD_LEN];
    a[..4].copy_from_slice(b"BLB1");
    a[4..20].copy_from_slice(&repo_id.0);
    a[20] = btype as u8;
    a[21..37].copy_from_slice(&scope_id.0);
    a[37..41].copy_from_slice(&scope_epoch.to_le_bytes());
    a[41..73].copy_from_slice(&id.0);
    a
}

/// Seals `buf`, which holds `SEAL_OVERHEAD - 16` free bytes followed by `C`
/// (see [`crate::compress::encode`]'s `reserve_front`); returns `S`.
pub fn seal_in_place(ck: &[u8; 32], aad: &[u8; AAD_LEN], mut buf: Vec<u8>) -> Vec<u8> {
    const FRONT: usize = 13;
    let k_siv = dk(ctx::BLOB_SIV, ck);
    let mut h = blake3::Hasher::new_keyed(k_siv.expose());
    h.update(aad);
    h.update(&buf[FRONT..]);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&h.finalize().as_bytes()[..12]);
    let k_enc = dk(ctx::BLOB_ENC, ck);
    let cipher = Aes256Gcm::new(k_enc.expose().into());
    // Encryption cannot fail below GCM's 64 GiB message limit; blobs are at most a few MiB.
    let tag =
        match cipher.encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut buf[FRONT..]) {
            Ok(t) => t,
            Err(_) => unreachable_gcm(),
        };
    buf[0] = BLOB_VERSION;
    buf[1..13].copy_from_slice(&nonce);
    buf.extend_from_slice(&tag);
    buf
}

#[cold]
fn unreachable_gcm() -> Tag {
    // aes-gcm only fails for messages over 2^36 bytes, which no caller builds.
    Tag::default()
}

/// Opens `S`, returning `C`. `Err` names the failing stage.
pub fn open(ck: &[u8; 32], aad: &[u8; AAD_LEN], stored: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::new();
    open_into(ck, aad, stored, &mut out)?;
    Ok(out)
}

/// [`open`] into `out` (cleared first), which a caller opening many blobs reuses.
fn open_into(
    ck: &[u8; 32],
    aad: &[u8; AAD_LEN],
    stored: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), &'static str> {
    if stored.len() < SEAL_OVERHEAD + 1 {
        return Err("length");
    }
    if stored[0] != BLOB_VERSION {
        return Err("version");
    }
    let nonce = Nonce::from_slice(&stored[1..13]);
    let (body, tag) = stored[13..].split_at(stored.len() - 13 - 16);
    out.clear();
    out.extend_from_slice(body);
    let k_enc = dk(ctx::BLOB_ENC, ck);
    Aes256Gcm::new(k_enc.expose().into())
        .decrypt_in_place_detached(nonce, aad, out, Tag::from_slice(tag))
        .map_err(|_| "aead")
}

/// [`open`] in place: decrypts the body inside `stored` and returns it (`C`), so a caller
/// that owns the stored bytes needs no second buffer of their size.
pub fn open_in_place<'a>(
    ck: &[u8; 32],
    aad: &[u8; AAD_LEN],
    stored: &'a mut [u8],
) -> Result<&'a [u8], &'static str> {
    if stored.len() < SEAL_OVERHEAD + 1 {
        return Err("length");
    }
    if stored[0] != BLOB_VERSION {
        return Err("version");
    }
    let (head, rest) = stored.split_at_mut(13);
    let body_len = rest.len() - 16;
    let (body, tag) = rest.split_at_mut(body_len);
    let k_enc = dk(ctx::BLOB_ENC, ck);
    Aes256Gcm::new(k_enc.expose().into())
        .decrypt_in_place_detached(
            Nonce::from_slice(&head[1..13]),
            aad,
            body,
            Tag::from_slice(tag),
        )
        .map_err(|_| "aead")?;
    Ok(body)
}

/// Checks stored bytes without decompressing them: the AEAD tag under `ck`, and the
/// synthetic nonce, which must be the keyed hash (under a key derived from `ck`) of the AAD
/// and the compressed plaintext. The second check commits the bytes to `ck` as the
/// plaintext check of a full open does (GCM alone does not commit to its key), so a
/// repack can copy a blob it has authenticated this way without its plaintext.
pub fn verify(ck: &[u8; 32], aad: &[u8; AAD_LEN], stored: &[u8]) -> Result<(), &'static str> {
    thread_local! {
        // A repack verifies tens of thousands of small blobs: one buffer per thread
        // instead of an allocation each.
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| {
        let mut c = scratch.borrow_mut();
        open_into(ck, aad, stored, &mut c)?;
        let k_siv = dk(ctx::BLOB_SIV, ck);
        let mut h = blake3::Hasher::new_keyed(k_siv.expose());
        h.update(aad);
        h.update(&c);
        if h.finalize().as_bytes()[..12] != stored[1..13] {
            return Err("nonce");
        }
        Ok(())
    })
}

/// Content key and id of a blob with keyed ids: `ck = KH(k_conv, P)`, `id = KH(k_id, ck)`.
pub fn content_key_and_id(
    k_conv: &super::Key32,
    k_id: &super::Key32,
    plain: &[u8],
) -> ([u8; 32], Id) {
    let ck = kh(k_conv, plain);
    (ck, Id(kh(k_id, &ck)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::compress;

    fn seal(ck: &[u8; 32], aad: &[u8; AAD_LEN], plain: &[u8], level: i32) -> Vec<u8> {
        seal_in_place(ck, aad, compress::encode(plain, level, 13))
    }

    #[test]
    fn deterministic_and_round_trip() {
        let ck = [5u8; 32];
        let a = aad(
            &Id16([1; 16]),
            BlobType::GroupData,
            &Id16([2; 16]),
            1,
            &Id([3; 32]),
        );
        let p = b"some plaintext that compresses compresses compresses compresses".repeat(8);
        let s1 = seal(&ck, &a, &p, 3);
        let s2 = seal(&ck, &a, &p, 3);
        assert_eq!(s1, s2, "DetSeal is deterministic (B-1)");
        let raw = seal(&ck, &a, &p, 0);
        assert_ne!(
            s1[1..13],
            raw[1..13],
            "raw and zstd encodings get different nonces (B-2)"
        );
        for s in [&s1, &raw] {
            let c = open(&ck, &a, s).unwrap();
            assert_eq!(compress::decode(&c, p.len()).unwrap(), p);
        }
    }

    #[test]
    fn verify_checks_tag_and_synthetic_nonce() {
        let ck = [5u8; 32];
        let a = aad(
            &Id16([1; 16]),
            BlobType::PrivateData,
            &Id16([2; 16]),
            1,
            &Id([3; 32]),
        );
        let s = seal(&ck, &a, b"private bytes private bytes", 3);
        assert_eq!(verify(&ck, &a, &s), Ok(()));
        assert_eq!(verify(&[6; 32], &a, &s), Err("aead"));
        let mut flipped = s.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(verify(&ck, &a, &flipped), Err("aead"));
        // Valid GCM under the right key but with a nonce that is not the synthetic one: a
        // full open would accept the bytes, verify must not.
        let c = open(&ck, &a, &s).unwrap();
        let k_enc = dk(ctx::BLOB_ENC, &ck);
        let cipher = Aes256Gcm::new(k_enc.expose().into());
        let mut body = c.clone();
        let nonce = [7u8; 12];
        let tag = cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &a, &mut body)
            .unwrap();
        let mut forged = vec![BLOB_VERSION];
        forged.extend_from_slice(&nonce);
        forged.extend_from_slice(&body);
        forged.extend_from_slice(&tag);
        assert!(open(&ck, &a, &forged).is_ok());
        assert_eq!(verify(&ck, &a, &forged), Err("nonce"));
    }

    #[test]
    fn any_change_fails() {
        let ck = [5u8; 32];
        let id = Id([3; 32]);
        let a = aad(&Id16([1; 16]), BlobType::GroupData, &Id16([2; 16]), 1, &id);
        let s = seal(&ck, &a, b"0123456789", 3);
        assert_eq!(open(&[6; 32], &a, &s), Err("aead"), "wrong ck (B-3)");
        for other in [
            aad(&Id16([9; 16]), BlobType::GroupData, &Id16([2; 16]), 1, &id),
            aad(
                &Id16([1; 16]),
                BlobType::PrivateData,
                &Id16([2; 16]),
                1,
                &id,
            ),
            aad(&Id16([1; 16]), BlobType::GroupData, &Id16([9; 16]), 1, &id),
            aad(&Id16([1; 16]), BlobType::GroupData, &Id16([2; 16]), 2, &id),
            aad(
                &Id16([1; 16]),
                BlobType::GroupData,
                &Id16([2; 16]),
                1,
                &Id([4; 32]),
            ),
        ] {
            assert!(open(&ck, &other, &s).is_err());
        }
        for bit in 0..s.len() * 8 {
            let mut t = s.clone();
            t[bit / 8] ^= 1 << (bit % 8);
            assert!(open(&ck, &a, &t).is_err(), "bit {bit}");
        }
    }
}
