//! `cairn diff`.

use std::io::Write;

use anyhow::Result;
use cairn_core::browse::diff::{diff, Change, DiffStats, SideStats};
use cairn_core::repository::TreeCache;
use cairn_core::tree::NodeKind;

use crate::args::{DiffArgs, Filters};
use crate::commands::select;
use crate::context::Context;
use crate::output::bytes;

fn path_text(c: &Change<'_>) -> String {
    let mut p = c.path.to_string_lossy().into_owned();
    // restic marks directories with a trailing slash.
    if c.node.kind == Some(NodeKind::Dir) {
        p.push('/');
    }
    p
}

fn side(w: &mut dyn Write, title: &str, s: &SideStats) -> std::io::Result<()> {
    writeln!(
        w,
        "{title:<9} files {}, dirs {}, others {}, data blobs {}, tree blobs {}, {}",
        s.files,
        s.dirs,
        s.others,
        s.data_blobs,
        s.tree_blobs,
        bytes(s.bytes)
    )
}

fn summary(w: &mut dyn Write, s: &DiffStats) -> std::io::Result<()> {
    writeln!(w)?;
    writeln!(w, "Files changed: {}", s.changed_files)?;
    side(w, "Added:", &s.added)?;
    side(w, "Removed:", &s.removed)
}

/// Runs `diff`.
pub fn run(ctx: &Context, a: &DiffArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let none = Filters::default();
    let (id1, s1) = select::one(&repo, &a.first, &none)?;
    let (id2, s2) = select::one(&repo, &a.second, &none)?;
    let json = ctx.global.json;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if !json && !ctx.global.quiet {
        writeln!(
            out,
            "comparing snapshot {} to {}:\n",
            id1.short(),
            id2.short()
        )?;
    }
    let cache = TreeCache::default();
    let stats = diff(&repo, &cache, &s1.tree, &s2.tree, a.metadata, &mut |c| {
        if json {
            let v = serde_json::json!({
                "message_type": "change",
                "path": path_text(c),
                "modifier": c.modifier.symbol(),
            });
            writeln!(out, "{v}")?;
        } else {
            writeln!(out, "{:<5}{}", c.modifier.symbol(), path_text(c))?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    if json {
        let v = serde_json::json!({
            "message_type": "statistics",
            "source_snapshot": id1.to_hex(),
            "target_snapshot": id2.to_hex(),
            "changed_files": stats.changed_files,
            "added": stats.added,
            "removed": stats.removed,
        });
        writeln!(out, "{v}")?;
    } else if !ctx.global.quiet {
        summary(&mut out, &stats)?;
    }
    out.flush()?;
    Ok(0)
}
