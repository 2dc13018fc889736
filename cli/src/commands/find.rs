//! `cairn find`.

use std::io::Write;

use anyhow::Result;
use cairn_core::browse::find::{find, Matcher};
use cairn_core::repository::TreeCache;

use crate::args::FindArgs;
use crate::commands::ls::{long_line, rfc3339};
use crate::commands::select;
use crate::context::Context;

/// Runs `find`.
pub fn run(ctx: &Context, a: &FindArgs) -> Result<i32> {
    let matcher = Matcher::new(&a.patterns, a.ignore_case)?;
    let repo = ctx.open()?;
    let snaps = select::many(&repo, &a.snapshots, &a.filters)?;
    // Snapshots of one host share most subtrees: one cache for all of them.
    let cache = TreeCache::default();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut json = Vec::new();
    let mut first = true;
    for (id, snap) in &snaps {
        let hits = find(&repo, &cache, &snap.tree, &matcher)?;
        if hits.is_empty() {
            continue;
        }
        if ctx.global.json {
            let matches: Vec<serde_json::Value> = hits
                .iter()
                .map(|(p, n)| {
                    serde_json::json!({
                        "path": p.to_string_lossy(), "type": n.kind,
                        "size": n.size, "mtime": rfc3339(n.mtime_ns),
                        "mode": n.mode, "uid": n.uid, "gid": n.gid,
                    })
                })
                .collect();
            json.push(serde_json::json!({"snapshot": id.to_hex(), "matches": matches}));
            continue;
        }
        if !first {
            writeln!(out)?;
        }
        first = false;
        writeln!(
            out,
            "Found matching entries in snapshot {} from {}",
            id.short(),
            select::time_str(snap)
        )?;
        for (p, n) in &hits {
            writeln!(out, "{}", long_line(p, n))?;
        }
    }
    if ctx.global.json {
        writeln!(out, "{}", serde_json::Value::Array(json))?;
    }
    out.flush()?;
    Ok(0)
}
