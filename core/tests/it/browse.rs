//! Browsing snapshots: walk order and skipping, lookup, find, diff classification,
//! statistics and dump.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use cairn_core::archiver::{backup, BackupOptions, NoProgress};
use cairn_core::browse::diff::{diff, Modifier};
use cairn_core::browse::find::{find, Matcher};
use cairn_core::browse::{self, stats, Visit};
use cairn_core::repository::{Repository, TreeCache};
use cairn_core::tree::NodeKind;
use cairn_core::{Error, Id};

use crate::support::*;

fn snap(repo: &mut Repository, src: &Path, time_ns: i64) -> Id {
    let opts = BackupOptions {
        time_ns,
        ..backup_opts(vec![src.to_path_buf()])
    };
    let out = backup(repo, &opts, None, &NoProgress, &AtomicBool::new(false)).unwrap();
    repo.load_index().unwrap();
    out.snapshot.tree
}

/// Paths below `base`, relative, in the order `visit` saw them.
fn rel(base: &Path, paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .filter_map(|p| p.strip_prefix(base).ok())
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn walk_order_skip_stop_lookup_and_find() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    write(&s.join("a/1"), b"one");
    write(&s.join("a/2"), b"two");
    write(&s.join("b/x.txt"), b"x");
    write(&s.join("c.txt"), b"c");
    let (_b, mut repo) = init();
    let root = snap(&mut repo, s, 1);
    let cache = TreeCache::default();

    let mut seen = Vec::new();
    browse::walk(&repo, &cache, &root, Path::new("/"), &mut |p, _| {
        seen.push(p.to_path_buf());
        Ok::<_, Error>(Visit::Continue)
    })
    .unwrap();
    assert_eq!(rel(s, &seen), ["a", "a/1", "a/2", "b", "b/x.txt", "c.txt"]);

    seen.clear();
    browse::walk(&repo, &cache, &root, Path::new("/"), &mut |p, n| {
        seen.push(p.to_path_buf());
        Ok::<_, Error>(if n.name == b"a" {
            Visit::SkipSubtree
        } else if n.name == b"b" {
            Visit::Stop
        } else {
            Visit::Continue
        })
    })
    .unwrap();
    assert_eq!(rel(s, &seen), ["a", "b"]);

    let x = browse::lookup(&repo, &cache, &root, &s.join("b/x.txt")).unwrap();
    assert_eq!((x.kind, x.size), (Some(NodeKind::File), 1));
    let r = browse::lookup(&repo, &cache, &root, Path::new("/")).unwrap();
    assert_eq!(r.subtree, Some(root));
    assert!(matches!(
        browse::lookup(&repo, &cache, &root, &s.join("b/nope")),
        Err(Error::NotFound { .. })
    ));
    // A path through a file is not found either.
    assert!(browse::lookup(&repo, &cache, &root, &s.join("c.txt/y")).is_err());

    let m = Matcher::new(&["*.TXT".into()], true).unwrap();
    let hits: Vec<PathBuf> = find(&repo, &cache, &root, &m)
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(rel(s, &hits), ["b/x.txt", "c.txt"]);
    let full = format!("{}/a/*", s.display());
    let m = Matcher::new(&[full], false).unwrap();
    let hits: Vec<PathBuf> = find(&repo, &cache, &root, &m)
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(rel(s, &hits), ["a/1", "a/2"]);
}

