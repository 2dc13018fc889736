#![no_main]
//! Sealed files: the plaintext header, then `open` both with a fixed expectation and with
//! one taken from the file's own header (so any header reaches the AEAD), then the payload.

use cairn_core::crypto::sealed::{self, Expect, FileType, SealedHeader, HEADER_LEN};
use cairn_core::snapshot::Snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = cairn_fuzz::scope_key();
    if let Ok(h) = SealedHeader::decode(data) {
        assert_eq!(&h.encode()[..], &data[..HEADER_LEN], "header round trip");
        if let Some(ftype) = cairn_fuzz::file_type(h.ftype) {
            let own = Expect {
                ftype,
                repo_id: h.repo_id,
                writer_id: Some(h.writer_id),
            };
            let _ = sealed::open(&key, &own, data);
        }
    }
    if let Ok((h, plain)) = sealed::open(&key, &cairn_fuzz::expect(FileType::Snapshot), data) {
        assert_eq!(h.ftype, FileType::Snapshot as u8);
        let _ = Snapshot::decode(&plain);
    }
});
