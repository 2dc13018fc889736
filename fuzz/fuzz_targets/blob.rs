#![no_main]
//! Sealed blobs and the codec layer under them.
//!
//! Input: one mode byte, then the bytes. Mode bit 0 clear: a sealed blob `S`, opened with the
//! seed key and then decoded. Set: `codec || body` fed straight to `compress::decode`, since
//! the fuzzer cannot forge the AEAD to reach the zstd decoder through `open`. Bits 1-2 pick
//! the output bound.

use cairn_core::compress;
use cairn_core::crypto::blob;
use libfuzzer_sys::fuzz_target;

const MAX: [usize; 4] = [0, 64, 4096, 1 << 20];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let max = MAX[usize::from((mode >> 1) & 3)];
    let c = if mode & 1 == 0 {
        match blob::open(&cairn_fuzz::CK, &cairn_fuzz::blob_aad(), rest) {
            Ok(c) => c,
            Err(_) => return,
        }
    } else {
        rest.to_vec()
    };
    if let Ok(plain) = compress::decode(&c, max) {
        assert!(plain.len() <= max, "decode exceeded its bound");
    }
});
