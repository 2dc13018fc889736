//! Content-defined chunking: FastCDC 2020 with a secret Gear table (design/crypto.md §4).
//!
//! The scan itself is the pinned `fastcdc` crate's [`fastcdc::v2020::cut_gear`]; this module
//! supplies what the crate cannot: a Gear table expanded from `K_chunk` (the crate's own keying
//! is a single XORed 64-bit seed, which design §4.2 rejects), parameter validation (the crate only
//! `debug_assert!`s its bounds), and a bounded streaming driver ([`Chunker`]).
//!
//! Cut points are a repository format constant: changing the table derivation, the mask
//! selection or the crate version changes every chunk id and breaks deduplication. The golden
//! vectors in this module's tests pin them.

use std::fmt;

use fastcdc::v2020::{self, Normalization};
use zeroize::Zeroize;

mod driver;
#[cfg(test)]
mod reference;

pub use driver::Chunker;

/// Domain string of the Gear table expansion; part of the repository format.
const GEAR_CONTEXT: &[u8] = b"gear-table-v1";

/// Chunk size parameters. They are repository constants (stored in the signed config): any
/// change alters the cut points and so breaks deduplication against existing data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerParams {
    /// Smallest chunk, in bytes (only the last chunk of a stream may be shorter).
    pub min: u32,
    /// Target average chunk size, in bytes; must be a power of two.
    pub avg: u32,
    /// Largest chunk, in bytes.
    pub max: u32,
    /// FastCDC normalization level, 1 to 3.
    pub level: u8,
}

impl Default for ChunkerParams {
    /// 512 KiB / 1 MiB / 8 MiB, level 2 (design/crypto.md §4.1).
    fn default() -> Self {
        Self {
            min: 512 * 1024,
            avg: 1024 * 1024,
            max: 8 * 1024 * 1024,
            level: 2,
        }
    }
}

/// Chunker parameters the `fastcdc` crate would not handle correctly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkerError {
    /// A size is outside the range the crate supports.
    #[error("chunker {field} size {value} is outside {low}..={high}")]
    SizeOutOfBounds {
        /// Which size: "min", "avg" or "max".
        field: &'static str,
        /// The rejected value.
        value: u32,
        /// Smallest accepted value.
        low: usize,
        /// Largest accepted value.
        high: usize,
    },
    /// The sizes are not strictly increasing.
    #[error("chunker sizes must satisfy min < avg < max (got {min} / {avg} / {max})")]
    NotIncreasing {
        /// The minimum size.
        min: u32,
        /// The average size.
        avg: u32,
        /// The maximum size.
        max: u32,
    },
    /// The average size is not a power of two.
    #[error("chunker avg size {0} is not a power of two")]
    AvgNotPowerOfTwo(u32),
    /// A size is odd; the crate scans byte pairs and would shift the boundary by one byte.
    #[error("chunker {field} size {value} is odd")]
    OddSize {
        /// Which size: "min" or "max".
        field: &'static str,
        /// The rejected value.
        value: u32,
    },
    /// The normalization level is not 1, 2 or 3.
    #[error("chunker normalization level {0} is not 1, 2 or 3")]
    BadLevel(u8),
}

