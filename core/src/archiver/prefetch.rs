//! Processing a directory's entries in name order, with the files a little further on
//! already being read by the kernel.
//!
//! On a cold page cache a worker that opens a small file waits one disk round trip, and a
//! few workers keep only a few requests in flight, although the disk delivers far more with
//! more of them queued (on the benchmark VM, `cat` over the dataset with 16 readers is about
//! twice as fast as with 4). Extra threads would cost memory and CPU time slices; instead,
//! workers take the entries in name order from a shared cursor, and each one that takes an
//! entry first opens the next not yet announced files up to `AHEAD` entries further on and
//! calls `posix_fadvise(WILLNEED)` on them. The kernel queues those reads without waiting,
//! so when a worker reaches a file its data has arrived or is on its way.
//!
//! Bounded: at most `AHEAD` entries per directory being walked, and `PREFETCH_MAX` bytes of
//! each, are announced ahead of the workers. The data lands in the page cache, not in this
//! process's memory, and is only advice: a failure changes nothing but the speed.

use std::ffi::OsString;
use std::fs::{FileType, Metadata};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::Result;

/// Entries announced ahead of the one a worker just took. Measured on the benchmark VM,
/// cold: 128 beat 32 in each of 3 interleaved rounds.
const AHEAD: usize = 128;
/// Bytes of a file announced ahead: at most `AHEAD` times this per directory is in flight.
/// A larger file's worker asks for all of it when it opens the file (`walk::PREFETCH_MIN`).
const PREFETCH_MAX: u64 = 256 << 10;

/// A directory entry as listed: its name and, when `readdir` told it, its type (so that
/// only regular files are opened ahead: opening a FIFO or a device can block or act).
pub(super) struct Entry {
    pub name: OsString,
    pub ftype: Option<FileType>,
}

/// Runs `f` on every entry on the rayon pool, taking entries in order, and returns the
/// results in entry order. `wanted(path, lstat)` says whether a regular file will be read
/// (not excluded, not unchanged since the parent snapshot), so only those are read ahead.
/// Stops at the first error.
pub(super) fn map_in_order<T: Send>(
    dir: &Path,
    entries: &[Entry],
    wanted: impl Fn(&Path, &Metadata) -> bool + Sync,
    f: impl Fn(&Entry) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let n = entries.len();
    if n <= 1 {
        return entries.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let announced = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let error = Mutex::new(None);
    let done: Mutex<Vec<(usize, T)>> = Mutex::new(Vec::with_capacity(n));
    let worker = || loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            break;
        }
        // Claim the entries up to AHEAD past this one that nobody announced yet.
        let target = n.min(i + 1 + AHEAD);
        let mut p = announced.load(Ordering::Relaxed);
        while p < target {
            match announced.compare_exchange_weak(p, p + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    // The entry being taken now is read at once; announcing it gains nothing.
                    if p > i {
                        announce(dir, &entries[p], &wanted);
                    }
                    p += 1;
                }
                Err(cur) => p = cur,
            }
        }
        match f(&entries[i]) {
            Ok(v) => lock(&done).push((i, v)),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                lock(&error).get_or_insert(e);
                break;
            }
        }
    };
    let tasks = rayon::current_num_threads().clamp(1, n);
    rayon::scope(|s| {
        for _ in 0..tasks {
            s.spawn(|_| worker());
        }
    });
    if let Some(e) = lock(&error).take() {
        return Err(e);
    }
    let mut done = std::mem::take(&mut *lock(&done));
    done.sort_unstable_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, v)| v).collect())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock means a worker panicked; rayon re-raises that panic at the scope's end.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Asks the kernel to start reading the beginning of a regular file.
fn announce(dir: &Path, e: &Entry, wanted: &impl Fn(&Path, &Metadata) -> bool) {
    if !e.ftype.is_some_and(|t| t.is_file()) {
        return;
    }
    let path = dir.join(&e.name);
    // Decide from lstat before opening: most files of a re-backup are unchanged and never
    // read, and their lstat is one the worker repeats from the cache anyway.
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() && m.len() > 0 && wanted(&path, &m) => {}
        _ => return,
    }
    // O_NOFOLLOW and O_NONBLOCK: if the entry was replaced by a symlink or a FIFO since it
    // was listed, neither follow it nor wait for a writer. Opening does not touch atime.
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    else {
        return;
    };
    let Ok(meta) = file.metadata() else {
        return;
    };
    if !meta.is_file() {
        return;
    }
    let len = meta.len().min(PREFETCH_MAX);
    let _ = nix::fcntl::posix_fadvise(
        std::os::fd::AsRawFd::as_raw_fd(&file),
        0,
        i64::try_from(len).unwrap_or(i64::MAX),
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn entries(dir: &Path) -> Vec<Entry> {
        let mut v: Vec<Entry> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                Entry {
                    name: e.file_name(),
                    ftype: e.file_type().ok(),
                }
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    #[test]
    fn results_in_entry_order_and_excluded_files_are_not_asked_for() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..200 {
            std::fs::write(d.path().join(format!("f{i:03}")), vec![i as u8; 1000 + i]).unwrap();
        }
        std::fs::create_dir(d.path().join("sub")).unwrap();
        let asked = Mutex::new(Vec::new());
        let es = entries(d.path());
        let out = map_in_order(
            d.path(),
            &es,
            |p, m| {
                lock(&asked).push((p.to_path_buf(), m.len()));
                !p.ends_with("f007")
            },
            |e| Ok(e.name.clone()),
        )
        .unwrap();
        let names: Vec<OsString> = es.iter().map(|e| e.name.clone()).collect();
        assert_eq!(out, names);
        let asked = asked.into_inner().unwrap();
        assert!(!asked.is_empty());
        // Only regular files, each at most once, with their sizes.
        let mut seen = std::collections::HashSet::new();
        for (p, size) in &asked {
            assert!(!p.ends_with("sub"));
            assert!(seen.insert(p.clone()));
            assert_eq!(*size, std::fs::metadata(p).unwrap().len());
        }
    }

    #[test]
    fn stops_at_the_first_error() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..50 {
            std::fs::write(d.path().join(format!("f{i:02}")), b"x").unwrap();
        }
        let es = entries(d.path());
        let r = map_in_order(
            d.path(),
            &es,
            |_, _| true,
            |e| {
                if e.name == "f10" {
                    Err(Error::Cancelled)
                } else {
                    Ok(())
                }
            },
        );
        assert!(matches!(r, Err(Error::Cancelled)));
        let empty: Vec<Entry> = Vec::new();
        assert!(map_in_order(d.path(), &empty, |_, _| true, |_| Ok(()))
            .unwrap()
            .is_empty());
    }
}
