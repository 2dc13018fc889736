//! `cairn dump`.

use std::io::Write;

use anyhow::{bail, Result};
use cairn_core::browse;
use cairn_core::repository::TreeCache;
use cairn_core::tree::NodeKind;

use crate::args::DumpArgs;
use crate::commands::ls::snapshot_path;
use crate::commands::select;
use crate::context::Context;

/// Runs `dump`.
pub fn run(ctx: &Context, a: &DumpArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let (_, snap) = select::one(&repo, &a.snapshot, &a.filters)?;
    let path = snapshot_path(&a.path);
    let node = browse::lookup(&repo, &TreeCache::default(), &snap.tree, &path)?;
    let shown = path.to_string_lossy();
    match node.kind {
        Some(NodeKind::File) => {}
        Some(NodeKind::Dir) => {
            bail!("{shown} is a directory (dump writes one file; use restore for directories)")
        }
        Some(NodeKind::Symlink) => bail!(
            "{shown} is a symbolic link to {}, not a file",
            String::from_utf8_lossy(&node.target)
        ),
        _ => bail!("{shown} is not a regular file"),
    }
    // Blobs are chunk-sized: a buffer of that order keeps writes large without holding
    // more than one chunk or so.
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    browse::dump_file(&repo, &node, &mut |b| {
        out.write_all(b)?;
        Ok::<_, anyhow::Error>(())
    })?;
    out.flush()?;
    Ok(0)
}
