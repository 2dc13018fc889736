//! Small files bundled per directory: what the trees record, that every reader gets each
//! file's own bytes back, and that re-backups keep what did not change.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use cairn_core::archiver::{backup, NoProgress};
use cairn_core::browse::reader::{ChunkCache, FileReader};
use cairn_core::browse::{dump_file, lookup};
use cairn_core::error::Error;
use cairn_core::repository::{Repository, TreeCache};
use cairn_core::tree::{Node, SCOPE_PRIVATE};

use crate::support::*;

/// Text-like small files that share words, as a directory of configuration does.
fn small(i: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for line in 0..(20 + i * 7 % 300) {
        v.extend_from_slice(
            format!("option_{} = value {} # file {i}\n", line % 17, line).as_bytes(),
        );
    }
    v
}

fn node(repo: &Repository, root: &cairn_core::id::Id, path: &Path) -> Node {
    lookup(repo, &TreeCache::default(), root, path).unwrap()
}

fn dumped(repo: &Repository, n: &Node) -> Vec<u8> {
    let mut out = Vec::new();
    dump_file::<Error>(repo, n, &mut |b| {
        out.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn small_files_share_bundles_and_every_reader_gets_their_own_bytes() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    for i in 0..40 {
        write(&s.join(format!("etc/f{i:02}")), &small(i));
    }
    write(&s.join("etc/empty"), b"");
    write(&s.join("etc/big.bin"), &noise(3, 2 << 20));
    write(&s.join("lonely/only"), b"alone in its directory");
    let (_b, mut repo) = init();
    let out = backup_of(&repo, vec![s.to_path_buf()]);
    assert!(out.snapshot.summary.errors.is_empty());
    assert_eq!(out.snapshot.summary.files_new, 43);
    repo.load_index().unwrap();
    let root = out.snapshot.tree;

    let members: Vec<Node> = (0..40)
        .map(|i| node(&repo, &root, &s.join(format!("etc/f{i:02}"))))
        .collect();
    let total: usize = (0..40).map(|i| small(i).len()).sum();
    // Each member is one slice; consecutive files share a bundle until it reaches 256 KiB.
    let mut bundles = std::collections::BTreeSet::new();
    for (i, m) in members.iter().enumerate() {
        let [c] = m.content.as_slice() else {
            panic!("one entry per small file")
        };
        assert_eq!(c.scope, SCOPE_PRIVATE);
        assert_eq!(c.plen as usize, small(i).len());
        assert!(c.slice.is_some(), "f{i:02} is bundled");
        bundles.insert(c.ck);
    }
    assert!(
        bundles.len() < 40 && bundles.len() >= total / (256 << 10),
        "{} bundles for {total} bytes",
        bundles.len()
    );
    // Alone in its directory a small file is an ordinary blob; large files are chunked.
    let only = node(&repo, &root, &s.join("lonely/only"));
    assert!(only.content.len() == 1 && only.content[0].slice.is_none());
    let big = node(&repo, &root, &s.join("etc/big.bin"));
    assert!(big.content.iter().all(|c| c.slice.is_none()));
    assert!(node(&repo, &root, &s.join("etc/empty")).content.is_empty());

    // dump (cat, dump), the mount's reader at every offset, and a full restore.
    let cache = ChunkCache::new(1 << 20);
    for (i, m) in members.iter().enumerate() {
        let want = small(i);
        assert_eq!(dumped(&repo, m), want, "dump f{i:02}");
        let r = FileReader::new(m).unwrap();
        assert_eq!(r.len(), want.len() as u64);
        let mid = want.len() / 3;
        assert_eq!(
            r.read_at(&repo, &cache, mid as u64, 100).unwrap(),
            want[mid..mid + 100]
        );
        assert_eq!(r.read_at(&repo, &cache, 0, 1 << 20).unwrap(), want);
    }
    // restore_into restores with --verify, which checks each member against its tag.
    let dst = restore_into(&repo, &out.snapshot);
    let r = dst.path().join(s.strip_prefix("/").unwrap());
    for i in 0..40 {
        assert_eq!(
            std::fs::read(r.join(format!("etc/f{i:02}"))).unwrap(),
            small(i)
        );
    }
    assert_eq!(
        std::fs::read(r.join("etc/big.bin")).unwrap(),
        noise(3, 2 << 20)
    );
    assert_eq!(
        std::fs::read(r.join("lonely/only")).unwrap(),
        b"alone in its directory"
    );
}

#[test]
fn rebackups_keep_bundles_of_what_did_not_change() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    for i in 0..10 {
        write(&s.join(format!("d/f{i}")), &small(i));
    }
    let (_b, mut repo) = init();
    let stop = AtomicBool::new(false);
    let first = backup_of(&repo, vec![s.to_path_buf()]);
    repo.load_index().unwrap();
    let id = first.snapshot_id.unwrap();
    let before = |i: usize| node(&repo, &first.snapshot.tree, &s.join(format!("d/f{i}")));
    let old: Vec<Node> = (0..10).map(before).collect();

    // Without a parent every file is read again, and the same directory makes the same
    // bundles: nothing new is stored but the snapshot's trees.
    let again = backup_of(&repo, vec![s.to_path_buf()]);
    assert_eq!(
        again.snapshot.summary.bytes_read,
        first.snapshot.summary.bytes_read
    );
    repo.load_index().unwrap();
    for (i, o) in old.iter().enumerate() {
        let n = node(&repo, &again.snapshot.tree, &s.join(format!("d/f{i}")));
        assert_eq!(n.content, o.content, "f{i}: the same bundle");
    }
    // At most the trees above the source changed (other tests write into /tmp).
    assert!(again.packer.blobs <= 2, "{}", again.packer.blobs);

    // Touched (same bytes, new ctime and mtime) and changed files, with a parent.
    let f3 = s.join("d/f3");
    write(&f3, &small(3));
    write(&s.join("d/f7"), b"now something else entirely");
    let mut o = backup_opts(vec![s.to_path_buf()]);
    o.parent = Some((id, repo.load_snapshot(&id).unwrap()));
    let third = backup(&repo, &o, None, &NoProgress, &stop).unwrap();
    repo.load_index().unwrap();
    let after = |i: usize| node(&repo, &third.snapshot.tree, &s.join(format!("d/f{i}")));
    assert_eq!(third.snapshot.summary.files_changed, 2);
    assert_eq!(third.snapshot.summary.files_unchanged, 8);
    assert_eq!(
        after(3).content,
        old[3].content,
        "a touched file keeps its slice"
    );
    for i in [0, 1, 2, 4, 5, 6, 8, 9] {
        assert_eq!(after(i).content, old[i].content, "f{i} unchanged");
    }
    // f7 alone was new: stored as a blob of its own, with its new bytes.
    let f7 = after(7);
    assert!(f7.content[0].slice.is_none());
    assert_eq!(dumped(&repo, &f7), b"now something else entirely");
    assert!(!cairn_core::tree::same_bytes(&f7.content, &old[7].content));
    restore_into(&repo, &third.snapshot);
}

#[test]
fn small_directories_join_their_parents_bundle_and_restore_whole() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    // Deep directories with a file or two each, and a parent with its own files.
    let files = [
        "top/a.conf",
        "top/one/b.conf",
        "top/one/two/c.conf",
        "top/one/two/three/d.conf",
        "top/one/two/three/e.conf",
        "top/other/f.conf",
        "top/z.conf",
    ];
    for (i, f) in files.iter().enumerate() {
        write(&s.join(f), &small(i));
    }
    let (_b, mut repo) = init();
    let out = backup_of(&repo, vec![s.to_path_buf()]);
    assert!(out.snapshot.summary.errors.is_empty());
    assert_eq!(
        out.snapshot.summary.dirs_new, 6,
        "top, one, two, three, other"
    );
    repo.load_index().unwrap();
    let root = out.snapshot.tree;
    let nodes: Vec<Node> = files
        .iter()
        .map(|f| node(&repo, &root, &s.join(f)))
        .collect();
    // All seven files share one bundle, at distinct offsets, each reading back its own.
    let ck = nodes[0].content[0].ck;
    let mut offsets = std::collections::BTreeSet::new();
    for (i, n) in nodes.iter().enumerate() {
        let c = n.content[0];
        assert_eq!(c.ck, ck, "{} is in the shared bundle", files[i]);
        assert!(offsets.insert(c.slice.unwrap().off));
        assert_eq!(dumped(&repo, n), small(i), "{}", files[i]);
    }
    assert_eq!(
        out.packer.blobs,
        1 + 8,
        "one bundle, and the trees of /, /tmp, the source and its 5 directories"
    );
    let dst = restore_into(&repo, &out.snapshot);
    let r = dst.path().join(s.strip_prefix("/").unwrap());
    for (i, f) in files.iter().enumerate() {
        assert_eq!(std::fs::read(r.join(f)).unwrap(), small(i), "{f}");
    }

    // A change deep down: a new bundle for what was read, the rest kept.
    write(&s.join("top/one/two/three/e.conf"), b"changed deep down");
    let id = out.snapshot_id.unwrap();
    let mut o = backup_opts(vec![s.to_path_buf()]);
    o.parent = Some((id, repo.load_snapshot(&id).unwrap()));
    let stop = AtomicBool::new(false);
    let next = backup(&repo, &o, None, &NoProgress, &stop).unwrap();
    repo.load_index().unwrap();
    let e = node(
        &repo,
        &next.snapshot.tree,
        &s.join("top/one/two/three/e.conf"),
    );
    assert_eq!(dumped(&repo, &e), b"changed deep down");
    let d = node(
        &repo,
        &next.snapshot.tree,
        &s.join("top/one/two/three/d.conf"),
    );
    assert_eq!(d.content, nodes[3].content);
    restore_into(&repo, &next.snapshot);
}

