//! Cryptography: secrets, key derivation, blob sealing, sealed files and key files.
//!
//! No long-term key ever encrypts data directly (`docs/threat-model.md`, "AEAD usage"):
//! blobs use per-content keys with synthetic nonces, sealed files a fresh key per file,
//! key files a fresh Argon2id output per salt. So nothing here counts nonces.

/// Fills an array from the operating system's random source.
///
/// Panics only if the OS has no random source at all, in which case no key could be made safely.
pub fn random_array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    fill_random(&mut out);
    out
}

/// Fills a buffer from the operating system's random source.
#[allow(clippy::expect_used)]
pub fn fill_random(buf: &mut [u8]) {
    getrandom::getrandom(buf).expect("the operating system's random source failed");
}

pub mod blob;
pub mod keyfile;
pub mod keys;
pub mod sealed;
pub mod secret;

pub use secret::{Key32, Password};
