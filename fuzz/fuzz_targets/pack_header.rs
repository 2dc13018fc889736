#![no_main]
//! Pack trailers and headers.
//!
//! Input: one mode byte, then the bytes. Mode bit 0 clear: the bytes are a whole pack (or
//! its tail, for the other lengths tried); the header is located, opened and decoded as a
//! reader would. Set: an 8-byte LE data length, then a header plaintext for `PackHeader::decode`.

use cairn_core::crypto::sealed::{self, FileType};
use cairn_core::pack::reader::{decode_header, locate_header};
use cairn_core::pack::PackHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let n = rest.len() as u64;
        for pack_len in [
            0,
            7,
            8,
            n.saturating_sub(1),
            n + 1,
            n + (64 << 10),
            u64::MAX,
        ] {
            if let Ok((off, hlen)) = locate_header(rest, pack_len) {
                assert!(
                    off + hlen + 8 == pack_len,
                    "header does not end at the trailer"
                );
            }
        }
        let Ok((off, hlen)) = locate_header(rest, n) else {
            return;
        };
        // pack_len == rest.len(), so the header lies inside `rest`.
        let sealed_hdr = &rest[off as usize..(off + hlen) as usize];
        let key = cairn_fuzz::scope_key();
        let mut exp = cairn_fuzz::expect(FileType::GroupPackHeader);
        exp.writer_id = None;
        if let Ok((_, plain)) = sealed::open(&key, &exp, sealed_hdr) {
            if let Ok(h) = decode_header(&plain, off) {
                check(&h, off);
            }
        }
    } else {
        let Some((len, plain)) = rest.split_first_chunk::<8>() else {
            return;
        };
        let data_len = u64::from_le_bytes(*len);
        if let Ok(h) = PackHeader::decode(plain, data_len) {
            check(&h, data_len);
        }
    }
});

fn check(h: &PackHeader, data_len: u64) {
    let again = PackHeader::decode(&h.encode(), data_len).expect("re-decode of encoded header");
    assert_eq!(&again, h, "pack header round trip");
    let end = h.entries.last().map_or(0, |e| e.offset + u64::from(e.slen));
    assert_eq!(end + h.pad_len, data_len, "blobs and padding fill the pack");
}