impl ChunkerParams {
    /// Checks the parameters against the `fastcdc` crate's limits and our own rules.
    ///
    /// The crate only `debug_assert!`s these, so in release builds bad values would silently
    /// produce wrong (or, for the mask index, panicking) chunking.
    pub fn validate(&self) -> Result<(), ChunkerError> {
        let ranges = [
            ("min", self.min, v2020::MINIMUM_MIN, v2020::MINIMUM_MAX),
            ("avg", self.avg, v2020::AVERAGE_MIN, v2020::AVERAGE_MAX),
            ("max", self.max, v2020::MAXIMUM_MIN, v2020::MAXIMUM_MAX),
        ];
        for (field, value, low, high) in ranges {
            if !(low..=high).contains(&(value as usize)) {
                return Err(ChunkerError::SizeOutOfBounds {
                    field,
                    value,
                    low,
                    high,
                });
            }
        }
        if !(self.min < self.avg && self.avg < self.max) {
            return Err(ChunkerError::NotIncreasing {
                min: self.min,
                avg: self.avg,
                max: self.max,
            });
        }
        // fastcdc 4.0.0 changed cut points for non-power-of-two averages and 4.0.1 restored
        // them (design §4.1); powers of two keep us clear of that rounding code entirely.
        if !self.avg.is_power_of_two() {
            return Err(ChunkerError::AvgNotPowerOfTwo(self.avg));
        }
        // fastcdc issue #52: odd sizes are halved with truncation in the pair scan.
        for (field, value) in [("min", self.min), ("max", self.max)] {
            if value % 2 != 0 {
                return Err(ChunkerError::OddSize { field, value });
            }
        }
        if !(1..=3).contains(&self.level) {
            return Err(ChunkerError::BadLevel(self.level));
        }
        Ok(())
    }

    /// Validates and precomputes the masks.
    pub(crate) fn resolve(&self) -> Result<Resolved, ChunkerError> {
        self.validate()?;
        let level = match self.level {
            1 => Normalization::Level1,
            2 => Normalization::Level2,
            _ => Normalization::Level3,
        };
        // `select_masks` is exactly what the crate's own constructors call:
        // bits = round(log2(avg)); mask_s = MASKS[bits + level]; mask_l = MASKS[bits - level].
        // The `_ls` variants are the masks shifted left by one, as in the crate's constructor.
        let (mask_s, mask_l) = v2020::select_masks(self.avg as usize, level);
        Ok(Resolved {
            min: self.min as usize,
            avg: self.avg as usize,
            max: self.max as usize,
            mask_s,
            mask_l,
            mask_s_ls: mask_s << 1,
            mask_l_ls: mask_l << 1,
        })
    }
}

/// Validated parameters in the form `cut_gear` takes them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolved {
    pub(crate) min: usize,
    pub(crate) avg: usize,
    pub(crate) max: usize,
    mask_s: u64,
    mask_l: u64,
    mask_s_ls: u64,
    mask_l_ls: u64,
}

impl Resolved {
    /// Length of the chunk that starts at `window[0]`.
    ///
    /// `window` must hold at least `max` bytes unless it is the end of the stream: `cut_gear`
    /// shortens the normalization region when given less than `avg` bytes, so a partial window
    /// would give a different cut. Returns 0 only for an empty window.
    pub(crate) fn cut_len(&self, gear: &GearTable, window: &[u8]) -> usize {
        let (_hash, len) = v2020::cut_gear(
            window,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s_ls,
            self.mask_l_ls,
            &gear.gear[..],
            &gear.gear_ls[..],
        );
        len
    }
}

/// The secret Gear table (and its left-shifted twin) expanded from `K_chunk`.
///
/// Knowing it lets an observer of chunk sizes fingerprint content, so it has no `Debug` output
/// beyond a placeholder and is wiped on drop.
pub struct GearTable {
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
}

impl GearTable {
    /// Expands `K_chunk` into the table:
    /// `gear[i] = u64::from_le_bytes(XOF[8i..8i+8])`, where XOF is keyed BLAKE3 of
    /// `"gear-table-v1"`, and `gear_ls[i] = gear[i] << 1` (the crate's static `GEAR_LS` is
    /// exactly its `GEAR << 1`).
    pub fn from_key(k_chunk: &[u8; 32]) -> Self {
        let mut xof = [0u8; 2048];
        blake3::Hasher::new_keyed(k_chunk)
            .update(GEAR_CONTEXT)
            .finalize_xof()
            .fill(&mut xof);
        let mut gear = Box::new([0u64; 256]);
        let mut gear_ls = Box::new([0u64; 256]);
        for (i, word) in xof.chunks_exact(8).enumerate() {
            let mut le = [0u8; 8];
            le.copy_from_slice(word);
            gear[i] = u64::from_le_bytes(le);
            gear_ls[i] = gear[i] << 1;
            le.zeroize();
        }
        xof.zeroize();
        Self { gear, gear_ls }
    }

