//! A repository in a directory on this machine.
//!
//! Writes are durable and atomic: bytes go to a hidden temporary file next to the target,
//! which is fsynced, renamed over the final name, and then the directory is fsynced so the
//! rename itself survives a crash (rustic's local backend skips the directory fsync and can
//! lose a freshly written pack).
//!
//! An exclusive create (`write_new`) writes and fsyncs the same temporary file, then
//! hard-links it to the final name: `link()` fails with `EEXIST` when the name is taken, so
//! the check and the creation are one atomic step, and the file appears complete or not at
//! all (an `O_EXCL` open of the final name would be just as exclusive, but readers could see
//! it half written, and a crash could leave it so). On a filesystem without hard links
//! (FAT, some FUSE mounts) it falls back to exactly that `O_EXCL` open: still exclusive,
//! no longer all-or-nothing.
//!
//! A failed fsync poisons the handle. After one, the kernel may already have dropped the dirty
//! pages and cleared the error, so a retried fsync can "succeed" over lost data
//! (PostgreSQL's fsyncgate, 2018). The only safe reaction is to stop writing.

use std::fs::{self, File, OpenOptions, ReadDir};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use cairn_core::backend::request::{check_bounded, check_path, check_range};
use cairn_core::backend::{
    Backend, BackendError, BackendErrorKind, ObjectInfo, Properties, StreamConsumer, WriteBody,
};
use cairn_core::cost::RequestMeter;

/// Prefix of in-flight temporary files; `list` skips them, so a crash leaves only junk
/// that no reader ever sees.
const TMP_PREFIX: &str = ".tmp-";

/// Why a local operation failed, when the cause is not an [`io::Error`].
#[derive(Debug, thiserror::Error)]
enum LocalError {
    #[error("body said {expected} bytes but {actual} were copied")]
    LengthMismatch { expected: u64, actual: u64 },
    #[error("not a regular file")]
    NotAFile,
    #[error("file name is not UTF-8")]
    NonUtf8Name,
    #[error("the random source failed: {0}")]
    Random(getrandom::Error),
}

/// The [`BackendErrorKind`] of an I/O error: the one place native errors are classified.
pub fn io_error_kind(err: &io::Error) -> BackendErrorKind {
    match err.kind() {
        io::ErrorKind::NotFound => return BackendErrorKind::NotFound,
        io::ErrorKind::PermissionDenied => return BackendErrorKind::PermissionDenied,
        _ => {}
    }
    match err.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => BackendErrorKind::NoSpace,
        _ => BackendErrorKind::Other,
    }
}

fn io_err(op: &'static str, path: &str, err: io::Error) -> BackendError {
    BackendError::new(io_error_kind(&err), op, path, Some(Box::new(err) as _))
}

fn io_err_kind(
    kind: BackendErrorKind,
    op: &'static str,
    path: &str,
    err: io::Error,
) -> BackendError {
    BackendError::new(kind, op, path, Some(Box::new(err) as _))
}

/// Whether `link()` failed because the filesystem has no hard links (Linux says `EPERM`
/// for that, other systems `EOPNOTSUPP`).
fn no_hard_links(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EPERM | libc::EOPNOTSUPP))
        || err.kind() == io::ErrorKind::Unsupported
}

fn local_err(
    kind: BackendErrorKind,
    op: &'static str,
    path: &str,
    err: LocalError,
) -> BackendError {
    BackendError::new(kind, op, path, Some(Box::new(err) as _))
}

/// A checked repository-relative path (see [`check_path`]).
fn clean_rel<'p>(op: &'static str, path: &'p str) -> Result<&'p Path, BackendError> {
    check_path(op, path)?;
    Ok(Path::new(path))
}

/// A [`Backend`] on a local (or locally mounted) filesystem.
#[derive(Debug)]
pub struct LocalBackend {
    root: PathBuf,
    poisoned: AtomicBool,
    fail_next_fsync: AtomicBool,
}

