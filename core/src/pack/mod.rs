//! Packs (`docs/format.md`, "Packs"): sealed blobs concatenated, random padding, a sealed
//! header listing them, the header's length and a magic.
//!
//! ```text
//! pack = S_1 || ... || S_n || pad || H || len(H) u32 LE || "PAK1"
//! ```
//! The header is at the end so a pack is written as a stream and its header read with one
//! ranged request. Group data, private data and trees are never mixed in one pack, so the
//! small tree packs can be cached and read whole.

pub mod header;
pub mod reader;
pub mod writer;

pub use header::{PackEntry, PackHeader, PackKind};

/// Trailer magic.
pub const MAGIC: &[u8; 4] = b"PAK1";
/// Bytes after the header: its length and the magic.
pub const TRAILER_LEN: u64 = 8;
/// Largest header accepted (about 100k blobs): checked before allocating.
pub const MAX_HEADER_LEN: u64 = 16 << 20;

/// Padmé: the padded length of `len` (Nikitin et al., PETS 2019). Leaks O(log log len) bits of
/// the length and costs at most 12% (about 1% for 16 MiB packs, where it matters).
pub fn padme(len: u64) -> u64 {
    if len < 2 {
        return len;
    }
    let e = 63 - u64::from(len.leading_zeros()); // floor(log2 len)
    let s = 64 - u64::from(e.leading_zeros()); // floor(log2 e) + 1
    let last_bits = e - s;
    let mask = (1u64 << last_bits) - 1;
    (len + mask) & !mask
}

#[cfg(test)]
mod tests {
    use super::padme;

    #[test]
    fn padme_bounds() {
        for len in [
            0u64,
            1,
            2,
            9,
            100,
            1000,
            1 << 20,
            (16 << 20) + 12345,
            123_456_789,
        ] {
            let p = padme(len);
            assert!(p >= len && p - len <= len / 8 + 1, "{len} -> {p}");
        }
        assert_eq!(padme(16 << 20), 16 << 20);
    }
}
