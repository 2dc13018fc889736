//! `cairn backup`.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use cairn_core::archiver::{self, BackupOptions};
use cairn_core::clock::SystemClock;
use cairn_core::repository::Repository;
use cairn_core::source::exclude::{parse_size, ExcludeOptions, Excluder};
use chrono::TimeZone as _;

use crate::args::{BackupArgs, Filters, KdfArgs};
use crate::commands::select;
use crate::context::Context;
use crate::output::{self, bytes};
use crate::progress::Meter;

/// How often a running backup tells prune it is alive.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(600);

/// This machine's host name.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// An absolute, lexically normalised path (symlinks are not resolved: a symlink given on
/// the command line is backed up as a symlink, like restic does).
pub fn absolute(p: &Path) -> Result<PathBuf> {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .context("current directory")?
            .join(p)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Ok(out)
}

fn excluder(a: &BackupArgs) -> Result<Excluder> {
    let opts = ExcludeOptions {
        patterns: a.exclude.clone(),
        ipatterns: a.iexclude.clone(),
        pattern_files: a.exclude_file.clone(),
        ipattern_files: a.iexclude_file.clone(),
        exclude_caches: a.exclude_caches,
        exclude_if_present: a.exclude_if_present.clone(),
        exclude_larger_than: a
            .exclude_larger_than
            .as_deref()
            .map(parse_size)
            .transpose()?,
    };
    Ok(Excluder::new(&opts)?)
}

fn open_or_create(ctx: &Context) -> Result<Repository> {
    let (loc, implicit) = ctx.location()?;
    if implicit {
        let backend = ctx.backend()?;
        if !Repository::exists(&*backend)? {
            std::fs::create_dir_all(&loc)
                .with_context(|| format!("creating the default repository directory {loc}"))?;
            let kdf = KdfArgs {
                kdf_memory_mib: 64,
                kdf_iterations: 3,
            };
            crate::commands::init::create(ctx, &kdf, true, None, 3)?;
            eprintln!("created the default repository at {loc}");
        }
    }
    ctx.open()
}

/// The snapshot's time: `--time` ("YYYY-MM-DD HH:MM:SS", local time, as restic takes
/// it), else now.
fn snapshot_time(time: Option<&str>) -> Result<i64> {
    let t = match time {
        None => chrono::Utc::now(),
        Some(s) => {
            let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .with_context(|| format!("--time {s:?}: expected \"YYYY-MM-DD HH:MM:SS\""))?;
            // An hour that happens twice (end of daylight saving) means its first time.
            chrono::Local
                .from_local_datetime(&naive)
                .earliest()
                .with_context(|| format!("--time {s:?} does not exist in the local time zone (a daylight-saving gap)"))?
                .to_utc()
        }
    };
    t.timestamp_nanos_opt()
        .context("--time is outside the representable range (1677..2262)")
}

