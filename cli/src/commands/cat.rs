//! `cairn cat`: decrypted repository structures as JSON, for debugging.
//!
//! Content keys never appear: a tree's content entries are shown by blob id, which is
//! what the index and pack headers use anyway.

use std::io::Write;

use anyhow::{anyhow, Result};
use cairn_core::browse;
use cairn_core::repository::{Repository, TreeCache};
use cairn_core::tree::{Node, Tree, SCOPE_GROUP};
use cairn_core::Id;
use serde_json::{json, Value};

use crate::args::{CatArgs, CatKind, Filters};
use crate::commands::ls::{mode_string, rfc3339, snapshot_path};
use crate::commands::select;
use crate::context::Context;

fn need<'a>(id: &'a Option<String>, what: &str) -> Result<&'a str> {
    id.as_deref()
        .ok_or_else(|| anyhow!("cat {what} needs an id (or prefix)"))
}

/// The one item whose name starts with `prefix` (core's one id-prefix resolver).
fn by_prefix<T>(items: Vec<(Id, T)>, prefix: &str, what: &'static str) -> Result<(Id, T)> {
    let numbered: Vec<usize> = (0..items.len()).collect();
    let i = *cairn_core::snapshot::select::by_prefix(
        what,
        prefix,
        items.iter().map(|(id, _)| id.to_hex()).zip(&numbered),
    )?;
    items
        .into_iter()
        .nth(i)
        .ok_or_else(|| anyhow!("{what} {prefix} vanished while resolving it"))
}

fn node_json(repo: &Repository, n: &Node) -> Value {
    let mut v = json!({
        "name": String::from_utf8_lossy(&n.name),
        "type": n.kind,
        "mode": n.mode,
        "permissions": mode_string(n),
        "uid": n.uid, "gid": n.gid, "user": n.user, "group": n.group,
        "mtime": rfc3339(n.mtime_ns), "ctime": rfc3339(n.ctime_ns),
        "size": n.size, "nlink": n.nlink, "inode": n.inode, "dev": n.dev,
    });
    if std::str::from_utf8(&n.name).is_err() {
        v["name_hex"] = hex::encode(&n.name).into();
    }
    if n.rdev != 0 {
        v["rdev"] = n.rdev.into();
    }
    if !n.target.is_empty() {
        v["link_target"] = String::from_utf8_lossy(&n.target).into();
    }
    if !n.xattrs.is_empty() {
        let x: Vec<Value> = n
            .xattrs
            .iter()
            .map(|(k, val)| json!({"name": String::from_utf8_lossy(k), "value_len": val.len()}))
            .collect();
        v["xattrs"] = x.into();
    }
    if !n.content.is_empty() {
        let c: Vec<Value> = n
            .content
            .iter()
            .map(|c| {
                let scope = if c.scope == SCOPE_GROUP {
                    "group"
                } else {
                    "private"
                };
                let mut e =
                    json!({"scope": scope, "id": repo.content_id(c).1.to_hex(), "plen": c.plen});
                if let Some(sl) = &c.slice {
                    // The tag is a keyed hash of the file: no more telling than the id.
                    e["bundle_offset"] = sl.off.into();
                }
                e
            })
            .collect();
        v["content"] = c.into();
    }
    if let Some(t) = n.subtree {
        v["subtree"] = t.to_hex().into();
    }
    v
}

fn tree_json(repo: &Repository, id: &Id, t: &Tree) -> Value {
    let nodes: Vec<Value> = t.nodes.iter().map(|n| node_json(repo, n)).collect();
    json!({
        "id": id.to_hex(),
        "scopes": {
            "group": {"id": t.scopes.group.0.to_hex(), "epoch": t.scopes.group.1},
            "host": {"id": t.scopes.host.0.to_hex(), "epoch": t.scopes.host.1},
        },
        "nodes": nodes,
    })
}

/// A tree id from `SNAP[:path]`, or a full tree id the index knows.
fn tree_id(repo: &Repository, spec: &str) -> Result<Id> {
    let (snap_spec, sub) = select::split_subpath(spec);
    if sub.is_none() {
        if let Ok(id) = spec.parse::<Id>() {
            // Snapshot names are never blob ids, so an id the index knows is a tree.
            if repo.index().contains(&id) {
                return Ok(id);
            }
        }
    }
    let (_, snap) = select::one(repo, snap_spec, &Filters::default())?;
    let Some(sub) = sub else {
        return Ok(snap.tree);
    };
    let path = snapshot_path(std::path::Path::new(sub));
    let node = browse::lookup(repo, &TreeCache::default(), &snap.tree, &path)?;
    node.subtree
        .ok_or_else(|| anyhow!("{} is not a directory", path.display()))
}

fn value(ctx: &Context, a: &CatArgs) -> Result<Value> {
    let repo = ctx.open()?;
    Ok(match a.kind {
        CatKind::Config => serde_json::to_value(repo.config())?,
        CatKind::Snapshot => {
            let (id, s) = select::one(&repo, need(&a.id, "snapshot")?, &Filters::default())?;
            let mut v = serde_json::to_value(&s)?;
            v["id"] = id.to_hex().into();
            v
        }
        CatKind::Index => {
            let (files, bad) = repo.read_index_files()?;
            for e in bad {
                eprintln!("warning: {e}");
            }
            // An index file's name is the last component of its path.
            let named = files
                .into_iter()
                .filter_map(|(path, f)| {
                    let name = path.rsplit('/').next()?.parse::<Id>().ok()?;
                    Some((name, (path, f)))
                })
                .collect::<Vec<_>>();
            match &a.id {
                None => named
                    .iter()
                    .map(|(name, (path, f))| {
                        let blobs: usize = f.packs.iter().map(|p| p.entries.len()).sum();
                        json!({"name": name.to_hex(), "path": path, "packs": f.packs.len(), "blobs": blobs})
                    })
                    .collect::<Vec<_>>()
                    .into(),
                Some(p) => {
                    let (name, (path, f)) = by_prefix(named, p, "index file")?;
                    let mut v = serde_json::to_value(&f)?;
                    v["name"] = name.to_hex().into();
                    v["path"] = path.into();
                    v
                }
            }
        }
        CatKind::Tree => {
            let id = tree_id(&repo, need(&a.id, "tree")?)?;
            tree_json(&repo, &id, &repo.load_tree(&id)?)
        }
        CatKind::PackHeader => {
            let prefix = need(&a.id, "pack-header")?;
            let indexed: Vec<(Id, (cairn_core::Id16, u64))> = repo
                .index()
                .packs()
                .iter()
                .map(|p| (p.name, (p.host, p.len)))
                .collect();
            // A pack no index lists (left by a killed backup) is still worth a look.
            let (name, (host, len)) = match by_prefix(indexed, prefix, "pack") {
                Ok(x) => x,
                Err(_) => {
                    let listed = repo
                        .list_packs()?
                        .into_iter()
                        .map(|(n, len)| (n, (repo.host_id(), len)))
                        .collect();
                    by_prefix(listed, prefix, "pack")?
                }
            };
            let h = repo.read_pack_header(host, &name, len)?;
            json!({"name": name.to_hex(), "host": host.to_hex(), "len": len, "header": h})
        }
    })
}

/// Runs `cat`. The output is JSON with or without `--json`: these are structures, not
/// messages.
pub fn run(ctx: &Context, a: &CatArgs) -> Result<i32> {
    let v = value(ctx, a)?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &v)?;
    writeln!(out)?;
    out.flush()?;
    Ok(0)
}
