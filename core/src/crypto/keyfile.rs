//! Key files (`docs/format.md`, "Key files"): a secret wrapped under a password.
//!
//! ```text
//! KEK   = Argon2id(password, salt, m_kib, t, p) -> 32 bytes       (bounds checked first)
//! aad   = "cairn-key-v1" || canonical(kind, repo_id, key_id, created, label, kdf)
//! ct    = AES-256-GCM(KEK, 0^12, plaintext, aad)                  (fresh salt => fresh KEK)
//! check = BLAKE3("cairn-key-check-v1" || aad || aead || ct)       (unkeyed; aead = the JSON "aead" string)
//! ```
//! The unkeyed `check` tells a damaged file ("corrupted") from a wrong password (AEAD failure
//! on an intact file). It catches accidents, not attackers: a tampered file with a recomputed
//! check fails the AEAD and is reported as a wrong password.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::secret::{Key32, Password};
use crate::cbor::Enc;
use crate::error::{Error, Result};
use crate::id::Id16;

/// Argon2id parameters of a key file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Always "argon2id".
    pub alg: String,
    /// Argon2 version (19 = 0x13).
    pub v: u32,
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
    /// Salt, base64.
    pub salt: String,
}

/// Lowest memory accepted: OWASP's Argon2id minimum (19 MiB).
pub const MIN_M_KIB: u32 = 19 * 1024;
/// Highest memory accepted: 4 GiB; more is a denial of service, not security.
pub const MAX_M_KIB: u32 = 4 * 1024 * 1024;

impl KdfParams {
    /// RFC 9106's second recommended option: 64 MiB, 3 passes, 4 lanes, fresh 16-byte salt.
    pub fn recommended() -> Self {
        Self::with_cost(64 * 1024, 3)
    }

    /// Given memory and passes, 4 lanes and a fresh salt.
    pub fn with_cost(m_kib: u32, t: u32) -> Self {
        let salt: [u8; 16] = super::random_array();
        Self {
            alg: "argon2id".into(),
            v: 19,
            m_kib,
            t,
            p: 4,
            salt: base64::engine::general_purpose::STANDARD.encode(salt),
        }
    }

    /// Checks the bounds before any Argon2 work, so a hostile file can neither downgrade the
    /// KDF nor make us allocate gigabytes. Returns the decoded salt.
    pub fn check_bounds(&self) -> std::result::Result<Vec<u8>, String> {
        if self.alg != "argon2id" || self.v != 19 {
            return Err(format!("unsupported KDF {} version {}", self.alg, self.v));
        }
        if !(MIN_M_KIB..=MAX_M_KIB).contains(&self.m_kib) {
            return Err(format!(
                "memory {} KiB outside {MIN_M_KIB}..={MAX_M_KIB}",
                self.m_kib
            ));
        }
        if !(1..=10).contains(&self.t) {
            return Err(format!("iterations {} outside 1..=10", self.t));
        }
        if !(1..=16).contains(&self.p) {
            return Err(format!("lanes {} outside 1..=16", self.p));
        }
        let salt = base64::engine::general_purpose::STANDARD
            .decode(&self.salt)
            .map_err(|_| "salt is not base64".to_owned())?;
        if salt.len() != 16 && salt.len() != 32 {
            return Err(format!("salt of {} bytes (16 or 32 expected)", salt.len()));
        }
        Ok(salt)
    }
}

/// A key file as stored (JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Format version, 1.
    pub cairn_key: u32,
    /// "admin" (or "host", later).
    pub kind: String,
    /// Repository id, hex.
    pub repo_id: String,
    /// Key id, hex.
    pub key_id: String,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Host name and user that created it, for `key list`.
    pub label: String,
    /// The KDF.
    pub kdf: KdfParams,
    /// Always "aes-256-gcm".
    pub aead: String,
    /// Ciphertext and tag, base64.
    pub ct: String,
    /// Plain checksum, hex.
    pub check: String,
}

