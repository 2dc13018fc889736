//! A slow, byte-at-a-time FastCDC 2020 chunker written from the algorithm, independent of
//! `fastcdc::v2020::cut_gear`: the differential twin that keeps the fast path honest.
//!
//! It derives its masks itself (`bits = log2(avg)` from the power of two, `MASKS[bits ± level]`)
//! and uses only `gear`, never `gear_ls`: the crate's "two bytes per step" trick keeps the hash
//! shifted left by one on even bytes and tests it against `mask << 1`, which is the same test as
//! `h & mask == 0` on the plain hash because no mask uses bit 63.

use fastcdc::v2020::MASKS;

use super::{ChunkerParams, GearTable};

/// Length of the chunk starting at `src[0]`, one byte at a time.
///
/// Conventions of the crate that this reproduces on purpose (they are part of the cut points):
/// - the hash starts at zero at offset `min` (sub-minimum skipping);
/// - the strict mask applies to offsets below `avg`, or below the window length when the
///   window is shorter than `avg` (only at the end of the stream);
/// - when the hash after byte `i` matches, the chunk is `src[..i]`: the matching byte starts
///   the next chunk;
/// - the last byte of an odd-length window is never a candidate (bytes are scanned in pairs);
///   the window is odd only at the end of the stream since `max` is even.
fn reference_cut(src: &[u8], params: &ChunkerParams, gear: &[u64; 256]) -> usize {
    let min = params.min as usize;
    let avg = params.avg as usize;
    let max = params.max as usize;
    let bits = params.avg.trailing_zeros() as usize;
    let level = params.level as usize;
    let mask_s = MASKS[bits + level];
    let mask_l = MASKS[bits - level];

    if src.len() <= min {
        return src.len();
    }
    let n = src.len().min(max);
    let center = avg.min(n);
    let mut hash: u64 = 0;
    for (i, &byte) in src.iter().enumerate().take(n & !1).skip(min) {
        hash = (hash << 1).wrapping_add(gear[byte as usize]);
        let mask = if i < center { mask_s } else { mask_l };
        if hash & mask == 0 {
            return i;
        }
    }
    n
}

/// Chunk end offsets of `data`, like [`super::cut_points`].
pub(crate) fn reference_cut_points(
    data: &[u8],
    gear: &GearTable,
    params: &ChunkerParams,
) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        pos += reference_cut(&data[pos..], params, gear.gear());
        ends.push(pos);
    }
    ends
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::super::tests::{xof_bytes, MID, SMALL};
    use super::super::{cut_points, Chunker};
    use super::*;

    fn all_small_params() -> Vec<ChunkerParams> {
        let mut out = Vec::new();
        for base in [SMALL, MID] {
            for level in 1..=3 {
                out.push(ChunkerParams { level, ..base });
            }
        }
        // Uneven ratios: min close to avg, max far away, and the other way round.
        out.push(ChunkerParams {
            min: 1000,
            avg: 1024,
            max: 100_000,
            level: 3,
        });
        out.push(ChunkerParams {
            min: 64,
            avg: 4096,
            max: 4098,
            level: 1,
        });
        out
    }

    #[test]
    fn fast_matches_reference_on_random_inputs() {
        for key in [[0u8; 32], [1; 32], [0xa5; 32], [0xff; 32]] {
            let gear = GearTable::from_key(&key);
            for params in all_small_params() {
                // Odd and even lengths, and a tail shorter than avg.
                for len in [0, 1, 63, 64, 65, 300, 4097, 200_001, 200_000] {
                    let data = xof_bytes(&[key[0], params.level, (len % 251) as u8], len);
                    assert_eq!(
                        cut_points(&data, &gear, &params).unwrap(),
                        reference_cut_points(&data, &gear, &params),
                        "key {:x} params {params:?} len {len}",
                        key[0]
                    );
                }
            }
        }
    }

    #[test]
    fn fast_matches_reference_on_low_entropy_inputs() {
        let gear = GearTable::from_key(&[0x11; 32]);
        let noise = xof_bytes(b"low", 100_000);
        // Few distinct byte values: long runs without cuts and max-size fallbacks.
        let inputs: [Vec<u8>; 3] = [
            vec![0; 100_000],
            noise.iter().map(|b| b & 1).collect(),
            (0..100_000u32).map(|i| (i % 7) as u8).collect(),
        ];
        for data in inputs {
            for params in all_small_params() {
                assert_eq!(
                    cut_points(&data, &gear, &params).unwrap(),
                    reference_cut_points(&data, &gear, &params)
                );
            }
        }
    }

    #[test]
    fn reference_matches_default_params() {
        let gear = GearTable::from_key(&[0x42; 32]);
        let data = xof_bytes(b"reference default", 24 << 20);
        let params = ChunkerParams::default();
        assert_eq!(
            cut_points(&data, &gear, &params).unwrap(),
            reference_cut_points(&data, &gear, &params)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn prop_fast_equals_reference(
            data in proptest::collection::vec(any::<u8>(), 0..20_000),
            key in any::<[u8; 32]>(),
            level in 1u8..=3,
        ) {
            let gear = GearTable::from_key(&key);
            let params = ChunkerParams { level, ..SMALL };
            prop_assert_eq!(
                cut_points(&data, &gear, &params).unwrap(),
                reference_cut_points(&data, &gear, &params)
            );
        }

        #[test]
        fn prop_chunks_concatenate_to_input(
            data in proptest::collection::vec(any::<u8>(), 0..40_000),
            key in any::<[u8; 32]>(),
        ) {
            let gear = Arc::new(GearTable::from_key(&key));
            let chunks: Vec<Vec<u8>> = Chunker::new(&data[..], gear, &SMALL)
                .unwrap()
                .collect::<std::io::Result<_>>()
                .unwrap();
            prop_assert!(chunks.iter().all(|c| !c.is_empty()));
            prop_assert_eq!(chunks.concat(), data);
        }

        #[test]
        fn prop_boundaries_resynchronise_after_insert(
            seed in any::<u64>(),
            insert in proptest::collection::vec(any::<u8>(), 1..16),
            at in 20_000usize..40_000,
        ) {
            let gear = GearTable::from_key(&[0x42; 32]);
            let data = xof_bytes(&seed.to_le_bytes(), 64 * 1024);
            let mut edited = data[..at].to_vec();
            edited.extend_from_slice(&insert);
            edited.extend_from_slice(&data[at..]);

            let before = cut_points(&data, &gear, &SMALL).unwrap();
            let after: Vec<usize> = cut_points(&edited, &gear, &SMALL)
                .unwrap()
                .into_iter()
                .map(|c| c - insert.len())
                .filter(|&c| c > at)
                .collect();
            let before: Vec<usize> = before.into_iter().filter(|&c| c > at).collect();
            // Once both streams share a cut point past the edit, they chunk identically.
            let sync = before.iter().position(|c| after.contains(c));
            prop_assert!(sync.is_some(), "never resynchronised");
            let sync = sync.unwrap();
            prop_assert!(before[sync] < at + 8 * SMALL.max as usize, "resync too late");
            // From the first shared cut on, the two streams must cut identically.
            let a_sync = after.iter().position(|c| *c == before[sync]).unwrap();
            prop_assert_eq!(&before[sync..], &after[a_sync..]);
        }
    }
}
