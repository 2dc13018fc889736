//! `cairn mirror --to URL`: copy the repository's files, verified, without a password.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use cairn_core::mirror::{mirror, MirrorOptions, MirrorProgress};

use crate::args::MirrorArgs;
use crate::context::Context;
use crate::output::{self, bytes};

/// A one-line progress display on a terminal.
struct Display<'a> {
    ctx: &'a Context,
    tty: bool,
    files: AtomicU64,
    bytes: AtomicU64,
    total: AtomicU64,
    total_bytes: AtomicU64,
    last: Mutex<Instant>,
}

impl Display<'_> {
    fn draw(&self, force: bool) {
        if !self.tty {
            return;
        }
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if !force && last.elapsed() < Duration::from_millis(250) {
            return;
        }
        *last = Instant::now();
        eprint!(
            "\r\x1b[Kcopied {}/{} files, {} of {}",
            self.files.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
            bytes(self.bytes.load(Ordering::Relaxed)),
            bytes(self.total_bytes.load(Ordering::Relaxed)),
        );
        let _ = std::io::stderr().flush();
    }
}

impl MirrorProgress for Display<'_> {
    fn planned(&self, files: u64, bytes: u64) {
        self.total.store(files, Ordering::Relaxed);
        self.total_bytes.store(bytes, Ordering::Relaxed);
        self.draw(true);
    }

    fn copied(&self, path: &str, n: u64) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(n, Ordering::Relaxed);
        if self.ctx.global.verbose > 0 && !self.ctx.global.json {
            eprintln!("copied {path}");
        }
        self.draw(false);
    }

    fn mismatch(&self, path: &str) {
        eprintln!(
            "\nerror: source file {path} does not match its name (damaged at the source); not copied"
        );
    }

    fn cancelled(&self) -> bool {
        self.ctx.cancel.load(Ordering::Relaxed)
    }
}

/// Runs `mirror`: exit 0 when the target has every source file, 3 when damaged source
/// files were left out, 1 on a failure that stopped the run.
pub fn run(ctx: &Context, a: &MirrorArgs) -> Result<i32> {
    let src = ctx.backend()?;
    if !cairn_core::repository::Repository::exists(&*src)? {
        return Err(cairn_core::Error::RepositoryNotFound {
            location: src.location(),
        })
        .context("mirror needs an existing source repository");
    }
    let dst = ctx.open_location(&a.to)?;
    dst.create()
        .with_context(|| format!("creating the mirror target {}", dst.location()))?;
    let display = Display {
        ctx,
        tty: !ctx.global.quiet && !ctx.global.json && std::io::stderr().is_terminal(),
        files: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        total: AtomicU64::new(0),
        total_bytes: AtomicU64::new(0),
        last: Mutex::new(Instant::now()),
    };
    let opts = MirrorOptions {
        delete: a.delete,
        dry_run: a.dry_run,
        parallel: 0,
    };
    let started = Instant::now();
    let result = mirror(&*src, &*dst, &opts, &display);
    if display.tty {
        display.draw(true);
        eprintln!();
    }
    let report = result.with_context(|| format!("mirroring to {}", dst.location()))?;
    ctx.figure("files_copied", report.copied as f64);
    ctx.figure("bytes_copied", report.copied_bytes as f64);
    ctx.figure("files_damaged", report.mismatched.len() as f64);
    let mut json = serde_json::to_value(&report)?;
    json["message_type"] = "summary".into();
    json["target"] = dst.location().into();
    json["duration"] = started.elapsed().as_secs_f64().into();
    output::result(ctx, &json, || {
        let verb = if report.dry_run {
            "would copy"
        } else {
            "copied"
        };
        let mut t = format!(
            "{verb} {} files ({}), {} already present",
            report.copied,
            bytes(report.copied_bytes),
            report.present
        );
        if a.delete {
            let verb = if report.dry_run {
                "would remove"
            } else {
                "removed"
            };
            t.push_str(&format!(", {verb} {}", report.deleted));
        }
        for p in &report.replaced {
            t.push_str(&format!("\nreplaced {p}: its size at the target was wrong"));
        }
        for p in &report.vanished {
            t.push_str(&format!("\nskipped {p}: removed from the source meanwhile"));
        }
        if !report.mismatched.is_empty() {
            t.push_str(&format!(
                "\n{} damaged source files were not copied; run `cairn check` on the source",
                report.mismatched.len()
            ));
        }
        t
    })?;
    Ok(if report.is_complete() { 0 } else { 3 })
}
