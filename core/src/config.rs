//! The repository config (`docs/format.md`, "Config"): public parameters, signed by the admin.
//!
//! ```text
//! file = "CFG1" || len(u32 LE) || CBOR || ed25519_sig(64) || "SIG1"
//! sig  = Ed25519(admin, "SIG1" || "config" || BLAKE3(CBOR))
//! ```
//! The config is plaintext so a keyless mirror and `check` can read it; it holds no secret
//! (the chunker *key* is derived from the group secret, only its sizes are here).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::cbor::{CborError, Dec, Enc};
use crate::chunker::ChunkerParams;
use crate::error::{Error, Result};
use crate::id::Id16;

/// A dedup group and its current epoch.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GroupRef {
    /// Group id.
    pub id: Id16,
    /// Current epoch.
    pub epoch: u32,
}

/// The decoded config.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Config {
    /// Format version, 1.
    pub version: u32,
    /// Repository id.
    pub repo_id: Id16,
    /// The admin's Ed25519 public key: the trust root.
    #[serde(serialize_with = "hex32")]
    pub admin_pub: [u8; 32],
    /// Dedup groups; v1 has one.
    pub groups: Vec<GroupRef>,
    /// Chunker sizes (a repository constant: changing them breaks dedup).
    #[serde(skip)]
    pub chunker: ChunkerParams,
    /// zstd level of blobs and sealed files.
    pub zstd_level: i32,
    /// Target pack size in bytes before padding.
    pub pack_target: u64,
    /// Globs whose files go to the private scope.
    pub private_globs: Vec<String>,
    /// Files smaller than this go to the private scope.
    pub private_small_file_max: u64,
}

