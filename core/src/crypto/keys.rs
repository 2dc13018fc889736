//! The key hierarchy (`docs/format.md`, "Keys"): everything derives from the admin secret A
//! with `blake3::derive_key` under fixed context strings, so the admin never stores host or
//! group secrets ("escrow by derivation") and a lost machine costs nothing but its key file.

use super::secret::Key32;
use crate::id::Id16;

/// Context strings, format constants. Changing one changes every id and key of a repository.
pub mod ctx {
    /// Admin-only sealed files.
    pub const ADMIN_SEAL: &str = "cairn repo-v1 admin seal";
    /// Seed of the Ed25519 signing key of the admin.
    pub const ADMIN_ED25519: &str = "cairn repo-v1 admin ed25519";
    /// Root of host secrets.
    pub const HOST_ROOT: &str = "cairn repo-v1 host root";
    /// Root of group secrets.
    pub const GROUP_ROOT: &str = "cairn repo-v1 group root";
    /// Group data blob ids.
    pub const DATA_ID: &str = "cairn repo-v1 data id";
    /// Group convergent content keys.
    pub const DATA_CONV: &str = "cairn repo-v1 data conv";
    /// Secret Gear table of the chunker.
    pub const CHUNKER_GEAR: &str = "cairn repo-v1 chunker gear";
    /// Group-sealed files (shared index, data-pack headers).
    pub const SHARED_SEAL: &str = "cairn repo-v1 shared seal";
    /// Host-sealed files (snapshots, tree index, host pack headers).
    pub const HOST_SEAL: &str = "cairn repo-v1 host seal";
    /// Tree ids.
    pub const TREE_ID: &str = "cairn repo-v1 tree id";
    /// Tree content keys.
    pub const TREE_KEY: &str = "cairn repo-v1 tree key";
    /// Private-scope content keys.
    pub const PRIV_CONV: &str = "cairn repo-v1 priv conv";
    /// Private-scope blob ids.
    pub const PRIV_ID: &str = "cairn repo-v1 priv id";
    /// Per-blob encryption key from a content key.
    pub const BLOB_ENC: &str = "cairn repo-v1 blob enc";
    /// Per-blob synthetic-IV key from a content key.
    pub const BLOB_SIV: &str = "cairn repo-v1 blob siv";
}

/// `DK(ctx, ikm)`.
pub fn dk(context: &'static str, ikm: &[u8]) -> Key32 {
    Key32::from_bytes(blake3::derive_key(context, ikm))
}

/// `KH(k, m)`: keyed BLAKE3.
pub fn kh(k: &Key32, m: &[u8]) -> [u8; 32] {
    *blake3::keyed_hash(k.expose(), m).as_bytes()
}

/// The admin secret A: the root of every key of a repository.
pub struct AdminSecret(Key32);

impl AdminSecret {
    /// A fresh random secret (at `init`).
    pub fn random() -> Self {
        Self(Key32::random())
    }

    /// From stored bytes.
    pub fn from_key(k: Key32) -> Self {
        Self(k)
    }

    /// The raw secret, for the key file only.
    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose()
    }

    /// The key of admin-only sealed files.
    pub fn seal_key(&self) -> Key32 {
        dk(ctx::ADMIN_SEAL, self.0.expose())
    }

    /// The Ed25519 signing key of the admin.
    pub fn signing_key(&self) -> ed25519_dalek::SigningKey {
        let seed = dk(ctx::ADMIN_ED25519, self.0.expose());
        ed25519_dalek::SigningKey::from_bytes(seed.expose())
    }

    /// The secret of host `host_id` at `epoch`.
    pub fn host_keys(&self, host_id: Id16, epoch: u32) -> HostKeys {
        let root = dk(ctx::HOST_ROOT, self.0.expose());
        let mut m = Vec::with_capacity(24);
        m.extend_from_slice(b"host");
        m.extend_from_slice(&host_id.0);
        m.extend_from_slice(&epoch.to_le_bytes());
        HostKeys::derive(host_id, epoch, &Key32::from_bytes(kh(&root, &m)))
    }

    /// The keys of dedup group `group_id` at `epoch`.
    pub fn group_keys(&self, group_id: Id16, epoch: u32) -> GroupKeys {
        let root = dk(ctx::GROUP_ROOT, self.0.expose());
        let mut m = Vec::with_capacity(25);
        m.extend_from_slice(b"group");
        m.extend_from_slice(&group_id.0);
        m.extend_from_slice(&epoch.to_le_bytes());
        GroupKeys::derive(group_id, epoch, &Key32::from_bytes(kh(&root, &m)))
    }
}

