//! Ids: 32-byte values shown as lowercase hex.
//!
//! Blob ids are keyed BLAKE3 of content keys (see `docs/format.md`, "Blob ids"); repository file
//! names are the unkeyed BLAKE3 of the file's bytes, so anyone can check a file with `b3sum`.
//! `Display` is the full hex; [`Id::short`] is the explicit 8-character form.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

/// Hashing for maps keyed by ids. Ids are already uniform (BLAKE3 or keyed BLAKE3), so
/// SipHash's cost buys nothing but time in prune's census and plans, which hash every
/// blob id several times; foldhash is several times faster and still seeded per process,
/// so file names a hostile server lists cannot be chosen to collide.
pub type IdHasher = foldhash::fast::RandomState;
/// A map keyed by ids.
pub type IdMap<V> = HashMap<Id, V, IdHasher>;
/// A set of ids.
pub type IdSet = HashSet<Id, IdHasher>;

/// A 32-byte id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// The id of a repository file: BLAKE3 of its bytes.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// The first 8 hex characters, for humans.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    /// Full lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// An id from a 32-byte slice.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

/// The error of parsing an id from hex.
#[derive(Debug, thiserror::Error)]
#[error("not a 64-character hex id: {0:?}")]
pub struct ParseIdError(pub String);

impl FromStr for Id {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseIdError(s.to_owned()))?;
        Ok(Self(out))
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// An id of its own type for one kind of repository file (the file's name, the BLAKE3 of
/// its bytes), so that one kind cannot be passed where another is meant.
macro_rules! file_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub Id);

        impl $name {
            /// The first 8 hex characters, for humans.
            pub fn short(&self) -> String {
                self.0.short()
            }

            /// Full lowercase hex.
            pub fn to_hex(&self) -> String {
                self.0.to_hex()
            }

            /// The file name it is.
            pub fn as_id(&self) -> &Id {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.short())
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.serialize(s)
            }
        }
    };
}

file_id! {
    /// A snapshot's id: the name of its file.
    SnapshotId
}

file_id! {
    /// An index file's name (shared or tree index).
    IndexFileId
}

/// A pack: its name and the host prefix it lives under (`hosts/<host>/packs/`). Every host
/// writes packs under its own prefix, so a name alone does not say where a pack is, and a
/// reader that assumed its own host's prefix would quietly miss every other host's packs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackId {
    /// The host prefix.
    pub host: Id16,
    /// The pack's name: BLAKE3 of its bytes.
    pub name: Id,
}

impl PackId {
    /// The pack `name` under `host`.
    pub fn new(host: Id16, name: Id) -> Self {
        Self { host, name }
    }

    /// Its repository path.
    pub fn path(&self) -> String {
        crate::backend::layout::host_file(
            &self.host,
            crate::backend::layout::HostDir::Packs,
            &self.name,
        )
    }
}

impl fmt::Debug for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackId({}/{})", self.host.to_hex(), self.name.short())
    }
}

/// A 16-byte id (repository, host, group and key ids).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Id16(pub [u8; 16]);

impl Id16 {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(crate::crypto::random_array())
    }
    /// Full lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// The all-ones id, used as the writer id of admin files.
    pub const ADMIN: Id16 = Id16([0xff; 16]);
}

impl fmt::Display for Id16 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id16 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id16({})", self.to_hex())
    }
}

impl FromStr for Id16 {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseIdError(s.to_owned()))?;
        Ok(Self(out))
    }
}

impl serde::Serialize for Id16 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_short() {
        let id = Id::of_bytes(b"abc");
        assert_eq!(id.to_hex().len(), 64);
        assert_eq!(id.to_hex().parse::<Id>().ok(), Some(id));
        assert_eq!(id.short(), &id.to_hex()[..8]);
        assert!("zz".parse::<Id>().is_err());
    }
}
