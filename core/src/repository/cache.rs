//! The local cache (`~/.cache/cairn/<repo id>`): index files and tree packs, the same sealed
//! bytes as in the repository, so a remote repository's index and directory listings are read
//! from local disk. Every cached file is named by its BLAKE3 and checked against that name
//! when it enters the cache; blobs read from it are still authenticated on use, and a cached
//! file that fails is dropped and read again from the repository.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::backend::{Backend, BackendError};
use crate::id::Id;

/// A repository's cache directory.
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache of one repository below `root`.
    pub fn new(root: &Path, repo_id: &crate::id::Id16) -> Self {
        Self {
            dir: root.join(repo_id.to_hex()),
        }
    }

    fn local(&self, path: &str) -> PathBuf {
        self.dir.join(path)
    }

    /// Puts a file at `path` in the cache through a temporary file, so a reader never sees
    /// a partial copy. Failures only mean a later cache miss.
    fn put(&self, path: &str, fill: impl FnOnce(&Path) -> std::io::Result<()>) {
        let dst = self.local(path);
        let _ = (|| -> std::io::Result<()> {
            let parent = dst
                .parent()
                .ok_or_else(|| std::io::Error::other("no parent"))?;
            std::fs::create_dir_all(parent)?;
            let tmp = tempfile::NamedTempFile::new_in(parent)?;
            fill(tmp.path())?;
            tmp.persist(&dst).map_err(|e| e.error)?;
            Ok(())
        })();
    }

    /// Stores bytes whose name was already checked (a file just written, or read and
    /// verified).
    pub fn store(&self, path: &str, bytes: &[u8]) {
        self.put(path, |tmp| std::fs::write(tmp, bytes));
    }

    /// Stores a local file (a pack just uploaded from its spool file).
    pub fn store_file(&self, path: &str, src: &Path) {
        self.put(path, |tmp| std::fs::copy(src, tmp).map(|_| ()));
    }

    /// Drops a cached file (after it failed a check).
    pub fn forget(&self, path: &str) {
        let _ = std::fs::remove_file(self.local(path));
    }

    /// A whole small file, from the cache when its bytes still hash to `name`.
    pub fn read_file(
        &self,
        backend: &dyn Backend,
        path: &str,
        name: &Id,
    ) -> Result<Vec<u8>, BackendError> {
        if let Ok(b) = std::fs::read(self.local(path)) {
            if Id::of_bytes(&b) == *name {
                return Ok(b);
            }
            self.forget(path);
        }
        let b = backend.read(path, None)?;
        if Id::of_bytes(&b) == *name {
            self.store(path, &b);
        }
        Ok(b)
    }

    /// A range of a pack, from the cached copy of the whole pack, fetching and verifying the
    /// pack first when it is not cached. Falls back to a plain ranged read when the pack
    /// cannot be cached (its bytes do not match its name: the caller's checks report it).
    pub fn read_range(
        &self,
        backend: &dyn Backend,
        path: &str,
        name: &Id,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<u8>, BackendError> {
        let local = self.local(path);
        if !local.exists() {
            self.fetch_pack(backend, path, name);
        }
        if let Ok(f) = File::open(&local) {
            let mut buf = vec![0u8; (range.end - range.start) as usize];
            if f.read_exact_at(&mut buf, range.start).is_ok() {
                return Ok(buf);
            }
            self.forget(path);
        }
        backend.read(path, Some(range))
    }

    /// Reads the pack at `path` whole into the cache; whether its bytes hashed to `name`
    /// and it is now cached.
    pub fn fetch_pack(&self, backend: &dyn Backend, path: &str, name: &Id) -> bool {
        let local = self.local(path);
        (|| -> std::io::Result<bool> {
            let parent = local
                .parent()
                .ok_or_else(|| std::io::Error::other("no parent"))?;
            std::fs::create_dir_all(parent)?;
            let tmp = tempfile::NamedTempFile::new_in(parent)?;
            let mut ok = false;
            backend
                .read_stream(path, None, &mut |r: &mut dyn Read| {
                    // May be called again on retry: start over each time.
                    let mut f = tmp.reopen()?;
                    f.set_len(0)?;
                    let mut h = blake3::Hasher::new();
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        let n = r.read(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        h.update(&buf[..n]);
                        f.write_all(&buf[..n])?;
                    }
                    ok = Id(*h.finalize().as_bytes()) == *name;
                    Ok(())
                })
                .map_err(std::io::Error::other)?;
            if ok {
                tmp.persist(&local).map_err(|e| e.error)?;
            }
            Ok(ok)
        })()
        .unwrap_or(false)
    }
}