impl KeyFile {
    fn aad(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.array(10)
            .text(&self.kind)
            .text(&self.repo_id)
            .text(&self.key_id)
            .text(&self.created)
            .text(&self.label)
            .text(&self.kdf.alg)
            .u64(self.kdf.v.into())
            .u64(self.kdf.m_kib.into())
            .u64(self.kdf.t.into())
            .u64(self.kdf.p.into());
        e.text(&self.kdf.salt);
        let mut aad = b"cairn-key-v1".to_vec();
        aad.extend_from_slice(&e.buf);
        aad
    }

    fn checksum(&self, ct: &[u8]) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"cairn-key-check-v1");
        h.update(&self.aad());
        h.update(self.aead.as_bytes());
        h.update(ct);
        h.finalize().to_hex().to_string()
    }

    /// Wraps `plaintext` under `password`.
    pub fn wrap(
        kind: &str,
        repo_id: Id16,
        key_id: Id16,
        label: String,
        kdf: KdfParams,
        password: &Password,
        plaintext: &[u8],
    ) -> Result<Self> {
        let mut kf = Self {
            cairn_key: 1,
            kind: kind.into(),
            repo_id: repo_id.to_hex(),
            key_id: key_id.to_hex(),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            label,
            kdf,
            aead: "aes-256-gcm".into(),
            ct: String::new(),
            check: String::new(),
        };
        let name = kf.key_id.clone();
        let salt = kf
            .kdf
            .check_bounds()
            .map_err(|reason| Error::KdfOutOfBounds { name, reason })?;
        let kek = kek(password, &salt, &kf.kdf)?;
        let mut buf = plaintext.to_vec();
        let tag = Aes256Gcm::new(kek.expose().into())
            .encrypt_in_place_detached(Nonce::from_slice(&[0u8; 12]), &kf.aad(), &mut buf)
            .map_err(|_| Error::InvalidInput("key plaintext too large".into()))?;
        buf.extend_from_slice(&tag);
        kf.check = kf.checksum(&buf);
        kf.ct = base64::engine::general_purpose::STANDARD.encode(&buf);
        Ok(kf)
    }

    /// Parses a key file's bytes; `name` is used in errors.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Self> {
        let kf: Self = serde_json::from_slice(bytes).map_err(|e| Error::KeyFileMalformed {
            name: name.into(),
            reason: e.to_string(),
        })?;
        if kf.cairn_key != 1 || kf.aead != "aes-256-gcm" {
            return Err(Error::KeyFileMalformed {
                name: name.into(),
                reason: format!("unsupported version {} or cipher {}", kf.cairn_key, kf.aead),
            });
        }
        Ok(kf)
    }

    /// Serialises to pretty JSON.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut v = serde_json::to_vec_pretty(self).map_err(|e| Error::KeyFileMalformed {
            name: self.key_id.clone(),
            reason: format!("cannot serialise: {e}"),
        })?;
        v.push(b'\n');
        Ok(v)
    }

    /// Whether the plain checksum matches, i.e. the file is intact as far as can be told
    /// without the password (`check` uses it to report damaged key files it cannot open).
    pub fn checksum_ok(&self) -> bool {
        base64::engine::general_purpose::STANDARD
            .decode(&self.ct)
            .is_ok_and(|ct| self.checksum(&ct) == self.check)
    }

    /// Unwraps with `password`. Distinguishes a corrupted file from a wrong password.
    pub fn unwrap_secret(&self, name: &str, password: &Password) -> Result<Vec<u8>> {
        let ct = base64::engine::general_purpose::STANDARD
            .decode(&self.ct)
            .map_err(|_| Error::KeyFileCorrupted { name: name.into() })?;
        if self.checksum(&ct) != self.check {
            return Err(Error::KeyFileCorrupted { name: name.into() });
        }
        let salt = self
            .kdf
            .check_bounds()
            .map_err(|reason| Error::KdfOutOfBounds {
                name: name.into(),
                reason,
            })?;
        if ct.len() < 16 {
            return Err(Error::KeyFileCorrupted { name: name.into() });
        }
        let kek = kek(password, &salt, &self.kdf)?;
        let (body, tag) = ct.split_at(ct.len() - 16);
        let mut out = body.to_vec();
        Aes256Gcm::new(kek.expose().into())
            .decrypt_in_place_detached(
                Nonce::from_slice(&[0u8; 12]),
                &self.aad(),
                &mut out,
                Tag::from_slice(tag),
            )
            .map_err(|_| Error::WrongPassword { tried: 1 })?;
        Ok(out)
    }
}

