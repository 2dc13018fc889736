#![no_main]
//! Sweep records: decode, and any record that decodes must survive a round trip.

use cairn_core::prune::plan::SweepRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = SweepRecord::decode(data) else {
        return;
    };
    let enc = r.encode();
    let again = SweepRecord::decode(&enc).expect("re-decode of encoded sweep record");
    assert_eq!(again, r, "sweep record round trip");
    assert_eq!(again.encode(), enc, "sweep record encoding is not stable");
});
