//! `cairn ls`, and the node rendering `find` shares.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use cairn_core::browse::{self, Visit};
use cairn_core::id::SnapshotId;
use cairn_core::repository::TreeCache;
use cairn_core::snapshot::Snapshot;
use cairn_core::tree::{Node, NodeKind};

use crate::args::LsArgs;
use crate::commands::select;
use crate::context::Context;

/// `ls -l` style mode: kind letter and rwx bits, with setuid/setgid/sticky.
pub fn mode_string(n: &Node) -> String {
    let kind = match n.kind {
        Some(NodeKind::Dir) => 'd',
        Some(NodeKind::Symlink) => 'l',
        Some(NodeKind::CharDev) => 'c',
        Some(NodeKind::BlockDev) => 'b',
        Some(NodeKind::Fifo) => 'p',
        _ => '-',
    };
    let m = n.mode;
    let mut s = String::with_capacity(10);
    s.push(kind);
    for (shift, special, on, off) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let bits = (m >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, m & special != 0) {
            (true, true) => on,
            (false, true) => off,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// Local time of ns since the epoch, for tables.
pub fn local_time(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// RFC 3339 time of ns since the epoch, for JSON.
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .with_timezone(&chrono::Local)
        .to_rfc3339()
}

fn owner(name: &str, id: u32) -> String {
    if name.is_empty() {
        id.to_string()
    } else {
        name.to_owned()
    }
}

/// One `ls -l` line (without newline). Names are printed lossily: never a panic on bytes
/// that are not UTF-8.
pub fn long_line(path: &Path, n: &Node) -> String {
    let mut line = format!(
        "{} {:>8} {:>8} {:>12} {} {}",
        mode_string(n),
        owner(&n.user, n.uid),
        owner(&n.group, n.gid),
        n.size,
        local_time(n.mtime_ns),
        path.to_string_lossy()
    );
    if n.kind == Some(NodeKind::Symlink) {
        line.push_str(" -> ");
        line.push_str(&String::from_utf8_lossy(&n.target));
    }
    line
}

/// restic-style JSON of a node.
pub fn node_json(path: &Path, n: &Node) -> serde_json::Value {
    let mut v = serde_json::json!({
        "struct_type": "node",
        "name": String::from_utf8_lossy(&n.name),
        "type": n.kind,
        "path": path.to_string_lossy(),
        "uid": n.uid,
        "gid": n.gid,
        "user": n.user,
        "group": n.group,
        "size": n.size,
        "mode": n.mode,
        "permissions": mode_string(n),
        "mtime": rfc3339(n.mtime_ns),
        "ctime": rfc3339(n.ctime_ns),
        "inode": n.inode,
    });
    if n.kind == Some(NodeKind::Symlink) {
        v["link_target"] = String::from_utf8_lossy(&n.target).into();
    }
    v
}

/// The snapshot line `ls` and `find` start with.
pub fn snapshot_json(id: &SnapshotId, s: &Snapshot) -> serde_json::Value {
    serde_json::json!({
        "struct_type": "snapshot",
        "id": id.to_hex(), "short_id": id.short(),
        "time": s.datetime().to_rfc3339(),
        "tree": s.tree.to_hex(), "paths": s.paths,
        "hostname": s.hostname, "username": s.username, "tags": s.tags,
    })
}

/// An in-snapshot path from an argument: relative paths are taken from the root.
pub fn snapshot_path(p: &Path) -> PathBuf {
    Path::new("/").join(p)
}

struct Printer<W: Write> {
    out: W,
    json: bool,
    long: bool,
}

impl<W: Write> Printer<W> {
    fn node(&mut self, path: &Path, n: &Node) -> Result<()> {
        if self.json {
            writeln!(self.out, "{}", node_json(path, n))?;
        } else if self.long {
            writeln!(self.out, "{}", long_line(path, n))?;
        } else {
            writeln!(self.out, "{}", path.to_string_lossy())?;
        }
        Ok(())
    }
}

/// Runs `ls`.
pub fn run(ctx: &Context, a: &LsArgs) -> Result<i32> {
    let repo = ctx.open()?;
    let (id, snap) = select::one(&repo, &a.snapshot, &a.filters)?;
    let cache = TreeCache::default();
    // Resolve every path first, so a typo fails before anything is printed.
    let mut found = Vec::with_capacity(a.paths.len());
    for arg in &a.paths {
        let path = snapshot_path(arg);
        let node = browse::lookup(&repo, &cache, &snap.tree, &path)?;
        found.push((path, node));
    }
    let mut p = Printer {
        out: std::io::BufWriter::new(std::io::stdout().lock()),
        json: ctx.global.json,
        long: a.long,
    };
    if p.json {
        writeln!(p.out, "{}", snapshot_json(&id, &snap))?;
    } else if !ctx.global.quiet {
        let filter = if a.paths.is_empty() {
            String::new()
        } else {
            let f: Vec<String> = a.paths.iter().map(|x| x.display().to_string()).collect();
            format!(" filtered by [{}]", f.join(" "))
        };
        writeln!(
            p.out,
            "snapshot {} of [{}]{filter} at {}:",
            id.short(),
            snap.paths.join(" "),
            select::time_str(&snap)
        )?;
    }
    if a.paths.is_empty() {
        browse::walk(&repo, &cache, &snap.tree, Path::new("/"), &mut |path, n| {
            p.node(path, n)?;
            Ok::<_, anyhow::Error>(Visit::Continue)
        })?;
    } else {
        let below = if a.recursive {
            Visit::Continue
        } else {
            Visit::SkipSubtree
        };
        for (path, node) in found {
            // The root has no entry of its own to print.
            if path != Path::new("/") {
                p.node(&path, &node)?;
            }
            if let (Some(NodeKind::Dir), Some(t)) = (node.kind, node.subtree) {
                browse::walk(&repo, &cache, &t, &path, &mut |path, n| {
                    p.node(path, n)?;
                    Ok::<_, anyhow::Error>(below)
                })?;
            }
        }
    }
    p.out.flush()?;
    Ok(0)
}