    /// The table itself, for the reference chunker.
    #[cfg(test)]
    pub(crate) fn gear(&self) -> &[u64; 256] {
        &self.gear
    }
}

impl Drop for GearTable {
    fn drop(&mut self) {
        self.gear.zeroize();
        self.gear_ls.zeroize();
    }
}

impl fmt::Debug for GearTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GearTable(<secret>)")
    }
}

/// End offsets of the chunks of `data` (the last one is `data.len()`; none for empty data).
///
/// Same cut points as [`Chunker`] over a reader of `data`; used by tests and tools that already
/// hold the whole input in memory.
pub fn cut_points(
    data: &[u8],
    gear: &GearTable,
    params: &ChunkerParams,
) -> Result<Vec<usize>, ChunkerError> {
    let resolved = params.resolve()?;
    let mut ends = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let len = resolved.cut_len(gear, &data[pos..]);
        // cut_gear returns 0 only for an empty window; never loop forever on a broken contract.
        if len == 0 {
            debug_assert!(false, "cut_gear made no progress");
            break;
        }
        pos += len;
        ends.push(pos);
    }
    Ok(ends)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// Deterministic test bytes: the BLAKE3 XOF of `seed`. Stable across platforms and crate
    /// versions, unlike `StdRng`.
    pub(crate) fn xof_bytes(seed: &[u8], len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        blake3::Hasher::new()
            .update(seed)
            .finalize_xof()
            .fill(&mut out);
        out
    }

    pub(crate) const SMALL: ChunkerParams = ChunkerParams {
        min: 64,
        avg: 256,
        max: 1024,
        level: 2,
    };

    pub(crate) const MID: ChunkerParams = ChunkerParams {
        min: 4096,
        avg: 16384,
        max: 65536,
        level: 2,
    };

    const GOLDEN_KEY: [u8; 32] = [0x42; 32];

    /// Design test C-1: default parameters, `K_chunk = [0x42; 32]`, 64 MiB of
    /// `BLAKE3-XOF("cairn chunker golden v1")`. If this fails after a dependency upgrade, the
    /// upgrade changed the cut points and must not ship.
    const GOLDEN_DEFAULT: &[usize] = &[
        1432555, 2724216, 3840440, 5205512, 6359859, 7465331, 8589593, 10009526, 11066723,
        12122340, 13867814, 15052512, 16103722, 17326487, 18627128, 19851373, 20502593, 21651111,
        23388365, 25223862, 26296688, 27351379, 28923611, 30321707, 31448562, 32511718, 33596418,
        34929682, 36330925, 37536654, 38817626, 39620220, 40848260, 41904286, 44575408, 45833040,
        47118663, 48574280, 49545343, 50619316, 51443998, 52689966, 53983487, 55191928, 56466079,
        57559392, 59180514, 60024081, 61166276, 62308199, 63128478, 64804862, 66011602, 67108864,
    ];

    /// Same key, `MID` parameters, first 1 MiB of the same input: exercises more cuts per byte.
    const GOLDEN_MID: &[usize] = &[
        9047, 25740, 45677, 55480, 72383, 90094, 109964, 126882, 135500, 152703, 171617, 189431,
        215298, 256632, 279375, 295922, 323214, 345539, 363473, 402501, 415734, 435591, 477298,
        493991, 511403, 527417, 552944, 576459, 604129, 639587, 649480, 660722, 669671, 691043,
        707529, 742511, 761758, 782206, 799629, 821712, 845870, 876448, 894372, 911885, 931185,
        951449, 974969, 979468, 998046, 1018930, 1025579, 1030967, 1048082, 1048576,
    ];

    fn golden_input() -> Vec<u8> {
        xof_bytes(b"cairn chunker golden v1", 64 << 20)
    }

    #[test]
    fn golden_cut_points_default_params() {
        let gear = GearTable::from_key(&GOLDEN_KEY);
        // Pin the table expansion separately so a failure says which half broke.
        assert_eq!(gear.gear()[0], 0x4329_e0a2_b2e5_5872);
        let data = golden_input();
        let cuts = cut_points(&data, &gear, &ChunkerParams::default()).unwrap();
        let mid = cut_points(&data[..1 << 20], &gear, &MID).unwrap();
        assert_eq!(cuts, GOLDEN_DEFAULT);
        assert_eq!(mid, GOLDEN_MID);
    }

    #[test]
    fn masks_follow_the_crate_constructor() {
        let r = ChunkerParams::default().resolve().unwrap();
        // avg 1 MiB → bits 20, level 2.
        assert_eq!(r.mask_s, v2020::MASKS[22]);
        assert_eq!(r.mask_l, v2020::MASKS[18]);
        assert_eq!(r.mask_s_ls, v2020::MASKS[22] << 1);
        assert_eq!(r.mask_l_ls, v2020::MASKS[18] << 1);
    }

    #[test]
    fn gear_ls_is_gear_shifted() {
        let gear = GearTable::from_key(&[7; 32]);
        for i in 0..256 {
            assert_eq!(gear.gear_ls[i], gear.gear[i] << 1);
        }
        assert_eq!(format!("{gear:?}"), "GearTable(<secret>)");
    }

    #[test]
    fn different_keys_cut_differently() {
        let data = xof_bytes(b"keys", 1 << 20);
        let a = cut_points(&data, &GearTable::from_key(&[1; 32]), &MID).unwrap();
        let b = cut_points(&data, &GearTable::from_key(&[2; 32]), &MID).unwrap();
        assert_ne!(a, b);
        // Not just shifted a little: most cut points differ.
        let common = a.iter().filter(|c| b.contains(c)).count();
        assert!(common * 4 < a.len(), "{common} of {} cuts shared", a.len());
    }

    #[test]
    fn sizes_stay_within_bounds() {
        let gear = GearTable::from_key(&[3; 32]);
        for params in [SMALL, MID] {
            for level in 1..=3 {
                let params = ChunkerParams { level, ..params };
                let data = xof_bytes(&[level], 1 << 20);
                let cuts = cut_points(&data, &gear, &params).unwrap();
                assert_eq!(cuts.last(), Some(&data.len()));
                let mut start = 0;
                for (i, &end) in cuts.iter().enumerate() {
                    let len = end - start;
                    assert!(len <= params.max as usize);
                    if i + 1 < cuts.len() {
                        assert!(len >= params.min as usize, "chunk {i} has {len} bytes");
                    }
                    start = end;
                }
            }
        }
        // Data without any cut point (all zeroes under this key) falls back to max-size chunks.
        let zeros = vec![0u8; 10_000];
        let cuts = cut_points(&zeros, &gear, &SMALL).unwrap();
        assert!(cuts.windows(2).all(|w| w[1] - w[0] <= 1024));
        assert!(cut_points(&[], &gear, &SMALL).unwrap().is_empty());
    }

    #[test]
    fn validate_rejects_bad_params() {
        let ok = ChunkerParams::default();
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(SMALL.validate(), Ok(()));
        assert_eq!(MID.validate(), Ok(()));
        let bad = [
            ChunkerParams { min: 32, ..SMALL },
            ChunkerParams { min: 2 << 20, ..ok },
            ChunkerParams { avg: 128, ..SMALL },
            ChunkerParams {
                avg: 8 << 20,
                max: 16 << 20,
                ..ok
            },
            ChunkerParams { max: 512, ..SMALL },
            ChunkerParams {
                max: 32 << 20,
                ..ok
            },
            ChunkerParams { min: 256, ..SMALL },
            ChunkerParams { max: 256, ..SMALL },
            ChunkerParams { avg: 300, ..SMALL },
            ChunkerParams { min: 65, ..SMALL },
            ChunkerParams { max: 1025, ..SMALL },
            ChunkerParams { level: 0, ..ok },
            ChunkerParams { level: 4, ..ok },
        ];
        for p in bad {
            assert!(p.validate().is_err(), "{p:?} accepted");
            assert!(cut_points(b"x", &GearTable::from_key(&[0; 32]), &p).is_err());
        }
    }
}
