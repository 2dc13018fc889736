//! The repository: a backend plus the keys, exposing only authenticated, typed operations.
//!
//! No code above this module sees raw repository bytes: blobs come out opened and
//! content-checked, files come out opened and decoded. Commands (backup, restore, check,
//! ...) live in their own modules and take a `&Repository`.

mod blobs;
pub mod cache;
mod files;
mod forget;
mod hosts;
pub mod keys;
mod pack_stream;
pub mod packer;
mod packs;
mod plans;

use std::path::PathBuf;
use std::sync::Arc;

use crate::backend::{layout, Backend, BackendErrorKind};
use crate::chunker::GearTable;
use crate::config::Config;
use crate::crypto::keys::{AdminSecret, GroupKeys, HostKeys};
use crate::error::{Error, Result};
use crate::id::Id16;
use crate::index::MasterIndex;

pub use blobs::TreeCache;
pub use hosts::HostFiles;
pub use keys::{InitOptions, KeyInfo};
pub use pack_stream::MERGE_GAP;
pub use plans::OpenPlans;

/// An open repository: config verified, keys unlocked.
pub struct Repository {
    backend: Arc<dyn Backend>,
    config: Config,
    config_bytes: Vec<u8>,
    admin: AdminSecret,
    group: GroupKeys,
    host: HostKeys,
    key_id: Id16,
    gear: Arc<GearTable>,
    index: MasterIndex,
    spool_dir: PathBuf,
    cache: Option<cache::Cache>,
}

impl Repository {
    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The config file's bytes as stored.
    pub fn config_bytes(&self) -> &[u8] {
        &self.config_bytes
    }

    /// The raw storage, for `check`'s structural reads, which must see files as stored
    /// (damaged ones included) to name them. Everything else goes through the typed,
    /// authenticated methods; outside the crate there is no way to the raw bytes.
    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// How many requests the backend carries at once.
    pub fn max_connections(&self) -> usize {
        self.backend.properties().max_connections
    }

    /// Whether a delete removes every stored version of a file (see
    /// [`crate::backend::Properties`]).
    pub fn deletes_versions(&self) -> bool {
        self.backend.properties().deletes_versions
    }

    /// Host id this key writes as.
    pub fn host_id(&self) -> Id16 {
        self.host.host_id
    }

    /// Id of the key file that unlocked the repository.
    pub fn key_id(&self) -> Id16 {
        self.key_id
    }

    /// The chunker's secret Gear table.
    pub fn gear(&self) -> &Arc<GearTable> {
        &self.gear
    }

    /// The loaded index.
    pub fn index(&self) -> &MasterIndex {
        &self.index
    }

    /// Replaces the in-memory index (prune loads every host's index files).
    pub(crate) fn replace_index(&mut self, index: MasterIndex) {
        self.index = index;
    }

    /// Where packs are spooled before upload.
    pub fn spool_dir(&self) -> &std::path::Path {
        &self.spool_dir
    }

    /// Keeps index files and tree packs in a local cache below `root` (per repository id).
    pub fn enable_cache(&mut self, root: &std::path::Path) {
        self.cache = Some(cache::Cache::new(root, &self.config.repo_id));
    }

    /// The local cache, if enabled.
    pub fn cache(&self) -> Option<&cache::Cache> {
        self.cache.as_ref()
    }

    /// Sets where packs are spooled (the cache dir, usually).
    pub fn set_spool_dir(&mut self, dir: PathBuf) {
        self.spool_dir = dir;
    }

    /// Reads the config file, mapping "not there" to [`Error::RepositoryNotFound`].
    fn read_config(backend: &dyn Backend) -> Result<Vec<u8>> {
        match backend.read(layout::CONFIG, None) {
            Ok(b) => Ok(b),
            Err(e) if e.kind == BackendErrorKind::NotFound => Err(Error::RepositoryNotFound {
                location: backend.location(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a repository exists at the backend.
    pub fn exists(backend: &dyn Backend) -> Result<bool> {
        match backend.stat(layout::CONFIG) {
            Ok(_) => Ok(true),
            Err(e) if e.kind == BackendErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
