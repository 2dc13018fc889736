//! Errors of the core crate.
//!
//! Policy (enforced in review):
//! - One public [`Error`] enum whose variants are the decisions a caller makes: exit codes,
//!   retries, "is this a wrong password or a corrupted file". Module-internal failures are
//!   mapped into it at the module edge with typed context (path, file kind, id), never a
//!   pre-formatted string where a field will do.
//! - Integrity failures ([`Error::Corrupt`], [`Error::BlobIntegrity`]) are their own variants
//!   and are never retried or downgraded to warnings by library code.
//! - `Display` is one human sentence naming the thing that failed; it never uses `{:?}`.
//! - Non-fatal source errors during backup do not use this type: they go to the archiver's
//!   error list and end in the snapshot summary (exit code 3 at the CLI).

use std::path::PathBuf;

use crate::backend::BackendError;

/// Result alias of the core crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the core crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// There is no repository (no config file) at the location.
    #[error("no repository at {location} (no config file found)")]
    RepositoryNotFound {
        /// The repository location, credentials redacted.
        location: String,
    },
    /// A repository already exists where `init` was asked to create one.
    #[error("a repository already exists at {location}")]
    RepositoryExists {
        /// The repository location.
        location: String,
    },
    /// The password opens no key file: the AEAD tag failed on every intact key file.
    #[error("wrong password: it opens none of the key files ({tried} tried)")]
    WrongPassword {
        /// How many key files were tried.
        tried: usize,
    },
    /// A key file's plain checksum does not match: it was damaged, not opened with a wrong password.
    #[error("key file {name} is corrupted (checksum mismatch)")]
    KeyFileCorrupted {
        /// The key file's name.
        name: String,
    },
    /// A key file is not a cairn key file or misses fields.
    #[error("key file {name} is malformed: {reason}")]
    KeyFileMalformed {
        /// The key file's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key file asks for KDF parameters outside the accepted bounds; refused before running Argon2.
    #[error("key file {name}: KDF parameters out of bounds ({reason})")]
    KdfOutOfBounds {
        /// The key file's name.
        name: String,
        /// Which parameter is out of bounds.
        reason: String,
    },
    /// A repository file failed authentication or decoding.
    #[error("{what} {name} is corrupt: {reason}")]
    Corrupt {
        /// The kind of file ("pack", "index file", "snapshot", "config", ...).
        what: &'static str,
        /// Its name (or path in the repository).
        name: String,
        /// What check failed.
        reason: String,
    },
    /// A blob failed one of its integrity checks.
    #[error("blob {id} in pack {pack} at offset {offset} failed its {stage} check")]
    BlobIntegrity {
        /// The blob id (hex).
        id: String,
        /// The pack name (hex).
        pack: String,
        /// Offset of the blob inside the pack.
        offset: u64,
        /// Which stage failed: "length", "aead", "decompress" or "content".
        stage: &'static str,
    },
    /// Something the caller asked for does not exist.
    #[error("{what} {name} not found")]
    NotFound {
        /// The kind of thing.
        what: &'static str,
        /// Its name or prefix.
        name: String,
    },
    /// A storage operation failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A local file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation ("read", "create", ...).
        op: &'static str,
        /// The local path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The request itself is invalid (bad argument, ambiguous prefix, ...).
    #[error("{0}")]
    InvalidInput(String),
    /// Another prune holds the admin's prune lock.
    #[error(
        "the repository is locked by another prune ({holder}); if that prune died on \
         another machine, run `cairn unlock`"
    )]
    Locked {
        /// Who holds the lock.
        holder: String,
    },
    /// The operation was interrupted (Ctrl-C).
    #[error("interrupted")]
    Cancelled,
    /// A write failed in a way that leaves its durability unknown (failed fsync); the handle
    /// refuses further writes rather than pretend it worked.
    #[error("repository handle refuses writes after an earlier failed write: {0}")]
    Poisoned(String),
}

impl Error {
    /// A corruption error for a repository file.
    pub fn corrupt(what: &'static str, name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            what,
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// A local I/O error with its path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