fn kek(password: &Password, salt: &[u8], kdf: &KdfParams) -> Result<Key32> {
    let params = argon2::Params::new(kdf.m_kib, kdf.t, kdf.p, Some(32))
        .map_err(|e| Error::InvalidInput(format!("argon2 parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    a.hash_password_into(password.expose(), salt, &mut out)
        .map_err(|e| Error::InvalidInput(format!("argon2: {e}")))?;
    let k = Key32::from_bytes(out);
    zeroize::Zeroize::zeroize(&mut out);
    Ok(k)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cheap() -> KdfParams {
        KdfParams::with_cost(MIN_M_KIB, 1)
    }

    fn pw(s: &str) -> Password {
        Password::new(s.into())
    }

    #[test]
    fn wrong_password_corrupted_and_bounds_are_distinct() {
        let kf = KeyFile::wrap(
            "admin",
            Id16([1; 16]),
            Id16([2; 16]),
            "t".into(),
            cheap(),
            &pw("right"),
            b"secret",
        )
        .unwrap();
        assert_eq!(kf.unwrap_secret("k", &pw("right")).unwrap(), b"secret");
        assert!(matches!(
            kf.unwrap_secret("k", &pw("wrong")),
            Err(Error::WrongPassword { .. })
        ));

        let mut bad = kf.clone();
        let mut ct = base64::engine::general_purpose::STANDARD
            .decode(&bad.ct)
            .unwrap();
        ct[0] ^= 1;
        bad.ct = base64::engine::general_purpose::STANDARD.encode(ct);
        assert!(matches!(
            bad.unwrap_secret("k", &pw("right")),
            Err(Error::KeyFileCorrupted { .. })
        ));

        let mut salt = kf.clone();
        salt.kdf.salt = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
        assert!(matches!(
            salt.unwrap_secret("k", &pw("right")),
            Err(Error::KeyFileCorrupted { .. })
        ));

        for (m, t) in [
            (8192, 1),
            (64 * 1024 * 1024, 1),
            (MIN_M_KIB, 0),
            (MIN_M_KIB, 11),
        ] {
            let mut weak = kf.clone();
            weak.kdf.m_kib = m;
            weak.kdf.t = t;
            weak.check = weak.checksum(
                &base64::engine::general_purpose::STANDARD
                    .decode(&weak.ct)
                    .unwrap(),
            );
            assert!(
                matches!(
                    weak.unwrap_secret("k", &pw("right")),
                    Err(Error::KdfOutOfBounds { .. })
                ),
                "m={m} t={t}"
            );
        }
        let json = kf.to_json().unwrap();
        let back = KeyFile::parse("k", &json).unwrap();
        assert_eq!(back.unwrap_secret("k", &pw("right")).unwrap(), b"secret");
        assert!(matches!(
            KeyFile::parse("k", b"{\"cairn_key\":1}"),
            Err(Error::KeyFileMalformed { .. })
        ));
    }

    /// RFC 9106 §5.3 Argon2id test vector, through the same crate and settings we use.
    #[test]
    fn argon2id_rfc9106_vector() {
        let mut out = [0u8; 32];
        // The RFC vector has a secret and associated data, given through Params.
        let params = argon2::ParamsBuilder::new()
            .m_cost(32)
            .t_cost(3)
            .p_cost(4)
            .output_len(32)
            .data(argon2::AssociatedData::new(&[4u8; 12]).unwrap())
            .build()
            .unwrap();
        let a2 = argon2::Argon2::new_with_secret(
            &[3u8; 8],
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        )
        .unwrap();
        a2.hash_password_into(&[1u8; 32], &[2u8; 16], &mut out)
            .unwrap();
        assert_eq!(
            hex::encode(out),
            "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"
        );
    }
}
