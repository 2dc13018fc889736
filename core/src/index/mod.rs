//! Index files and the in-memory index (`docs/format.md`, "Index files").
//!
//! A shared index file (`hosts/<hid>/index/`, group key) lists group data blobs; a private
//! index file (`hosts/<hid>/tindex/`, host key) lists trees and private blobs. Each lists only
//! packs under its writer's own prefix.

pub mod file;
pub mod master;

pub use file::{IndexFile, IndexPack};
pub use master::{BlobLocation, MasterIndex};
