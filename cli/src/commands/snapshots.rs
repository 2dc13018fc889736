//! `cairn snapshots`.

use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::Result;
use cairn_core::id::SnapshotId;
use cairn_core::snapshot::Snapshot;

use crate::args::SnapshotsArgs;
use crate::commands::select;
use crate::context::Context;
use crate::output;

/// A snapshot as `snapshots --json` prints it (restic's fields, where they exist).
pub fn json(id: &SnapshotId, s: &Snapshot) -> serde_json::Value {
    serde_json::json!({
        "id": id.to_hex(), "short_id": id.short(),
        "time": s.datetime().to_rfc3339(),
        "hostname": s.hostname, "username": s.username,
        "paths": s.paths, "tags": s.tags,
        "tree": s.tree.to_hex(), "parent": s.parent.map(|p| p.to_hex()),
        "program_version": s.program, "summary": s.summary,
    })
}

/// Runs `snapshots`.
pub fn run(ctx: &Context, a: &SnapshotsArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let mut snaps: Vec<_> = select::all(&repo)?
        .into_iter()
        .filter(|(id, s)| {
            select::matches(s, &a.filters)
                && (a.ids.is_empty()
                    || a.ids
                        .iter()
                        .any(|p| id.to_hex().starts_with(&p.to_ascii_lowercase())))
        })
        .collect();
    if let Some(n) = a.latest {
        let mut groups: BTreeMap<(String, Vec<String>), Vec<usize>> = BTreeMap::new();
        for (i, (_, s)) in snaps.iter().enumerate() {
            let mut p = s.paths.clone();
            p.sort();
            groups.entry((s.hostname.clone(), p)).or_default().push(i);
        }
        let keep: std::collections::HashSet<usize> = groups
            .values()
            .flat_map(|v| v.iter().rev().take(n).copied())
            .collect();
        snaps = snaps
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .map(|(_, x)| x)
            .collect();
    }
    if ctx.global.json {
        let v: Vec<serde_json::Value> = snaps.iter().map(|(id, s)| json(id, s)).collect();
        writeln!(output::stdout(), "{}", serde_json::Value::Array(v))?;
        return Ok(0);
    }
    if ctx.global.quiet {
        return Ok(0);
    }
    writeln!(
        output::stdout(),
        "{:<10} {:<19}  {:<16} {:<16} Paths",
        "ID",
        "Time",
        "Host",
        "Tags"
    )?;
    writeln!(output::stdout(), "{}", "-".repeat(80))?;
    for (id, s) in &snaps {
        let incomplete = if s.summary.errors.is_empty() {
            ""
        } else {
            " (incomplete)"
        };
        for (i, p) in s.paths.iter().enumerate() {
            if i == 0 {
                writeln!(
                    output::stdout(),
                    "{:<10} {:<19}  {:<16} {:<16} {p}{incomplete}",
                    id.short(),
                    select::time_str(s),
                    s.hostname,
                    s.tags.join(",")
                )?;
            } else {
                writeln!(output::stdout(), "{:<66}{p}", "")?;
            }
        }
    }
    writeln!(output::stdout(), "{}", "-".repeat(80))?;
    writeln!(output::stdout(), "{} snapshots", snaps.len())?;
    Ok(0)
}
