//! Mirroring a repository: copy every file the target lacks, byte for byte, verified.
//!
//! Mirror moves ciphertext and needs no key, so a keyless job on the home server can
//! write the offsite disk. It can still verify everything, because every host file is
//! named by the BLAKE3 of its bytes: a source file whose bytes do not match its name is
//! reported and not copied, and each copy is read back from the target and hashed before
//! it counts.
//!
//! Files go in dependency order, so a target interrupted at any point is a consistent
//! repository (or not yet a repository at all): packs, then index files, then snapshots,
//! and the key files and config last, which is what makes the target openable. A rerun
//! skips what is already there, so an interrupted mirror resumes. `--delete` removes in
//! the reverse order, snapshots first, so no snapshot ever names a missing pack.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::backend::layout::{self, HostDir};
use crate::backend::{Backend, BackendError, BackendErrorKind, WriteBody};
use crate::id::Id;

/// What to do.
#[derive(Clone, Copy, Debug, Default)]
pub struct MirrorOptions {
    /// Remove target files that are gone from the source.
    pub delete: bool,
    /// Only report what would be copied and removed.
    pub dry_run: bool,
    /// Files copied at once (0: as many as both backends allow, at most 8).
    pub parallel: usize,
}

/// Why a mirror stopped.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// Listing, reading or writing failed in a way that stops the run.
    #[error("{side}: {source}")]
    Backend {
        /// "source" or "target".
        side: &'static str,
        /// The failure.
        #[source]
        source: BackendError,
    },
    /// The local spool file failed.
    #[error("spooling {path} locally: {source}")]
    Spool {
        /// The file being copied.
        path: String,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The target is a different repository.
    #[error("the target holds a different repository (its config differs from the source's); refusing to mix them")]
    ForeignTarget,
    /// A copy read back from the target differs from what was sent.
    #[error("target: {path} read back with different bytes after writing it; the target storage is corrupting data")]
    TargetCorrupt {
        /// The file.
        path: String,
    },
    /// Ctrl-C.
    #[error("interrupted")]
    Cancelled,
}

/// What a mirror did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MirrorReport {
    /// Files at the source.
    pub source_files: u64,
    /// Files copied (or that would be, in a dry run).
    pub copied: u64,
    /// Bytes copied.
    pub copied_bytes: u64,
    /// Files already present at the target.
    pub present: u64,
    /// Files removed from the target (or that would be).
    pub deleted: u64,
    /// Target files whose size differed from the source's and were copied again.
    pub replaced: Vec<String>,
    /// Source files whose bytes do not match their name: damaged, not copied.
    pub mismatched: Vec<String>,
    /// Source files that vanished between listing and reading (a concurrent prune).
    pub vanished: Vec<String>,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

impl MirrorReport {
    /// Whether every source file is now at the target.
    pub fn is_complete(&self) -> bool {
        self.mismatched.is_empty()
    }
}

/// Progress callbacks; all default to nothing.
pub trait MirrorProgress: Sync {
    /// The plan is made: `files` and `bytes` to copy.
    fn planned(&self, _files: u64, _bytes: u64) {}
    /// One file is at the target.
    fn copied(&self, _path: &str, _bytes: u64) {}
    /// A source file was skipped as damaged.
    fn mismatch(&self, _path: &str) {}
    /// Whether to stop (Ctrl-C).
    fn cancelled(&self) -> bool {
        false
    }
}

/// The order in which files go: a file only appears after everything it refers to.
fn stage(path: &str) -> u8 {
    match layout::parse_host_file(path) {
        Some((_, HostDir::Packs, _)) => 0,
        Some((_, HostDir::Index | HostDir::TreeIndex, _)) => 1,
        Some((_, HostDir::Snapshots | HostDir::Sessions, _)) => 2,
        None if path == layout::CONFIG => 4,
        None => 3,
    }
}

/// The BLAKE3 a file must have, if its name says.
fn expected_id(path: &str) -> Option<Id> {
    layout::parse_host_file(path)
        .map(|(_, _, id)| id)
        .or_else(|| layout::parse_admin_file(path).map(|(_, id)| id))
}

