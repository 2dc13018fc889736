#![no_main]
//! Index file payloads, and the in-memory index built from them.

use cairn_core::index::{IndexFile, MasterIndex};
use cairn_core::Id;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = IndexFile::decode(data) else {
        return;
    };
    let again = IndexFile::decode(&f.encode()).expect("re-decode of encoded index file");
    assert_eq!(again, f, "index file round trip");

    let mut m = MasterIndex::new();
    m.add_file(&f);
    m.add_file(&f); // a second load of the same file adds nothing
    m.finalize();
    let total: usize = f.packs.iter().map(|p| p.entries.len()).sum();
    assert!(m.blob_count() <= total);
    let mut seen = std::collections::HashSet::new();
    for p in &f.packs {
        assert!(m.has_pack(&p.name));
        if !seen.insert(p.name) {
            continue; // a pack listed again is skipped by `add_file`: the first listing wins
        }
        for e in &p.entries {
            if u32::try_from(e.offset).is_err() {
                continue; // the in-memory index skips offsets past u32 (see `add_file`)
            }
            let loc = m.lookup(&e.id).expect("indexed blob not found");
            assert!((loc.pack_no as usize) < m.packs().len());
            assert!(m.contains(&e.id));
        }
    }
    let _ = m.lookup(&Id([0xa5; 32]));
});