impl LocalBackend {
    /// A backend rooted at `root`; nothing is touched until [`Backend::create`] or a call.
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            poisoned: AtomicBool::new(false),
            fail_next_fsync: AtomicBool::new(false),
        }
    }

    /// Whether an earlier fsync failed, so every write is refused.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    /// Test hook: the next fsync fails as if the disk reported an I/O error.
    #[doc(hidden)]
    pub fn fail_next_fsync_for_test(&self) {
        self.fail_next_fsync.store(true, Ordering::SeqCst);
    }

    fn full(&self, op: &'static str, path: &str) -> Result<PathBuf, BackendError> {
        Ok(self.root.join(clean_rel(op, path)?))
    }

    fn check_poison(&self, op: &'static str, path: &str) -> Result<(), BackendError> {
        if self.is_poisoned() {
            return Err(BackendError::new(
                BackendErrorKind::Poisoned,
                op,
                path,
                None,
            ));
        }
        Ok(())
    }

    /// fsyncs `file`; a failure poisons the handle and is never retried (see module docs).
    fn sync(&self, file: &File, op: &'static str, path: &str) -> Result<(), BackendError> {
        let res = if self.fail_next_fsync.swap(false, Ordering::SeqCst) {
            Err(io::Error::other("injected fsync failure"))
        } else {
            file.sync_all()
        };
        res.map_err(|e| {
            self.poisoned.store(true, Ordering::SeqCst);
            BackendError::new(BackendErrorKind::Poisoned, op, path, Some(Box::new(e) as _))
        })
    }

    /// fsyncs a directory so entries created, renamed or removed in it are durable.
    fn sync_dir(&self, dir: &Path, op: &'static str, path: &str) -> Result<(), BackendError> {
        let d = File::open(dir).map_err(|e| io_err(op, path, e))?;
        self.sync(&d, op, path)
    }

    /// Creates the missing directories between the root and `dir`, each made durable by
    /// fsyncing its parent. The root itself must exist (made by `create`).
    fn ensure_dir(&self, dir: &Path, op: &'static str, path: &str) -> Result<(), BackendError> {
        if dir.is_dir() {
            return Ok(());
        }
        let rel = dir.strip_prefix(&self.root).unwrap_or(dir);
        let mut cur = self.root.clone();
        for comp in rel.components() {
            let parent = cur.clone();
            cur.push(comp);
            match fs::DirBuilder::new().mode(0o755).create(&cur) {
                Ok(()) => self.sync_dir(&parent, op, path)?,
                // Another writer may have made it; a file there fails at the next step.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(op, path, e)),
            }
        }
        Ok(())
    }

    /// Writes the body to a fresh temporary file in `dir`; returns its path.
    fn write_temp(
        &self,
        dir: &Path,
        body: &WriteBody<'_>,
        path: &str,
    ) -> Result<PathBuf, BackendError> {
        let mut rnd = [0u8; 8];
        getrandom::getrandom(&mut rnd).map_err(|e| {
            local_err(
                BackendErrorKind::Other,
                "write",
                path,
                LocalError::Random(e),
            )
        })?;
        let tmp = dir.join(format!("{TMP_PREFIX}{}", hex::encode(rnd)));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(|e| io_err("write", path, e))?;
        let res = self.fill(&mut file, body, path);
        if let Err(e) = res {
            drop(file);
            // Best effort: the write already failed, and a leftover temp file is invisible
            // to `list` anyway.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(tmp)
    }

    fn fill(&self, file: &mut File, body: &WriteBody<'_>, path: &str) -> Result<(), BackendError> {
        let copied = match body {
            WriteBody::Bytes(b) => {
                file.write_all(b).map_err(|e| io_err("write", path, e))?;
                b.len() as u64
            }
            WriteBody::File { path: src, .. } => {
                // File to File, so std uses copy_file_range and the bytes never enter user space.
                let mut src = File::open(src).map_err(|e| io_err("write", path, e))?;
                io::copy(&mut src, file).map_err(|e| io_err("write", path, e))?
            }
            WriteBody::Paced { .. } => {
                let mut src = body.open().map_err(|e| io_err("write", path, e))?;
                io::copy(&mut src, file).map_err(|e| io_err("write", path, e))?
            }
        };
        if copied != body.len() {
            let e = LocalError::LengthMismatch {
                expected: body.len(),
                actual: copied,
            };
            return Err(local_err(BackendErrorKind::Other, "write", path, e));
        }
        self.sync(file, "write", path)
    }

    /// The fallback of `write_new` where hard links are not supported: an `O_EXCL` create
    /// of the final name, written in place.
    fn create_exclusive(
        &self,
        full: &Path,
        body: &WriteBody<'_>,
        path: &str,
    ) -> Result<(), BackendError> {
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(full)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(io_err_kind(
                    BackendErrorKind::AlreadyExists,
                    "write_new",
                    path,
                    e,
                ));
            }
            Err(e) => return Err(io_err("write_new", path, e)),
        };
        if let Err(e) = self.fill(&mut file, body, path) {
            drop(file);
            // Ours, and incomplete: leaving it would hold the name with garbage.
            let _ = fs::remove_file(full);
            return Err(e);
        }
        Ok(())
    }

    /// Opens a regular file for reading, with its size.
    fn open_file(&self, op: &'static str, path: &str) -> Result<(File, u64), BackendError> {
        let file = File::open(self.full(op, path)?).map_err(|e| io_err(op, path, e))?;
        let meta = file.metadata().map_err(|e| io_err(op, path, e))?;
        if !meta.is_file() {
            return Err(local_err(
                BackendErrorKind::NotFound,
                op,
                path,
                LocalError::NotAFile,
            ));
        }
        Ok((file, meta.len()))
    }
}

