//! `cairn restore`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use cairn_core::restorer::{self, Overwrite, RestoreOptions};
use cairn_core::source::exclude::{ExcludeOptions, Excluder};

use crate::args::{OverwriteArg, RestoreArgs};
use crate::commands::select;
use crate::context::Context;
use crate::output::{self, bytes};
use crate::progress::Meter;

fn patterns(p: &[String], ip: &[String]) -> Result<Option<Excluder>> {
    if p.is_empty() && ip.is_empty() {
        return Ok(None);
    }
    Ok(Some(Excluder::new(&ExcludeOptions {
        patterns: p.to_vec(),
        ipatterns: ip.to_vec(),
        ..ExcludeOptions::default()
    })?))
}

/// Runs `restore`.
pub fn run(ctx: &Context, a: &RestoreArgs) -> Result<i32> {
    let (spec, sub) = select::split_subpath(&a.snapshot);
    let repo = ctx.open()?;
    let (id, snap) = select::one(&repo, spec, &a.filters)?;
    if a.target.as_os_str().is_empty() {
        bail!("--target must not be empty");
    }
    let opts = RestoreOptions {
        target: crate::commands::backup::absolute(&a.target)?,
        subpath: sub.map(PathBuf::from),
        include: patterns(&a.include, &a.iinclude)?,
        exclude: patterns(&a.exclude, &a.iexclude)?,
        verify: a.verify,
        overwrite: match a.overwrite {
            OverwriteArg::Always => Overwrite::Always,
            OverwriteArg::IfChanged => Overwrite::IfChanged,
            OverwriteArg::Never => Overwrite::Never,
        },
        delete: a.delete,
        dry_run: a.dry_run,
    };
    let meter = Meter::start(!ctx.global.quiet && !ctx.global.json, false, true);
    let res = restorer::restore(&repo, &snap.tree, &opts, &meter, &ctx.cancel);
    meter.finish();
    let s = res?;
    for w in &s.warnings {
        eprintln!("warning: {w}");
    }
    for e in &s.errors {
        eprintln!("error: {e}");
    }
    for v in &s.verify_failures {
        eprintln!("verify failed: {v}");
    }
    output::result(
        ctx,
        &serde_json::json!({"message_type": "summary", "snapshot_id": id.to_hex(), "dry_run": a.dry_run, "summary": s}),
        || {
            format!(
                "restored snapshot {} to {}: {} files ({}), {} dirs, {} other entries, {} files skipped{}{}",
                id.short(),
                opts.target.display(),
                s.files_restored,
                bytes(s.bytes),
                s.dirs,
                s.others,
                s.files_skipped,
                if a.verify { format!(", verified ({} failures)", s.verify_failures.len()) } else { String::new() },
                if a.delete { format!(", {} removed", s.deleted) } else { String::new() },
            )
        },
    )?;
    if !s.errors.is_empty() || !s.verify_failures.is_empty() {
        bail!(
            "restore incomplete: {} errors, {} verify failures",
            s.errors.len(),
            s.verify_failures.len()
        );
    }
    Ok(0)
}
