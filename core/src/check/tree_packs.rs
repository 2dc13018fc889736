//! Tree packs of a remote repository, read whole once for the tree walk.
//!
//! Check reads the repository, never the user's cache. Reading each tree with its own
//! ranged request costs one GET per directory of every snapshot (thousands for one home
//! directory, billed on S3), so on a remote backend check copies each tree pack it needs
//! into a temporary directory once, checks it against its name (BLAKE3) on the way, and
//! cuts trees out of the copy; the copies go when check ends. A pack that fails its name
//! is read tree by tree, so each damaged tree is still reported on its own.

use std::collections::HashMap;
use std::ops::Range;

use crate::backend::BackendError;
use crate::id::Id;
use crate::repository::cache::Cache;
use crate::repository::Repository;

/// Whole copies of the tree packs read so far.
pub(super) struct TreePacks {
    cache: Cache,
    /// Packs fetched, and whether the copy matched its name.
    fetched: HashMap<Id, bool>,
    _dir: tempfile::TempDir,
}

impl TreePacks {
    /// `None` on local storage, where a ranged read costs no request.
    pub(super) fn new(repo: &Repository) -> Option<Self> {
        if repo.backend().properties().is_local {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("cairn-check-")
            .tempdir_in(repo.spool_dir())
            .ok()?;
        Some(Self {
            cache: Cache::new(dir.path(), &repo.config().repo_id),
            fetched: HashMap::new(),
            _dir: dir,
        })
    }

    /// The stored bytes at `range` of pack `name` (at `path`).
    pub(super) fn read(
        &mut self,
        repo: &Repository,
        path: &str,
        name: &Id,
        range: Range<u64>,
    ) -> Result<Vec<u8>, BackendError> {
        let backend = &**repo.backend();
        let cache = &self.cache;
        let whole = *self
            .fetched
            .entry(*name)
            .or_insert_with(|| cache.fetch_pack(backend, path, name));
        if whole {
            self.cache.read_range(backend, path, name, range)
        } else {
            backend.read(path, Some(range))
        }
    }
}