impl Backend for LocalBackend {
    fn meter_requests(&self, _meter: std::sync::Arc<dyn RequestMeter>) -> bool {
        // Nothing here is billed per request: one per call is the honest count.
        false
    }

    fn properties(&self) -> Properties {
        Properties {
            // A local disk gains little beyond a few requests in flight; more only seeks.
            max_connections: 4,
            atomic_overwrite: true,
            is_local: true,
            can_delete: true,
            cost_class: "local",
            deletes_versions: false,
        }
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> Result<(), BackendError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.root)
            .map_err(|e| io_err("create", "", e))?;
        match self.root.parent() {
            Some(p) if !p.as_os_str().is_empty() => self.sync_dir(p, "create", ""),
            _ => Ok(()),
        }
    }

    fn list<'a>(
        &'a self,
        dir: &str,
    ) -> Result<Box<dyn Iterator<Item = Result<ObjectInfo, BackendError>> + Send + 'a>, BackendError>
    {
        let dir = dir.trim_end_matches('/');
        if !dir.is_empty() {
            clean_rel("list", dir)?;
        }
        Ok(Box::new(ListIter {
            root: &self.root,
            pending: vec![dir.to_owned()],
            current: None,
        }))
    }

    fn stat(&self, path: &str) -> Result<u64, BackendError> {
        let meta = fs::metadata(self.full("stat", path)?).map_err(|e| io_err("stat", path, e))?;
        if !meta.is_file() {
            return Err(local_err(
                BackendErrorKind::NotFound,
                "stat",
                path,
                LocalError::NotAFile,
            ));
        }
        Ok(meta.len())
    }

    fn read(&self, path: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, BackendError> {
        let (file, size) = self.open_file("read", path)?;
        let r = check_range("read", path, size, range)?;
        let mut buf = vec![0; check_bounded("read", path, &r)?];
        file.read_exact_at(&mut buf, r.start)
            .map_err(|e| io_err("read", path, e))?;
        Ok(buf)
    }

    fn read_stream(
        &self,
        path: &str,
        range: Option<Range<u64>>,
        consumer: &mut StreamConsumer<'_>,
    ) -> Result<(), BackendError> {
        let (mut file, size) = self.open_file("read_stream", path)?;
        let r = check_range("read_stream", path, size, range)?;
        file.seek(SeekFrom::Start(r.start))
            .map_err(|e| io_err("read_stream", path, e))?;
        let mut reader = io::BufReader::with_capacity(256 << 10, file).take(r.end - r.start);
        consumer(&mut reader).map_err(|e| io_err("read_stream", path, e))
    }

    fn write(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
        self.check_poison("write", path)?;
        let full = self.full("write", path)?;
        let dir = full.parent().unwrap_or(&self.root);
        self.ensure_dir(dir, "write", path)?;
        let tmp = self.write_temp(dir, body, path)?;
        if let Err(e) = fs::rename(&tmp, &full) {
            // Best effort, as in write_temp.
            let _ = fs::remove_file(&tmp);
            return Err(io_err("write", path, e));
        }
        self.sync_dir(dir, "write", path)
    }

    fn write_new(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
        self.check_poison("write_new", path)?;
        let full = self.full("write_new", path)?;
        let dir = full.parent().unwrap_or(&self.root);
        self.ensure_dir(dir, "write_new", path)?;
        let tmp = self.write_temp(dir, body, path)?;
        let linked = fs::hard_link(&tmp, &full);
        // The temporary name goes either way: on success the file lives on under `full`.
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(io_err_kind(
                    BackendErrorKind::AlreadyExists,
                    "write_new",
                    path,
                    e,
                ));
            }
            Err(e) if no_hard_links(&e) => self.create_exclusive(&full, body, path)?,
            Err(e) => return Err(io_err("write_new", path, e)),
        }
        self.sync_dir(dir, "write_new", path)
    }

    fn remove(&self, path: &str) -> Result<(), BackendError> {
        let full = self.full("remove", path)?;
        fs::remove_file(&full).map_err(|e| io_err("remove", path, e))?;
        // Prune removes index files before the packs they name; without this fsync a crash
        // could bring back an index whose packs are durably gone.
        let dir = full.parent().unwrap_or(&self.root);
        self.sync_dir(dir, "remove", path)
    }
}

