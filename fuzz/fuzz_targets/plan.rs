#![no_main]
//! Prune plans: decode, and any plan that decodes must survive a round trip (its
//! answers to `pack` and `condemns` rely on the sorted order decode enforces).

use cairn_core::prune::plan::Plan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Plan::decode(data) else {
        return;
    };
    let enc = p.encode();
    let again = Plan::decode(&enc).expect("re-decode of encoded plan");
    assert_eq!(again, p, "plan round trip");
    assert_eq!(again.encode(), enc, "plan encoding is not stable");
    for cp in &p.packs {
        assert!(
            p.pack(&cp.pack.name).is_some(),
            "a listed pack is not found"
        );
        for id in &cp.ids {
            assert!(
                p.condemns(&cp.pack.name, id),
                "a listed blob is not condemned"
            );
        }
    }
});
