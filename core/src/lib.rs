//! cairn-core: the repository format, crypto, chunker, and the backup and restore engine.
//!
//! Principal types, in the order data flows through them:
//! - [`backend::Backend`]: the storage contract (implemented in `cairn-backends`).
//! - `repository::Repository`: owns a backend and the keys; every byte it returns was
//!   authenticated first.
//! - `archiver` turns a source tree into packs, index files, trees and a snapshot;
//!   `restorer` turns a snapshot back into files.
//!
//! `docs/format.md` is the normative description of every byte written here.

pub mod backend;
pub mod browse;
pub mod cbor;
pub mod check;
pub mod chunker;
pub mod clock;
pub mod compress;
pub mod config;
pub mod cost;
pub mod crypto;
pub mod error;
pub mod forget;
pub mod id;
pub mod index;
pub mod mirror;
pub mod pack;
pub mod prune;
pub mod repair;
pub mod session;
pub mod snapshot;
pub mod source;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod tree;

pub use error::{Error, Result};
pub use id::{Id, Id16};
pub mod archiver;
pub mod repository;
pub mod restorer;
