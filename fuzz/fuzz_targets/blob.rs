#![no_main]
//! Sealed blobs and the codec layer under them.
//!
//! Input: one mode byte, then the bytes. Mode bit 0 clear: a sealed blob `S`, opened with the
//! seed key and then decoded. Set: `codec || body` fed straight to `compress::decode`, since
//! the fuzzer cannot forge the AEAD to reach the zstd decoder through `open`. Bits 1-2 pick
//! the output bound. The in-place opener and the reusing decoder restore uses must agree
//! with these.

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
        let opened = blob::open(&cairn_fuzz::CK, &cairn_fuzz::blob_aad(), rest);
        // Opening in place (restore) must agree with opening into a new buffer.
        let mut stored = rest.to_vec();
        let in_place = blob::open_in_place(&cairn_fuzz::CK, &cairn_fuzz::blob_aad(), &mut stored);
        assert_eq!(opened.as_deref().ok(), in_place.ok(), "in-place open differs");
        match opened {
            Ok(c) => c,
            Err(_) => return,
        }
    } else {
        rest.to_vec()
    };
    let decoded = compress::decode(&c, max);
    if let Ok(plain) = &decoded {
        assert!(plain.len() <= max, "decode exceeded its bound");
    }
    // A reused scratch buffer (restore keeps one per worker) holds more capacity than the
    // bound: the bound must still hold, and the result must be decode's.
    let mut scratch = Vec::with_capacity(2 << 20);
    let with = compress::decode_with(&c, max, &mut scratch);
    if let Ok(plain) = with {
        assert!(plain.len() <= max, "decode_with exceeded its bound");
    }
    assert_eq!(with.ok(), decoded.as_deref().ok(), "decode_with differs from decode");
});