#[test]
fn diff_classifies_changes_and_counts_blobs() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    write(&s.join("keep.txt"), b"keep");
    write(&s.join("mod.txt"), b"version one");
    write(&s.join("gone.txt"), b"gone gone");
    write(&s.join("dir/inner"), b"inner");
    write(&s.join("flip"), b"flipfile");
    write(&s.join("meta.txt"), b"meta");
    write(&s.join("same/deep/f"), b"unchanged");
    let (_b, mut repo) = init();
    let a = snap(&mut repo, s, 1);

    write(&s.join("mod.txt"), b"version two");
    std::fs::remove_file(s.join("gone.txt")).unwrap();
    write(&s.join("new.txt"), b"brand new");
    std::fs::remove_file(s.join("flip")).unwrap();
    write(&s.join("flip/child"), b"child!");
    std::fs::remove_file(s.join("dir/inner")).unwrap();
    write(&s.join("dir/added"), b"added");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.join("meta.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let b = snap(&mut repo, s, 2);

    let cache = TreeCache::default();
    let run = |metadata: bool| {
        let mut changes = Vec::new();
        let st = diff(&repo, &cache, &a, &b, metadata, &mut |c| {
            changes.push((c.path.to_path_buf(), c.modifier));
            Ok::<_, Error>(())
        })
        .unwrap();
        let named: Vec<(String, Modifier)> = changes
            .iter()
            .filter_map(|(p, m)| {
                let r = p.strip_prefix(s).ok()?;
                (!r.as_os_str().is_empty()).then(|| (r.to_string_lossy().into_owned(), *m))
            })
            .collect();
        (named, st)
    };

    let (changes, st) = run(false);
    let want = [
        ("dir/added", Modifier::Added),
        ("dir/inner", Modifier::Removed),
        ("flip", Modifier::TypeChanged),
        ("flip/child", Modifier::Added),
        ("gone.txt", Modifier::Removed),
        ("mod.txt", Modifier::Modified),
        ("new.txt", Modifier::Added),
    ];
    let want: Vec<(String, Modifier)> = want.iter().map(|(p, m)| (p.to_string(), *m)).collect();
    assert_eq!(changes, want);
    assert_eq!(st.changed_files, 2);
    assert_eq!((st.added.files, st.removed.files), (3, 2));
    // Blobs, as restic counts them. Small files share bundle blobs, and a directory's
    // last few small files join its parent's bundle: each snapshot here holds all its
    // files in one bundle, made again by the second backup (it has no parent). New:
    // "added", "child!", "keep", "meta", "version two", "brand new", "unchanged".
    assert_eq!(st.added.bytes, 5 + 6 + 4 + 4 + 11 + 9 + 9);
    // Old: "inner", "flipfile", "gone gone", "keep", "meta", "version one", "unchanged".
    assert_eq!(st.removed.bytes, 5 + 8 + 9 + 4 + 4 + 11 + 9);
    assert_eq!((st.added.data_blobs, st.removed.data_blobs), (1, 1));

    let (changes, _) = run(true);
    assert!(changes.contains(&("meta.txt".into(), Modifier::Metadata)));
    assert!(!changes
        .iter()
        .any(|(p, _)| p.starts_with("same") || p == "keep.txt"));

    let (none, st) = {
        let mut n = 0;
        let st = diff(&repo, &cache, &a, &a, true, &mut |_| {
            n += 1;
            Ok::<_, Error>(())
        })
        .unwrap();
        (n, st)
    };
    assert_eq!(none, 0);
    assert_eq!(st, Default::default());
}

#[test]
fn stats_modes_and_dump() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    let data = noise(7, 300_000);
    write(&s.join("a"), &data);
    write(&s.join("b"), &data);
    std::fs::hard_link(s.join("a"), s.join("h")).unwrap();
    write(&s.join("e"), b"");
    let (_b, mut repo) = init();
    let root = snap(&mut repo, s, 1);
    let cache = TreeCache::default();
    // Directories from "/" down to the source, the root excluded (it has no node).
    let dirs = s.components().count() as u64 - 1;

    let rs = stats::restore_size(&repo, &cache, &[root]).unwrap();
    assert_eq!(rs.total_file_count, 4);
    assert_eq!(rs.total_dir_count, dirs);
    assert_eq!(rs.total_size, 2 * 300_000, "the hardlink counts once");
    let rs2 = stats::restore_size(&repo, &cache, &[root, root]).unwrap();
    assert_eq!(rs2.total_size, 4 * 300_000, "once per snapshot");

    let fc = stats::files_by_contents(&repo, &cache, &[root, root]).unwrap();
    assert_eq!((fc.total_file_count, fc.total_size), (2, 300_000));

    let raw = stats::raw_data(&repo, &cache, &[root, root]).unwrap();
    assert_eq!(raw.missing_blob_count, 0);
    assert_eq!(raw.tree_blob_count, dirs + 1);
    assert!(raw.total_blob_count > raw.tree_blob_count);
    assert!(raw.total_uncompressed_size >= 300_000);
    assert!(raw.compression_ratio > 0.0);
    let totals = stats::repo_totals(&repo);
    assert!(totals.pack_count >= 2 && totals.total_blob_count >= raw.total_blob_count);

    let node = browse::lookup(&repo, &cache, &root, &s.join("b")).unwrap();
    let mut out = Vec::new();
    let mut calls = 0;
    let n = browse::dump_file(&repo, &node, &mut |chunk| {
        calls += 1;
        out.extend_from_slice(chunk);
        Ok::<_, Error>(())
    })
    .unwrap();
    assert_eq!((n, out == data), (300_000, true));
    assert_eq!(calls, node.content.len());
    let dir = browse::lookup(&repo, &cache, &root, s).unwrap();
    assert!(browse::dump_file(&repo, &dir, &mut |_| Ok::<_, Error>(())).is_err());
}
