//! The `cairn` binary: parses arguments, runs one command, maps errors to exit codes.
//!
//! Exit codes (stable, documented in README): 0 ok, 1 fatal, 3 snapshot written but
//! incomplete, 10 no repository, 11 locked, 12 wrong password, 130 interrupted.

mod args;
mod commands;
mod context;
mod malloc;
mod metrics;
mod mount;
mod output;
mod profile;
mod progress;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;

use args::{Cli, Command};
use context::Context;

fn exit_code(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        if let Some(err) = cause.downcast_ref::<cairn_core::Error>() {
            return match err {
                cairn_core::Error::RepositoryNotFound { .. } => 10,
                cairn_core::Error::Locked { .. } => 11,
                cairn_core::Error::WrongPassword { .. } => 12,
                cairn_core::Error::Cancelled => 130,
                _ => 1,
            };
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return 0;
            }
        }
    }
    1
}

fn run(ctx: &Context, cmd: &Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Init(a) => commands::init::run(ctx, a),
        Command::Backup(a) => commands::backup::run(ctx, a),
        Command::Snapshots(a) => commands::snapshots::run(ctx, a),
        Command::Restore(a) => commands::restore::run(ctx, a),
        Command::Forget(a) => commands::forget::run(ctx, a),
        Command::Key(k) => commands::key::run(ctx, k),
        Command::Ls(a) => commands::ls::run(ctx, a),
        Command::Find(a) => commands::find::run(ctx, a),
        Command::Diff(a) => commands::diff::run(ctx, a),
        Command::Dump(a) => commands::dump::run(ctx, a),
        Command::Stats(a) => commands::stats::run(ctx, a),
        Command::Cat(a) => commands::cat::run(ctx, a),
        Command::Check(a) => commands::check::run(ctx, a),
        Command::Mirror(a) => commands::mirror::run(ctx, a),
        Command::Prune(a) => commands::prune::run(ctx, a),
        Command::Unlock => commands::prune::unlock(ctx),
        Command::Repair(r) => commands::repair::run(ctx, r),
        Command::Mount(a) => commands::mount::run(ctx, a),
        Command::Generate(a) => commands::generate::run(a),
    }
}

/// The command's name, as the metrics file labels it.
fn command_name(cmd: &Command) -> &'static str {
    match cmd {
        Command::Init(_) => "init",
        Command::Backup(_) => "backup",
        Command::Snapshots(_) => "snapshots",
        Command::Restore(_) => "restore",
        Command::Forget(_) => "forget",
        Command::Key(_) => "key",
        Command::Ls(_) => "ls",
        Command::Find(_) => "find",
        Command::Diff(_) => "diff",
        Command::Dump(_) => "dump",
        Command::Stats(_) => "stats",
        Command::Cat(_) => "cat",
        Command::Check(_) => "check",
        Command::Mirror(_) => "mirror",
        Command::Prune(_) => "prune",
        Command::Unlock => "unlock",
        Command::Repair(_) => "repair",
        Command::Mount(_) => "mount",
        Command::Generate(_) => "generate",
    }
}

/// Writes the metrics file, if asked; a failure there is a warning, not a failed backup.
fn write_metrics(ctx: &Context, cmd: &Command, code: i32, started: std::time::Instant) {
    let Some(path) = &ctx.global.metrics_file else {
        return;
    };
    let repository = ctx
        .location()
        .map(|(l, _)| cairn_backends::url::redact(&l))
        .unwrap_or_default();
    let figures = ctx.figures.lock().map(|f| f.clone()).unwrap_or_default();
    let cost_class = ctx.cost_class.lock().ok().and_then(|c| *c);
    let labeled = ctx.labeled.lock().map(|f| f.clone()).unwrap_or_default();
    let run = metrics::Run {
        labeled: &labeled,
        command: command_name(cmd),
        repository: &repository,
        exit_code: code,
        duration_s: started.elapsed().as_secs_f64(),
        figures: &figures,
        requests: ctx.requests.snapshot(),
        cost_class,
    };
    if let Err(e) = metrics::write(path, &run) {
        eprintln!("warning: {e:#}");
    }
}

/// Worker threads: twice the cores (at least 4), so that while one worker waits for a
/// cold file to come off the disk another keeps the CPU busy (measured: 4 threads on 2
/// cores back up a cold /usr/share 1.6x faster than 2). RAYON_NUM_THREADS overrides.
fn configure_threads() {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads((2 * cores).max(4))
        .build_global();
}

fn main() {
    malloc::tune();
    let started = std::time::Instant::now();
    let mut cli = Cli::parse();
    if let Err(e) = profile::apply(&mut cli) {
        eprintln!("cairn: {e:#}");
        std::process::exit(1);
    }
    configure_threads();
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let c = cancel.clone();
        // A second Ctrl-C exits at once; the first lets the command stop cleanly.
        let _ = ctrlc::set_handler(move || {
            if c.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    }
    let ctx = Context::new(cli.global.clone(), cancel.clone());
    let code = match run(&ctx, &cli.command) {
        Ok(code) => code,
        Err(e) => {
            let mut code = exit_code(&e);
            if cancel.load(Ordering::SeqCst) {
                code = 130;
            }
            if code != 0 {
                if ctx.global.json {
                    let v = serde_json::json!({"message_type": "exit_error", "code": code, "message": format!("{e:#}")});
                    eprintln!("{v}");
                } else {
                    eprintln!("cairn: {e:#}");
                }
            }
            code
        }
    };
    write_metrics(&ctx, &cli.command, code, started);
    std::process::exit(code);
}
