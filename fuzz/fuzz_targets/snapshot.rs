#![no_main]
//! Snapshot payloads: decode, and any snapshot that decodes must survive a round trip.

use cairn_core::snapshot::Snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = Snapshot::decode(data) else {
        return;
    };
    let enc = s.encode();
    let again = Snapshot::decode(&enc).expect("re-decode of encoded snapshot");
    assert_eq!(again, s, "snapshot round trip");
    assert_eq!(again.encode(), enc, "snapshot encoding is not stable");
    let _ = s.datetime();
});
