#![no_main]
//! Trees: decode, and any tree that decodes must survive a canonical round trip; every
//! content entry must take its part of a blob of any length without panicking.

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
    // A hostile tree's slice may point anywhere: the part is inside the blob or refused.
    let blob = &data[..data.len().min(4096)];
    for c in t.nodes.iter().flat_map(|n| &n.content) {
        if let Some(p) = c.part(blob) {
            assert_eq!(p.len(), c.plen as usize, "part of the wrong length");
        }
    }
});
