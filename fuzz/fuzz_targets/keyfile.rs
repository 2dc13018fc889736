#![no_main]
//! Key files: JSON parse, bounds check, and the full unwrap when the KDF is cheap.

use cairn_core::crypto::keyfile::{KeyFile, MIN_M_KIB};
use cairn_core::crypto::Password;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(kf) = KeyFile::parse("fuzz", data) else {
        return;
    };
    // Serialising what was parsed must give a file that parses to the same serialisation.
    let json = kf.to_json().expect("a parsed key file serialises");
    let again = KeyFile::parse("fuzz", &json).expect("re-parse of to_json output");
    assert_eq!(again.to_json().ok(), Some(json), "key file JSON round trip");
    let bounds = kf.kdf.check_bounds();
    // Argon2 at the 19 MiB minimum with one pass is ~20 ms; anything dearer would make the
    // target crawl, and its bounds checks are covered by `check_bounds` above.
    if bounds.is_ok() && kf.kdf.m_kib <= MIN_M_KIB && kf.kdf.t == 1 {
        let _ = kf.unwrap_secret("fuzz", &Password::new(cairn_fuzz::PASSWORD.into()));
    }
});