/// Keys shared by every host of a dedup group.
pub struct GroupKeys {
    /// The group id.
    pub group_id: Id16,
    /// The group epoch.
    pub epoch: u32,
    /// Blob ids of group data.
    pub k_id: Key32,
    /// Convergent content keys of group data.
    pub k_conv: Key32,
    /// The chunker's secret Gear table key.
    pub k_chunk: Key32,
    /// Group-sealed files.
    pub k_sidx: Key32,
}

impl GroupKeys {
    fn derive(group_id: Id16, epoch: u32, g: &Key32) -> Self {
        let g = g.expose();
        Self {
            group_id,
            epoch,
            k_id: dk(ctx::DATA_ID, g),
            k_conv: dk(ctx::DATA_CONV, g),
            k_chunk: dk(ctx::CHUNKER_GEAR, g),
            k_sidx: dk(ctx::SHARED_SEAL, g),
        }
    }
}

/// Keys private to one host (and the admin, who re-derives them).
pub struct HostKeys {
    /// The host id.
    pub host_id: Id16,
    /// The host epoch.
    pub epoch: u32,
    /// Host-sealed files.
    pub k_meta: Key32,
    /// Tree ids.
    pub k_tid: Key32,
    /// Tree content keys.
    pub k_tkey: Key32,
    /// Private-scope content keys.
    pub k_pconv: Key32,
    /// Private-scope blob ids.
    pub k_pid: Key32,
}

impl HostKeys {
    fn derive(host_id: Id16, epoch: u32, h: &Key32) -> Self {
        let h = h.expose();
        Self {
            host_id,
            epoch,
            k_meta: dk(ctx::HOST_SEAL, h),
            k_tid: dk(ctx::TREE_ID, h),
            k_tkey: dk(ctx::TREE_KEY, h),
            k_pconv: dk(ctx::PRIV_CONV, h),
            k_pid: dk(ctx::PRIV_ID, h),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden derivations for a fixed admin secret: a change here breaks every repository.
    #[test]
    fn golden_derivations() {
        let a = AdminSecret::from_key(Key32::from_bytes([1u8; 32]));
        let g = a.group_keys(Id16([2; 16]), 1);
        let h = a.host_keys(Id16([3; 16]), 1);
        let vk = a.signing_key().verifying_key();
        let got = [
            hex::encode(g.k_id.expose()),
            hex::encode(g.k_conv.expose()),
            hex::encode(g.k_chunk.expose()),
            hex::encode(g.k_sidx.expose()),
            hex::encode(h.k_meta.expose()),
            hex::encode(h.k_tid.expose()),
            hex::encode(h.k_tkey.expose()),
            hex::encode(h.k_pconv.expose()),
            hex::encode(h.k_pid.expose()),
            hex::encode(vk.as_bytes()),
        ];
        assert_eq!(got, GOLDEN.map(str::to_owned));
    }

    const GOLDEN: [&str; 10] = [
        "bce083710ba2066f9727ea3ea3652c19caf002c2ca6da8025920da5c8a82ed50",
        "804959b38f229757c5b60570f1620181a9a4922655ef02030f03b0946a2dac6e",
        "3bd7145e7d061510d04e4fa1864c832d2844bcc4ab7fedd78e6014efd47ca1b5",
        "d8d4263a1ff37eac56ed50c7ad0cdb94090f07c45831fa139cfdbac80d8fde3c",
        "9d2d9648b7a2c68168cb9d72f03f850b94cc463a0ab1750d2f7ba253a27f97aa",
        "fa9cee0f3ead6436adc5874762a8f39f40f0ec99c6019743404bb64644a4db0e",
        "beb6ef68357fe115aa99f264e37bc174322862c82de604c344772b71c0df20b6",
        "7d5e94a23e7c69b13bd99f0e718094a70f6eff5390357d88ea2df5f0e742db2f",
        "c45f6aad6dd9956664ea4434222db59d24c845f5ad31f424cf41af086077fcc5",
        "1031dcb12f75adef1c265deee66e2a2f8797944fda1a6d96c389b899f8a61844",
    ];

    #[test]
    fn epochs_and_ids_separate_keys() {
        let a = AdminSecret::from_key(Key32::from_bytes([1u8; 32]));
        let g1 = a.group_keys(Id16([2; 16]), 1);
        let g2 = a.group_keys(Id16([2; 16]), 2);
        let h = a.host_keys(Id16([2; 16]), 1);
        assert_ne!(g1.k_id.expose(), g2.k_id.expose());
        assert_ne!(g1.k_sidx.expose(), h.k_meta.expose());
    }
}