fn listing(b: &dyn Backend, side: &'static str) -> Result<BTreeMap<String, u64>, MirrorError> {
    let mut out = BTreeMap::new();
    let it = b
        .list("")
        .map_err(|source| MirrorError::Backend { side, source })?;
    for item in it {
        let info = item.map_err(|source| MirrorError::Backend { side, source })?;
        out.insert(info.path, info.size);
    }
    Ok(out)
}

/// Hashes a stream into a spool file; returns the hash and length.
fn spool(r: &mut dyn Read, file: &mut std::fs::File) -> io::Result<(Id, u64)> {
    file.set_len(0)?;
    file.rewind()?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut len = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])?;
        len += n as u64;
    }
    file.flush()?;
    Ok((Id(*hasher.finalize().as_bytes()), len))
}

fn hash_stream(b: &dyn Backend, path: &str) -> Result<Id, BackendError> {
    let mut id = None;
    b.read_stream(path, None, &mut |r: &mut dyn Read| {
        let mut hasher = blake3::Hasher::new();
        io::copy(r, &mut hasher)?;
        id = Some(Id(*hasher.finalize().as_bytes()));
        Ok(())
    })?;
    id.ok_or_else(|| {
        BackendError::new(
            BackendErrorKind::Other,
            "read",
            path,
            Some("the backend never delivered the stream".into()),
        )
    })
}

enum Outcome {
    Copied(u64),
    Mismatch,
    Vanished,
}

/// Copies one file: source → spool (hashed) → target → read back and hashed.
fn copy_one(
    src: &dyn Backend,
    dst: &dyn Backend,
    path: &str,
    replace: bool,
) -> Result<Outcome, MirrorError> {
    let spool_err = |source| MirrorError::Spool {
        path: path.to_owned(),
        source,
    };
    let tmp = tempfile::NamedTempFile::new().map_err(spool_err)?;
    let mut file = tmp.reopen().map_err(spool_err)?;
    let mut got = None;
    let read = src.read_stream(path, None, &mut |r: &mut dyn Read| {
        got = Some(spool(r, &mut file)?);
        Ok(())
    });
    match read {
        Err(e) if e.kind == BackendErrorKind::NotFound => return Ok(Outcome::Vanished),
        Err(source) => {
            return Err(MirrorError::Backend {
                side: "source",
                source,
            })
        }
        Ok(()) => {}
    }
    let Some((id, len)) = got else {
        return Ok(Outcome::Vanished);
    };
    if expected_id(path).is_some_and(|want| want != id) {
        return Ok(Outcome::Mismatch);
    }
    let tgt = |source| MirrorError::Backend {
        side: "target",
        source,
    };
    if replace {
        // Not every backend overwrites atomically (OpenSSH's rename refuses), and this
        // file is damaged at the target anyway.
        match dst.remove(path) {
            Err(e) if e.kind != BackendErrorKind::NotFound => return Err(tgt(e)),
            _ => {}
        }
    }
    let body = WriteBody::File {
        path: tmp.path().to_path_buf(),
        len,
    };
    dst.write(path, &body).map_err(tgt)?;
    if hash_stream(dst, path).map_err(tgt)? != id {
        return Err(MirrorError::TargetCorrupt {
            path: path.to_owned(),
        });
    }
    Ok(Outcome::Copied(len))
}