/// Grows `b.conf` to 100 KiB as soon as the backup reports `a.conf` done: after the walk
/// listed `b.conf` as small, before its bundle reads it.
struct GrowAfterA {
    b: std::path::PathBuf,
    grown: std::sync::atomic::AtomicBool,
}

impl cairn_core::archiver::Progress for GrowAfterA {
    fn file_done(&self, path: &Path, _bytes: u64, _reused: bool) {
        if path.ends_with("a.conf") && !self.grown.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::fs::write(&self.b, noise(9, 100 << 10)).unwrap();
        }
    }
}

#[test]
fn a_file_that_grows_past_the_limit_after_listing_is_chunked_whole() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    write(&s.join("a.conf"), &small(1));
    write(&s.join("b.conf"), &small(2));
    let (_b, mut repo) = init();
    let progress = GrowAfterA {
        b: s.join("b.conf"),
        grown: AtomicBool::new(false),
    };
    let o = backup_opts(vec![s.to_path_buf()]);
    let out = backup(&repo, &o, None, &progress, &AtomicBool::new(false)).unwrap();
    assert!(out.snapshot.summary.errors.is_empty());
    assert!(progress.grown.load(std::sync::atomic::Ordering::SeqCst));
    repo.load_index().unwrap();
    let b = node(&repo, &out.snapshot.tree, &s.join("b.conf"));
    assert_eq!(b.size, 100 << 10, "the size read, not the size listed");
    assert!(b.content.iter().all(|c| c.slice.is_none()));
    assert_eq!(dumped(&repo, &b), noise(9, 100 << 10));
    // Left alone in its group, a.conf is a blob of its own.
    let a = node(&repo, &out.snapshot.tree, &s.join("a.conf"));
    assert!(a.content.len() == 1 && a.content[0].slice.is_none());
    assert_eq!(dumped(&repo, &a), small(1));
    let dst = restore_into(&repo, &out.snapshot);
    let r = dst.path().join(s.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(r.join("b.conf")).unwrap(),
        noise(9, 100 << 10)
    );
}