/// Runs `backup`.
pub fn run(ctx: &Context, a: &BackupArgs) -> Result<i32> {
    if a.stdin && !a.paths.is_empty() {
        bail!("--stdin takes no paths");
    }
    if !a.stdin && a.paths.is_empty() {
        bail!("nothing to back up: give at least one path (or --stdin)");
    }
    let paths: Vec<PathBuf> = a.paths.iter().map(|p| absolute(p)).collect::<Result<_>>()?;
    let time_ns = snapshot_time(a.time.as_deref())?;
    let excluder = excluder(a)?;
    let mut repo = open_or_create(ctx)?;
    // Blobs a pending prune plan condemned count as absent: this backup stores them again
    // rather than reuse what a Sweep may delete.
    // One read of the plans serves both.
    let plans = repo.apply_plans()?;
    for e in &plans.warnings {
        eprintln!("warning: ignored: {e}");
    }
    let recovered = repo.recover_orphan_packs(&plans)?;
    let gen_seen = plans.newest_gen;
    if recovered > 0 && !ctx.global.quiet {
        eprintln!("indexed {recovered} packs left by an interrupted backup; their data is reused");
    }
    if let Some(c) = &ctx.global.cache_dir {
        if !ctx.global.no_cache {
            std::fs::create_dir_all(c)
                .with_context(|| format!("creating cache dir {}", c.display()))?;
            repo.set_spool_dir(c.clone());
        }
    }
    let host = a.host.clone().unwrap_or_else(hostname);
    let tags: Vec<String> = a
        .tag
        .iter()
        .flat_map(|t| t.split(','))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let parent = if a.force || a.stdin {
        None
    } else if let Some(p) = &a.parent {
        Some(select::one(&repo, p, &Filters::default())?)
    } else {
        cairn_core::snapshot::select::parent(&select::all(&repo)?, &host, &paths).cloned()
    };
    let opts = BackupOptions {
        paths: paths.clone(),
        hostname: host,
        username: crate::commands::init::label()
            .split('@')
            .next()
            .unwrap_or("")
            .to_owned(),
        tags,
        parent,
        excluder,
        one_file_system: a.one_file_system,
        dry_run: a.dry_run,
        time_ns,
        program: format!("cairn {}", env!("CARGO_PKG_VERSION")),
        stdin_name: a.stdin.then(|| a.stdin_filename.clone()),
    };
    let meter = Meter::start(
        !ctx.global.quiet && !ctx.global.json,
        ctx.global.verbose > 0,
        false,
    );
    meter.scan(paths);
    let mut stdin = std::io::stdin();
    let input: Option<&mut (dyn std::io::Read + Send)> =
        if a.stdin { Some(&mut stdin) } else { None };
    let mut opts = opts;
    let mut input = input;
    let mut gen_seen = gen_seen;
    let out = loop {
        let mut run = || {
            let out = archiver::backup(&repo, &opts, input.take(), &meter, &ctx.cancel)?;
            let id = out.snapshot_id;
            Ok((out, id))
        };
        // A dry run writes nothing, not even a session marker.
        let result = if opts.dry_run {
            run().map(|(out, _)| out)
        } else {
            archiver::with_session(&repo, &SystemClock, gen_seen, HEARTBEAT, run)
        };
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                meter.finish();
                return Err(e.into());
            }
        };
        let Some(id) = out.snapshot_id else {
            break out;
        };
        let missing = archiver::swept_meanwhile(&mut repo, gen_seen, &out.snapshot.tree)?;
        if missing == 0 {
            break out;
        }
        // A prune swept data this backup reused while it was suspended: back up again
        // with the fresh index, reusing what is still there and storing the rest anew.
        if opts.stdin_name.is_some() {
            bail!(
                "snapshot {} references {missing} blobs a prune removed while this backup \
                 was suspended, and standard input cannot be read twice: run it again",
                id.short()
            );
        }
        eprintln!(
            "snapshot {} references {missing} blobs a prune removed while this backup was \
             suspended; backing up again to store them anew",
            id.short()
        );
        gen_seen = repo.apply_plans()?.newest_gen;
        opts.parent = Some((id, out.snapshot));
    };
    meter.finish();
    let s = &out.snapshot.summary;
    let id = out.snapshot_id.map(|i| i.to_hex());
    let json = serde_json::json!({
        "message_type": "summary",
        "snapshot_id": id,
        "dry_run": a.dry_run,
        "files_new": s.files_new, "files_changed": s.files_changed, "files_unmodified": s.files_unchanged,
        "dirs_new": s.dirs_new, "dirs_changed": s.dirs_changed, "dirs_unmodified": s.dirs_unchanged,
        "total_files_processed": s.total_files, "total_bytes_processed": s.total_bytes,
        "bytes_read": s.bytes_read, "data_added": s.bytes_added, "blobs_added": s.blobs_added,
        "packs_written": out.packer.packs, "index_files_written": out.packer.index_files,
        "total_duration": s.duration_ms as f64 / 1000.0,
        "errors": s.errors.iter().map(|(p, m)| serde_json::json!({"path": p, "message": m})).collect::<Vec<_>>(),
    });
    for (name, v) in [
        ("backup_files_new", s.files_new),
        ("backup_files_changed", s.files_changed),
        ("backup_files_unmodified", s.files_unchanged),
        ("backup_files_processed", s.total_files),
        ("backup_bytes_processed", s.total_bytes),
        ("backup_bytes_read", s.bytes_read),
        ("backup_bytes_added", s.bytes_added),
        ("backup_errors", s.errors.len() as u64),
    ] {
        ctx.figure(name, v as f64);
    }
    // A listing, not a read of every snapshot: one request on any backend.
    if let Ok(n) = repo
        .list_names(cairn_core::backend::layout::HostDir::Snapshots)
        .map(|v| v.len())
    {
        ctx.figure("snapshots", n as f64);
    }
    output::result(ctx, &json, || {
        let mut t = format!(
            "Files:       {} new, {} changed, {} unmodified\nDirs:        {} new, {} changed, {} unmodified\nAdded:       {} in {} blobs ({} read)\nProcessed:   {} files, {} in {:.1}s\n",
            s.files_new, s.files_changed, s.files_unchanged, s.dirs_new, s.dirs_changed, s.dirs_unchanged,
            bytes(s.bytes_added), s.blobs_added, bytes(s.bytes_read), s.total_files, bytes(s.total_bytes),
            s.duration_ms as f64 / 1000.0
        );
        match &id {
            Some(id) => t.push_str(&format!("snapshot {} saved", &id[..8])),
            None => t.push_str("dry run: nothing written"),
        }
        if !s.errors.is_empty() {
            t.push_str(&format!(
                "\nWarning: {} files or directories could not be read; the snapshot is incomplete",
                s.errors.len()
            ));
        }
        t
    })?;
    Ok(if s.errors.is_empty() { 0 } else { 3 })
}