/// Copies every file of `src` that `dst` lacks (see the module docs).
pub fn mirror(
    src: &dyn Backend,
    dst: &dyn Backend,
    opts: &MirrorOptions,
    progress: &dyn MirrorProgress,
) -> Result<MirrorReport, MirrorError> {
    let source = listing(src, "source")?;
    let target = listing(dst, "target")?;
    // A target with another repository's config must not receive this one's files:
    // both would look valid and neither would be.
    if let (Some(_), Some(_)) = (source.get(layout::CONFIG), target.get(layout::CONFIG)) {
        let a = src
            .read(layout::CONFIG, None)
            .map_err(|source| MirrorError::Backend {
                side: "source",
                source,
            })?;
        let b = dst
            .read(layout::CONFIG, None)
            .map_err(|source| MirrorError::Backend {
                side: "target",
                source,
            })?;
        if a != b {
            return Err(MirrorError::ForeignTarget);
        }
    }

    let mut report = MirrorReport {
        source_files: source.len() as u64,
        dry_run: opts.dry_run,
        ..MirrorReport::default()
    };
    let mut todo: Vec<(u8, String, u64, bool)> = Vec::new();
    for (path, &size) in &source {
        match target.get(path) {
            Some(&have) if have == size => report.present += 1,
            Some(_) => {
                report.replaced.push(path.clone());
                todo.push((stage(path), path.clone(), size, true));
            }
            None => todo.push((stage(path), path.clone(), size, false)),
        }
    }
    todo.sort();
    progress.planned(todo.len() as u64, todo.iter().map(|t| t.2).sum());

    if opts.dry_run {
        report.copied = todo.len() as u64;
        report.copied_bytes = todo.iter().map(|t| t.2).sum();
    } else {
        copy_stages(src, dst, opts, progress, &todo, &mut report)?;
    }

    if opts.delete {
        let mut gone: Vec<(u8, &String)> = target
            .keys()
            .filter(|p| !source.contains_key(*p))
            .map(|p| (stage(p), p))
            .collect();
        // Reverse dependency order: snapshots before the packs they name.
        gone.sort_by(|a, b| b.cmp(a));
        for (_, p) in gone {
            if progress.cancelled() {
                return Err(MirrorError::Cancelled);
            }
            if !opts.dry_run {
                match dst.remove(p) {
                    Err(e) if e.kind != BackendErrorKind::NotFound => {
                        return Err(MirrorError::Backend {
                            side: "target",
                            source: e,
                        })
                    }
                    _ => {}
                }
            }
            report.deleted += 1;
        }
    }
    Ok(report)
}

/// Runs the copies stage by stage; within a stage, files go in parallel.
fn copy_stages(
    src: &dyn Backend,
    dst: &dyn Backend,
    opts: &MirrorOptions,
    progress: &dyn MirrorProgress,
    todo: &[(u8, String, u64, bool)],
    report: &mut MirrorReport,
) -> Result<(), MirrorError> {
    let parallel = match opts.parallel {
        0 => src
            .properties()
            .max_connections
            .min(dst.properties().max_connections)
            .clamp(1, 8),
        n => n,
    };
    let copied = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let shared = Mutex::new((Vec::new(), Vec::new(), None::<MirrorError>));
    let mut start = 0;
    while start < todo.len() {
        let st = todo[start].0;
        let end = todo[start..]
            .iter()
            .position(|t| t.0 != st)
            .map_or(todo.len(), |n| start + n);
        let next = AtomicU64::new(start as u64);
        std::thread::scope(|s| {
            for _ in 0..parallel.min(end - start) {
                s.spawn(|| loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if progress.cancelled() {
                        stop.store(true, Ordering::Relaxed);
                        let mut sh = shared.lock().unwrap_or_else(|p| p.into_inner());
                        sh.2.get_or_insert(MirrorError::Cancelled);
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= end {
                        return;
                    }
                    let (_, path, _, replace) = &todo[i];
                    let r = copy_one(src, dst, path, *replace);
                    let mut sh = shared.lock().unwrap_or_else(|p| p.into_inner());
                    match r {
                        Ok(Outcome::Copied(n)) => {
                            drop(sh);
                            copied.fetch_add(1, Ordering::Relaxed);
                            bytes.fetch_add(n, Ordering::Relaxed);
                            progress.copied(path, n);
                        }
                        Ok(Outcome::Mismatch) => {
                            sh.0.push(path.clone());
                            drop(sh);
                            progress.mismatch(path);
                        }
                        Ok(Outcome::Vanished) => sh.1.push(path.clone()),
                        Err(e) => {
                            stop.store(true, Ordering::Relaxed);
                            sh.2.get_or_insert(e);
                        }
                    }
                });
            }
        });
        let mut sh = shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = sh.2.take() {
            return Err(e);
        }
        // A damaged pack must not be followed by the index and snapshots that name it
        // as if the target were whole; they still go, since the source is no better, but
        // the report says so and the exit code is not 0.
        drop(sh);
        start = end;
    }
    let sh = shared.into_inner().unwrap_or_else(|p| p.into_inner());
    report.mismatched = sh.0;
    report.vanished = sh.1;
    report.mismatched.sort();
    report.vanished.sort();
    report.copied = copied.into_inner();
    report.copied_bytes = bytes.into_inner();
    Ok(())
}

#[cfg(test)]
mod tests;
