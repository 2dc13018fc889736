//! `cairn stats`.

use std::io::Write;

use anyhow::{bail, Result};
use cairn_core::browse::stats;
use cairn_core::repository::TreeCache;
use cairn_core::Id;

use crate::args::StatsArgs;
use crate::commands::select;
use crate::context::Context;
use crate::output::bytes;

/// Runs `stats`.
pub fn run(ctx: &Context, a: &StatsArgs) -> Result<i32> {
    let mode = a.mode.as_str();
    if !matches!(mode, "restore-size" | "files-by-contents" | "raw-data") {
        bail!("unknown --mode {mode:?}: use restore-size, files-by-contents or raw-data");
    }
    let repo = ctx.open()?;
    let snaps = select::many(&repo, &a.snapshots, &a.filters)?;
    let roots: Vec<Id> = snaps.iter().map(|(_, s)| s.tree).collect();
    let cache = TreeCache::default();
    let totals = stats::repo_totals(&repo);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let n = snaps.len();
    let human = !ctx.global.json && !ctx.global.quiet;
    if human {
        writeln!(out, "Stats in {mode} mode:")?;
        writeln!(out, "     Snapshots processed:  {n}")?;
    }
    let mut json = match mode {
        "restore-size" => {
            let s = stats::restore_size(&repo, &cache, &roots)?;
            if human {
                writeln!(out, "        Total File Count:  {}", s.total_file_count)?;
                writeln!(out, "         Total Dir Count:  {}", s.total_dir_count)?;
                writeln!(out, "              Total Size:  {}", bytes(s.total_size))?;
            }
            serde_json::to_value(&s)?
        }
        "files-by-contents" => {
            let s = stats::files_by_contents(&repo, &cache, &roots)?;
            if human {
                writeln!(out, "        Total File Count:  {}", s.total_file_count)?;
                writeln!(out, "              Total Size:  {}", bytes(s.total_size))?;
            }
            serde_json::to_value(&s)?
        }
        _ => {
            let s = stats::raw_data(&repo, &cache, &roots)?;
            if human {
                writeln!(out, "        Total Blob Count:  {}", s.total_blob_count)?;
                writeln!(out, "         Tree Blob Count:  {}", s.tree_blob_count)?;
                writeln!(
                    out,
                    " Total Uncompressed Size:  {}",
                    bytes(s.total_uncompressed_size)
                )?;
                writeln!(out, "              Total Size:  {}", bytes(s.total_size))?;
                writeln!(
                    out,
                    "       Compression Ratio:  {:.2}x",
                    s.compression_ratio
                )?;
                if s.missing_blob_count > 0 {
                    writeln!(
                        out,
                        "           Missing Blobs:  {} (run check)",
                        s.missing_blob_count
                    )?;
                }
            }
            serde_json::to_value(&s)?
        }
    };
    if human {
        writeln!(out)?;
        writeln!(out, "Repository (this host's index):")?;
        writeln!(out, "              Pack Count:  {}", totals.pack_count)?;
        writeln!(
            out,
            "         Total Pack Size:  {}",
            bytes(totals.total_pack_size)
        )?;
        writeln!(
            out,
            "        Total Blob Count:  {}",
            totals.total_blob_count
        )?;
    }
    if ctx.global.json {
        json["snapshots_count"] = n.into();
        json["repository"] = serde_json::to_value(&totals)?;
        writeln!(out, "{json}")?;
    }
    out.flush()?;
    Ok(0)
}
