#![no_main]
//! The signed repository config.

use cairn_core::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cfg) = Config::from_file(data) {
        // A config that verified was signed over exactly its body bytes; encoding the
        // decoded value must not panic either (it is re-signed on key rotation).
        let _ = cfg.encode_body();
    }
});
