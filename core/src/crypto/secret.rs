//! Secret key material: zeroized on drop, never `Debug`, `Clone` only by explicit call.

use zeroize::Zeroize;

/// A 32-byte secret key.
pub struct Key32(Box<[u8; 32]>);

impl Key32 {
    /// Wraps bytes (the caller's copy should be zeroized by the caller).
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(Box::new(b))
    }

    /// A fresh random key.
    pub fn random() -> Self {
        let mut k = Self(Box::new([0u8; 32]));
        super::fill_random(&mut k.0[..]);
        k
    }

    /// The bytes; only for feeding a primitive.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// An explicit copy: secrets are never copied implicitly.
    pub fn duplicate(&self) -> Self {
        Self(Box::new(*self.0))
    }
}

impl Drop for Key32 {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A password as typed or read from a file.
pub struct Password(String);

impl Password {
    /// Wraps a password string.
    pub fn new(s: String) -> Self {
        Self(s)
    }
    /// The bytes, for the KDF.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}