fn hex32<S: serde::Serializer>(v: &[u8; 32], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

const MAGIC: &[u8; 4] = b"CFG1";
const SIG_TAG: &[u8; 4] = b"SIG1";

impl Config {
    /// The canonical CBOR body.
    pub fn encode_body(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.map(9);
        e.key(0).u64(self.version.into());
        e.key(1).bytes(&self.repo_id.0);
        e.key(2).bytes(&self.admin_pub);
        e.key(3).array(self.groups.len());
        for g in &self.groups {
            e.array(2).bytes(&g.id.0).u64(g.epoch.into());
        }
        let c = &self.chunker;
        e.key(4)
            .array(5)
            .u64(1)
            .u64(c.min.into())
            .u64(c.avg.into())
            .u64(c.max.into())
            .u64(c.level.into());
        e.key(5).i64(self.zstd_level.into());
        e.key(6).u64(self.pack_target);
        e.key(7).array(self.private_globs.len());
        for g in &self.private_globs {
            e.text(g);
        }
        e.key(8).u64(self.private_small_file_max);
        e.buf
    }

    fn decode_body(b: &[u8]) -> std::result::Result<Self, CborError> {
        let mut d = Dec::new(b);
        let n = d.map()?;
        if n != 9 {
            return Err(d.err("config must have 9 fields"));
        }
        let mut prev = None;
        let mut cfg = Config {
            version: 0,
            repo_id: Id16::default(),
            admin_pub: [0; 32],
            groups: vec![],
            chunker: ChunkerParams::default(),
            zstd_level: 3,
            pack_target: 16 << 20,
            private_globs: vec![],
            private_small_file_max: 0,
        };
        for i in 0..n {
            let k = d.key(&mut prev)?;
            if k != i as u64 {
                return Err(d.err("config field missing"));
            }
            match k {
                0 => cfg.version = d.u32()?,
                1 => cfg.repo_id = Id16(d.fixed()?),
                2 => cfg.admin_pub = d.fixed()?,
                3 => {
                    for _ in 0..d.array()? {
                        if d.array()? != 2 {
                            return Err(d.err("group entry must have 2 fields"));
                        }
                        cfg.groups.push(GroupRef {
                            id: Id16(d.fixed()?),
                            epoch: d.u32()?,
                        });
                    }
                }
                4 => {
                    if d.array()? != 5 || d.u64()? != 1 {
                        return Err(d.err("unknown chunker algorithm"));
                    }
                    cfg.chunker = ChunkerParams {
                        min: d.u32()?,
                        avg: d.u32()?,
                        max: d.u32()?,
                        level: d.u8()?,
                    };
                }
                5 => {
                    cfg.zstd_level =
                        i32::try_from(d.i64()?).map_err(|_| d.err("zstd level out of range"))?;
                }
                6 => cfg.pack_target = d.u64()?,
                7 => {
                    for _ in 0..d.array()? {
                        cfg.private_globs.push(d.text()?.to_owned());
                    }
                }
                8 => cfg.private_small_file_max = d.u64()?,
                _ => return Err(d.err("unknown config field")),
            }
        }
        d.finish()?;
        if cfg.version != 1 {
            return Err(d.err("unsupported config version"));
        }
        if cfg.groups.is_empty() {
            return Err(d.err("no dedup group"));
        }
        if !(1..=22).contains(&cfg.zstd_level) && cfg.zstd_level != 0 {
            return Err(d.err("zstd level out of range"));
        }
        if !(1 << 20..=256 << 20).contains(&cfg.pack_target) {
            return Err(d.err("pack target out of range"));
        }
        cfg.chunker
            .validate()
            .map_err(|_| d.err("chunker parameters out of bounds"))?;
        Ok(cfg)
    }

    /// The signed file bytes.
    pub fn to_file(&self, signer: &SigningKey) -> Vec<u8> {
        let body = self.encode_body();
        let sig = signer.sign(&Self::message(&body));
        let mut f = Vec::with_capacity(body.len() + 76);
        f.extend_from_slice(MAGIC);
        f.extend_from_slice(&(body.len() as u32).to_le_bytes());
        f.extend_from_slice(&body);
        f.extend_from_slice(&sig.to_bytes());
        f.extend_from_slice(SIG_TAG);
        f
    }

    fn message(body: &[u8]) -> Vec<u8> {
        let mut m = b"SIG1config".to_vec();
        m.extend_from_slice(blake3::hash(body).as_bytes());
        m
    }

    /// Parses the file and checks its signature against the key it names. The caller must
    /// then check that `admin_pub` is the key it trusts (see [`Config::check_admin`]).
    pub fn from_file(f: &[u8]) -> Result<Self> {
        let bad = |r: &str| Error::corrupt("config", "config", r);
        if f.len() < 8 + 68 || &f[..4] != MAGIC || &f[f.len() - 4..] != SIG_TAG {
            return Err(bad("not a cairn config (bad magic or too short)"));
        }
        let len = u32::from_le_bytes([f[4], f[5], f[6], f[7]]) as usize;
        if len != f.len() - 8 - 68 {
            return Err(bad("length field does not match the file size"));
        }
        let body = &f[8..8 + len];
        let cfg = Self::decode_body(body).map_err(|e| bad(&e.to_string()))?;
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&f[8 + len..8 + len + 64]);
        let vk = VerifyingKey::from_bytes(&cfg.admin_pub)
            .map_err(|_| bad("admin public key invalid"))?;
        vk.verify_strict(&Self::message(body), &Signature::from_bytes(&sig))
            .map_err(|_| bad("admin signature invalid"))?;
        Ok(cfg)
    }

    /// Fails unless the config was signed by `trusted` (the key pinned by the key file).
    pub fn check_admin(&self, trusted: &VerifyingKey) -> Result<()> {
        if trusted.as_bytes() != &self.admin_pub {
            return Err(Error::corrupt(
                "config",
                "config",
                "signed by another admin key than the one this key file trusts",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    pub(crate) fn sample(signer: &SigningKey) -> Config {
        Config {
            version: 1,
            repo_id: Id16([1; 16]),
            admin_pub: signer.verifying_key().to_bytes(),
            groups: vec![GroupRef {
                id: Id16([2; 16]),
                epoch: 1,
            }],
            chunker: ChunkerParams::default(),
            zstd_level: 3,
            pack_target: 16 << 20,
            private_globs: vec!["/etc/**".into()],
            private_small_file_max: 65536,
        }
    }

    #[test]
    fn signed_round_trip_and_tamper() {
        let sk = SigningKey::from_bytes(&[3; 32]);
        let cfg = sample(&sk);
        let f = cfg.to_file(&sk);
        assert_eq!(Config::from_file(&f).unwrap(), cfg);
        cfg.check_admin(&sk.verifying_key()).unwrap();
        let other = SigningKey::from_bytes(&[4; 32]);
        assert!(cfg.check_admin(&other.verifying_key()).is_err());
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 1;
            assert!(Config::from_file(&g).is_err(), "byte {i}");
        }
    }
}
