use std::sync::Arc;

use super::*;
use crate::backend::layout::host_file;
use crate::id::Id16;
use crate::testing::{FaultyBackend, InMemoryBackend, Op};

struct Quiet;
impl MirrorProgress for Quiet {}

/// Records the order in which files reach the target.
#[derive(Default)]
struct Order(Mutex<Vec<String>>);
impl MirrorProgress for Order {
    fn copied(&self, path: &str, _bytes: u64) {
        self.0.lock().expect("lock").push(path.to_owned());
    }
}

fn named(dir: HostDir, content: &[u8]) -> (String, Vec<u8>) {
    let host = Id16([3; 16]);
    (
        host_file(&host, dir, &Id::of_bytes(content)),
        content.to_vec(),
    )
}

/// A repository-shaped source: config, a key, two packs, an index and a snapshot.
fn source() -> (InMemoryBackend, Vec<String>) {
    let b = InMemoryBackend::new();
    let mut paths = Vec::new();
    let mut files = vec![
        ("config".to_owned(), b"signed config".to_vec()),
        ("keys/admin/0123".to_owned(), b"key file".to_vec()),
        named(HostDir::Snapshots, b"snapshot"),
        named(HostDir::Index, b"index"),
        named(HostDir::TreeIndex, b"tree index"),
        named(HostDir::Packs, &vec![7u8; 300_000]),
        named(HostDir::Packs, b"pack two"),
    ];
    for (p, data) in files.drain(..) {
        b.put_raw(&p, data);
        paths.push(p);
    }
    (b, paths)
}

#[test]
fn copies_everything_then_nothing() {
    let (src, paths) = source();
    let dst = InMemoryBackend::new();
    let order = Order::default();
    let r = mirror(&src, &dst, &MirrorOptions::default(), &order).expect("mirror");
    assert_eq!((r.copied, r.present, r.source_files), (7, 0, 7));
    assert!(r.is_complete());
    assert_eq!(dst.paths(), src.paths());
    for p in &paths {
        assert_eq!(dst.read(p, None).ok(), src.read(p, None).ok(), "{p}");
    }
    // Dependency order: every pack before any index, indexes before snapshots, config last.
    let got = order.0.into_inner().expect("lock");
    let stages: Vec<u8> = got.iter().map(|p| stage(p)).collect();
    assert!(stages.windows(2).all(|w| w[0] <= w[1]), "{got:?}");
    assert_eq!(got.last().map(String::as_str), Some("config"));

    let again = mirror(&src, &dst, &MirrorOptions::default(), &Quiet).expect("mirror");
    assert_eq!((again.copied, again.present), (0, 7));
}

#[test]
fn damaged_source_file_is_reported_not_copied() {
    let (src, _) = source();
    let (bad, _) = named(HostDir::Packs, b"pack two");
    src.put_raw(&bad, b"pack TWO".to_vec());
    let dst = InMemoryBackend::new();
    let r = mirror(&src, &dst, &MirrorOptions::default(), &Quiet).expect("mirror");
    assert_eq!(r.mismatched, vec![bad.clone()]);
    assert!(!r.is_complete());
    assert_eq!(r.copied, 6);
    assert!(dst.read(&bad, None).is_err(), "damaged file was copied");
}

#[test]
fn delete_and_dry_run() {
    let (src, _) = source();
    let dst = InMemoryBackend::new();
    mirror(&src, &dst, &MirrorOptions::default(), &Quiet).expect("mirror");
    let (extra, data) = named(HostDir::Snapshots, b"forgotten snapshot");
    dst.put_raw(&extra, data);
    let dry = MirrorOptions {
        delete: true,
        dry_run: true,
        ..MirrorOptions::default()
    };
    let r = mirror(&src, &dst, &dry, &Quiet).expect("dry run");
    assert_eq!((r.deleted, r.copied), (1, 0));
    assert!(dst.read(&extra, None).is_ok(), "dry run deleted");
    let del = MirrorOptions {
        delete: true,
        ..MirrorOptions::default()
    };
    let r = mirror(&src, &dst, &del, &Quiet).expect("delete");
    assert_eq!(r.deleted, 1);
    assert_eq!(dst.paths(), src.paths());
}

#[test]
fn refuses_a_different_repository() {
    let (src, _) = source();
    let dst = InMemoryBackend::new();
    dst.put_raw("config", b"another repository".to_vec());
    let e = mirror(&src, &dst, &MirrorOptions::default(), &Quiet).expect_err("foreign");
    assert!(matches!(e, MirrorError::ForeignTarget), "{e}");
}

#[test]
fn full_target_stops_cleanly_and_resumes() {
    let (src, _) = source();
    let dst = Arc::new(FaultyBackend::new(InMemoryBackend::new()));
    dst.fail_from_nth(Op::Write, 3, BackendErrorKind::NoSpace);
    let opts = MirrorOptions {
        parallel: 1,
        ..MirrorOptions::default()
    };
    let e = mirror(&src, &dst, &opts, &Quiet).expect_err("disk full");
    assert!(
        matches!(&e, MirrorError::Backend { side: "target", source } if source.kind == BackendErrorKind::NoSpace),
        "{e}"
    );
    // Only whole packs arrived, and no config: the target is not yet a repository.
    let partial = dst.inner().paths();
    assert_eq!(partial.len(), 2, "{partial:?}");
    assert!(partial.iter().all(|p| stage(p) == 0), "{partial:?}");
    dst.clear_faults();
    let r = mirror(&src, &dst, &opts, &Quiet).expect("resume");
    assert_eq!((r.copied, r.present), (5, 2));
    assert_eq!(dst.inner().paths(), src.paths());
}

#[test]
fn size_mismatch_at_target_is_recopied() {
    let (src, paths) = source();
    let dst = InMemoryBackend::new();
    mirror(&src, &dst, &MirrorOptions::default(), &Quiet).expect("mirror");
    let victim = paths.iter().find(|p| stage(p) == 0).expect("a pack");
    dst.put_raw(victim, b"truncated".to_vec());
    let r = mirror(&src, &dst, &MirrorOptions::default(), &Quiet).expect("repair");
    assert_eq!(r.replaced, vec![victim.clone()]);
    assert_eq!(dst.read(victim, None).ok(), src.read(victim, None).ok());
}
