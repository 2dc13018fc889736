#![no_main]
//! Session markers: decode, and any marker that decodes must survive a round trip.

use cairn_core::session::SessionMarker;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = SessionMarker::decode(data) else {
        return;
    };
    let enc = m.encode();
    let again = SessionMarker::decode(&enc).expect("re-decode of encoded session marker");
    assert_eq!(again, m, "session marker round trip");
    assert_eq!(again.encode(), enc, "session marker encoding is not stable");
});
