//! What a backup reads: the source side of `cairn backup`.
//!
//! This module decides *what* is backed up and *how it is stored*, independent of how the
//! tree is read. The directory walker will live here too; it consults:
//! - [`exclude::Excluder`]: restic-compatible `--exclude*` rules, so users keep their restic
//!   exclude files and flags unchanged;
//! - [`scope::PrivateScope`]: which files go to the host-keyed private scope (no cross-host
//!   dedup) instead of the shared one (DESIGN.md §4, crypto.md §3.5).

pub mod exclude;
pub mod node;
mod pattern;
pub mod scope;

pub use exclude::{parse_size, ExcludeError, ExcludeOptions, Excluder};
pub use scope::{PrivateScope, ScopeError, DEFAULT_SMALL_FILE_MAX};