/// A lazy depth-first walk: one open directory at a time plus a stack of directories
/// still to visit, so a huge repository is never held in memory.
struct ListIter<'a> {
    root: &'a Path,
    /// Repository-relative directories still to open ("" is the root).
    pending: Vec<String>,
    current: Option<(String, ReadDir)>,
}

impl ListIter<'_> {
    /// The next entry of the open directory, or `None` when it is exhausted.
    fn step(&mut self) -> Option<Result<ObjectInfo, BackendError>> {
        let (dir, entries) = self.current.as_mut()?;
        loop {
            let entry = match entries.next()? {
                Ok(e) => e,
                Err(e) => return Some(Err(io_err("list", dir, e))),
            };
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                let e = local_err(
                    BackendErrorKind::Other,
                    "list",
                    dir,
                    LocalError::NonUtf8Name,
                );
                return Some(Err(e));
            };
            if name.starts_with(TMP_PREFIX) {
                continue;
            }
            let rel = if dir.is_empty() {
                name.to_owned()
            } else {
                format!("{dir}/{name}")
            };
            let ft = match entry.file_type() {
                Ok(ft) => ft,
                Err(e) => return Some(Err(io_err("list", &rel, e))),
            };
            if ft.is_dir() {
                self.pending.push(rel);
            } else if ft.is_file() {
                match entry.metadata() {
                    Ok(m) => {
                        return Some(Ok(ObjectInfo {
                            path: rel,
                            size: m.len(),
                        }))
                    }
                    // Removed between readdir and stat: it is simply not there any more.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Some(Err(io_err("list", &rel, e))),
                }
            }
            // Symlinks and special files are not repository files; skip them.
        }
    }
}

impl Iterator for ListIter<'_> {
    type Item = Result<ObjectInfo, BackendError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.step() {
                return Some(item);
            }
            let dir = self.pending.pop()?;
            match fs::read_dir(self.root.join(&dir)) {
                Ok(rd) => self.current = Some((dir, rd)),
                // A missing directory lists as empty, including one removed mid-walk.
                Err(e) if e.kind() == io::ErrorKind::NotFound => self.current = None,
                Err(e) => {
                    self.current = None;
                    return Some(Err(io_err("list", &dir, e)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_kinds() {
        let cases = [
            (
                io::Error::from_raw_os_error(libc::ENOSPC),
                BackendErrorKind::NoSpace,
            ),
            (
                io::Error::from_raw_os_error(libc::EDQUOT),
                BackendErrorKind::NoSpace,
            ),
            (
                io::Error::from_raw_os_error(libc::ENOENT),
                BackendErrorKind::NotFound,
            ),
            (
                io::Error::from_raw_os_error(libc::EACCES),
                BackendErrorKind::PermissionDenied,
            ),
            (
                io::Error::from_raw_os_error(libc::EPERM),
                BackendErrorKind::PermissionDenied,
            ),
            (
                io::Error::from_raw_os_error(libc::EIO),
                BackendErrorKind::Other,
            ),
            (
                io::Error::from(io::ErrorKind::NotFound),
                BackendErrorKind::NotFound,
            ),
            (io::Error::other("x"), BackendErrorKind::Other),
        ];
        for (err, want) in cases {
            assert_eq!(io_error_kind(&err), want, "{err}");
        }
    }

    #[test]
    fn rejects_unclean_paths() {
        for p in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a//b",
            "a/",
            "./a",
            "a\0b",
        ] {
            assert!(clean_rel("read", p).is_err(), "{p:?} must be rejected");
        }
        for p in ["config", "hosts/ab/packs/cd/ef", ".tmp-x"] {
            assert!(clean_rel("read", p).is_ok(), "{p:?} must be accepted");
        }
    }

    #[test]
    fn ranges_are_checked() {
        let kind = |r: Result<Range<u64>, BackendError>| r.err().map(|e| e.kind);
        assert_eq!(
            check_range("read", "f", 10, None).ok(),
            Some(0..10),
            "whole file"
        );
        assert_eq!(
            check_range("read", "f", 10, Some(10..10)).ok(),
            Some(10..10),
            "empty at end"
        );
        let bad = Some(BackendErrorKind::RangeNotSatisfiable);
        assert_eq!(
            kind(check_range("read", "f", 10, Some(5..11))),
            bad,
            "past end"
        );
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 6..5;
        assert_eq!(
            kind(check_range("read", "f", 10, Some(backwards))),
            bad,
            "backwards"
        );
    }
}
