//! `cairn repair index | snapshots`.

use anyhow::{Context as _, Result};
use cairn_core::repair::{
    repair_index, repair_snapshots, IndexRepairOptions, IndexRepairReport, SnapshotRepairOptions,
    SnapshotRepairReport,
};

use crate::args::RepairCommand;
use crate::commands::prune::{local_holder_is_dead, lock_owner};
use crate::context::Context;
use crate::output;

/// Runs a `repair` subcommand.
pub fn run(ctx: &Context, cmd: &RepairCommand) -> Result<i32> {
    match cmd {
        RepairCommand::Index { dry_run } => index(ctx, *dry_run),
        RepairCommand::Snapshots { dry_run, forget } => snapshots(ctx, *dry_run, *forget),
    }
}

fn summary(report: &impl serde::Serialize) -> Result<serde_json::Value> {
    let mut json = serde_json::to_value(report)?;
    json["message_type"] = "summary".into();
    Ok(json)
}

fn index(ctx: &Context, dry_run: bool) -> Result<i32> {
    // The index is what is being rebuilt: loading it first would only warn of its damage.
    let repo = ctx.open_without_index()?;
    let opts = IndexRepairOptions {
        dry_run,
        owner: Some(lock_owner()),
    };
    let r = repair_index(&repo, &opts, &local_holder_is_dead).context("repair index")?;
    if !ctx.global.json {
        // Unreadable packs are printed even with --quiet: they need a person.
        for u in &r.unreadable {
            let kept = if u.kept_old_entry {
                "kept its old index entry"
            } else {
                "not indexed"
            };
            eprintln!("warning: pack {} unreadable ({kept}): {}", u.path, u.error);
        }
        for w in &r.warnings {
            eprintln!("warning: {w}");
        }
    }
    output::result(ctx, &summary(&r)?, || index_text(&r))?;
    Ok(0)
}

fn index_text(r: &IndexRepairReport) -> String {
    let would = if r.dry_run { "would be " } else { "" };
    let mut t = String::new();
    for f in &r.damaged_index_files {
        t += &format!("damaged index file {f} {would}replaced\n");
    }
    for p in &r.packs_dropped {
        t += &format!("pack {p} is missing: {would}dropped from the index\n");
    }
    for p in &r.left_out {
        t += &format!("pack {p} is in no index and an open prune plan deletes it: left out\n");
    }
    if !r.packs_added.is_empty() {
        t += &format!(
            "{} packs no index listed {would}indexed\n",
            r.packs_added.len()
        );
    }
    t += &format!(
        "{} packs ({} blobs) {would}indexed in {} new index files; {} old index files {would}removed",
        r.packs_indexed, r.blobs_indexed, r.index_files_written, r.index_files_removed
    );
    t
}

fn snapshots(ctx: &Context, dry_run: bool, forget: bool) -> Result<i32> {
    // The loaded index decides what is lost (plans not applied: a condemned blob is still
    // there until a sweep deletes it, and no snapshot referencing it may lose it).
    let repo = ctx.open()?;
    let opts = SnapshotRepairOptions { dry_run, forget };
    let r = repair_snapshots(&repo, &opts).context("repair snapshots")?;
    if !ctx.global.json {
        for u in &r.unreadable {
            eprintln!("warning: {u} (cannot be repaired)");
        }
    }
    output::result(ctx, &summary(&r)?, || snapshots_text(&r))?;
    Ok(0)
}

fn snapshots_text(r: &SnapshotRepairReport) -> String {
    let mut t = String::new();
    for s in &r.repaired {
        let outcome = match (s.repaired, s.forgotten) {
            (None, _) => "would be repaired".to_owned(),
            (Some(n), true) => format!("repaired as {} (original removed)", n.short()),
            (Some(n), false) => format!("repaired as {} (original kept)", n.short()),
        };
        t += &format!(
            "snapshot {} lost {} item(s), {outcome}:\n",
            s.original.short(),
            s.lost.len()
        );
        for (path, why) in &s.lost {
            t += &format!("  {path}: {why}\n");
        }
    }
    t += &format!(
        "{} of {} snapshots {}",
        r.repaired.len(),
        r.snapshots_checked,
        if r.dry_run { "need repair" } else { "repaired" }
    );
    t
}
