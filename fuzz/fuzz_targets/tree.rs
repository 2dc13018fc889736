#![no_main]
//! Trees: decode, and any tree that decodes must survive a canonical round trip.

use cairn_core::tree::Tree;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = Tree::decode(data) else {
        return;
    };
    let enc = t.encode();
    let again = Tree::decode(&enc).expect("re-decode of encoded tree");
    assert_eq!(again, t, "tree round trip");
    assert_eq!(again.encode(), enc, "tree encoding is not stable");
});
