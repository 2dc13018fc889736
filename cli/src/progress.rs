//! Progress on a terminal: files, bytes, rate and ETA, redrawn on one stderr line.
//!
//! Totals for the ETA come from a scanner thread that walks the same paths with `lstat`
//! only, as restic does, so the estimate firms up while the backup runs.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_core::archiver::Progress;
use cairn_core::restorer::RestoreProgress;

use crate::output::bytes;

/// Shared counters.
#[derive(Default)]
pub struct Counters {
    files: AtomicU64,
    bytes_done: AtomicU64,
    bytes_read: AtomicU64,
    errors: AtomicU64,
    total_files: AtomicU64,
    total_bytes: AtomicU64,
    scan_done: AtomicBool,
    stop: AtomicBool,
}

/// A live progress display (or a silent one when stderr is not a terminal).
pub struct Meter {
    counters: Arc<Counters>,
    printer: Option<std::thread::JoinHandle<()>>,
    verbose: bool,
}

impl Meter {
    /// Starts a display if `enabled` and stderr is a terminal.
    pub fn start(enabled: bool, verbose: bool, restore: bool) -> Self {
        let counters = Arc::new(Counters::default());
        let printer = (enabled && std::io::stderr().is_terminal()).then(|| {
            let c = counters.clone();
            std::thread::spawn(move || draw_loop(&c, restore))
        });
        Self {
            counters,
            printer,
            verbose,
        }
    }

    /// Walks `paths` in the background to learn the totals.
    pub fn scan(&self, paths: Vec<PathBuf>) {
        if self.printer.is_none() {
            return;
        }
        let c = self.counters.clone();
        std::thread::spawn(move || {
            let mut stack = paths;
            while let Some(p) = stack.pop() {
                if c.stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(m) = std::fs::symlink_metadata(&p) else {
                    continue;
                };
                if m.is_dir() {
                    if let Ok(rd) = std::fs::read_dir(&p) {
                        stack.extend(rd.flatten().map(|e| e.path()));
                    }
                } else if m.is_file() {
                    c.total_files.fetch_add(1, Ordering::Relaxed);
                    c.total_bytes.fetch_add(m.len(), Ordering::Relaxed);
                }
            }
            c.scan_done.store(true, Ordering::Relaxed);
        });
    }

    /// Stops the display and clears its line.
    pub fn finish(mut self) {
        self.counters.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.printer.take() {
            let _ = h.join();
        }
    }
}

fn draw_loop(c: &Counters, restore: bool) {
    let start = Instant::now();
    let mut err = std::io::stderr();
    while !c.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        let secs = start.elapsed().as_secs_f64().max(0.001);
        let done = c.bytes_done.load(Ordering::Relaxed);
        let total = c.total_bytes.load(Ordering::Relaxed);
        let rate = c.bytes_read.load(Ordering::Relaxed) as f64 / secs;
        let eta = if c.scan_done.load(Ordering::Relaxed) && done > 0 && total > done {
            let left = (total - done) as f64 / (done as f64 / secs);
            format!(" ETA {}:{:02}", left as u64 / 60, left as u64 % 60)
        } else {
            String::new()
        };
        let el = start.elapsed().as_secs();
        let line = if restore {
            format!(
                "[{}:{:02}] {} / {} restored{eta}",
                el / 60,
                el % 60,
                bytes(done),
                bytes(total)
            )
        } else {
            format!(
                "[{}:{:02}] {} files, {} / {} processed, {}/s, {} errors{eta}",
                el / 60,
                el % 60,
                c.files.load(Ordering::Relaxed),
                bytes(done),
                bytes(total),
                bytes(rate as u64),
                c.errors.load(Ordering::Relaxed),
            )
        };
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }
    let _ = write!(err, "\r\x1b[2K");
}

impl Progress for Meter {
    fn file_done(&self, path: &Path, bytes: u64, reused: bool) {
        self.counters.files.fetch_add(1, Ordering::Relaxed);
        if reused {
            self.counters.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        }
        if self.verbose {
            eprintln!(
                "{} {}",
                if reused { "unchanged" } else { "saved    " },
                path.display()
            );
        }
    }
    fn bytes_read(&self, n: u64) {
        self.counters.bytes_read.fetch_add(n, Ordering::Relaxed);
        self.counters.bytes_done.fetch_add(n, Ordering::Relaxed);
    }
    fn error(&self, path: &Path, msg: &str) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        eprintln!("\r\x1b[2Kwarning: {}: {msg}", path.display());
    }
}

impl RestoreProgress for Meter {
    fn total(&self, files: u64, bytes: u64) {
        self.counters.total_files.store(files, Ordering::Relaxed);
        self.counters.total_bytes.store(bytes, Ordering::Relaxed);
        self.counters.scan_done.store(true, Ordering::Relaxed);
    }
    fn bytes_done(&self, n: u64) {
        self.counters.bytes_done.fetch_add(n, Ordering::Relaxed);
        self.counters.bytes_read.fetch_add(n, Ordering::Relaxed);
    }
}
