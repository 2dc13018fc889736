//! LocalBackend against the shared conformance suite, plus its durability guarantees.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use cairn_backends::local::io_error_kind;
use cairn_backends::LocalBackend;
use cairn_core::backend::{Backend, BackendErrorKind, WriteBody};
use cairn_core::testing::conformance::backend_conformance;

fn fresh() -> (tempfile::TempDir, LocalBackend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = LocalBackend::new(dir.path().join("repo"));
    b.create().expect("create");
    (dir, b)
}

/// Every directory entry below `dir`, temporary files included, relative to `dir`.
fn entries(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let rel = p
                .strip_prefix(dir)
                .expect("below dir")
                .display()
                .to_string();
            if p.is_dir() {
                stack.push(p);
            }
            out.push(rel);
        }
    }
    out.sort();
    out
}

#[test]
fn conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = AtomicUsize::new(0);
    backend_conformance(|| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        LocalBackend::new(dir.path().join(format!("repo{i}")))
    });
}

#[test]
fn failed_fsync_poisons_the_handle() {
    let (dir, b) = fresh();
    b.write("keep", &WriteBody::Bytes(b"before"))
        .expect("write before");

    b.fail_next_fsync_for_test();
    let e = b
        .write("lost", &WriteBody::Bytes(b"x"))
        .expect_err("fsync failure surfaces");
    assert_eq!(
        e.kind,
        BackendErrorKind::Poisoned,
        "the failing write itself: {e}"
    );
    assert!(b.is_poisoned(), "handle is poisoned");

    // Never retried: the next fsync would succeed, yet every write is refused.
    for p in ["lost", "other", "hosts/h/index/i"] {
        let e = b
            .write(p, &WriteBody::Bytes(b"y"))
            .expect_err("write after poison");
        assert_eq!(
            e.kind,
            BackendErrorKind::Poisoned,
            "write {p} after poison: {e}"
        );
    }
    assert_eq!(
        b.read("keep", None).expect("reads still work"),
        b"before",
        "old data"
    );
    assert_eq!(
        entries(&dir.path().join("repo")),
        vec!["keep".to_owned()],
        "neither the final name nor a temp file of the failed write remains"
    );
}

#[test]
fn failed_writes_leave_nothing_behind() {
    let (dir, b) = fresh();
    let root = dir.path().join("repo");
    b.write("f", &WriteBody::Bytes(b"a file")).expect("write f");

    let e = b
        .write("f/x", &WriteBody::Bytes(b"x"))
        .expect_err("parent is a file");
    assert_ne!(
        e.kind,
        BackendErrorKind::Poisoned,
        "an ordinary failure does not poison"
    );

    let missing = WriteBody::File {
        path: dir.path().join("no-such-spool"),
        len: 3,
    };
    let e = b
        .write("d/missing", &missing)
        .expect_err("missing spool file");
    assert_eq!(e.kind, BackendErrorKind::NotFound, "missing spool: {e}");

    let spool = dir.path().join("spool");
    std::fs::write(&spool, b"12345").expect("spool");
    let short = WriteBody::File {
        path: spool,
        len: 9,
    };
    let e = b.write("d/short", &short).expect_err("length mismatch");
    assert_eq!(e.kind, BackendErrorKind::Other, "length mismatch: {e}");

    // Only the intermediate directory made on demand may remain; no file under any name.
    assert_eq!(
        entries(&root),
        vec!["d".to_owned(), "f".to_owned()],
        "leftovers"
    );
    assert!(!b.is_poisoned(), "no fsync failed");
}

#[test]
fn list_skips_temp_files_and_missing_dirs() {
    let (dir, b) = fresh();
    let root = dir.path().join("repo");
    b.write("hosts/h/packs/ab/abcd", &WriteBody::Bytes(b"p"))
        .expect("write");
    std::fs::write(root.join("hosts/h/packs/ab/.tmp-0123456789abcdef"), b"junk").expect("junk");
    let got: Vec<String> = b
        .list("hosts")
        .expect("list")
        .map(|r| r.expect("item").path)
        .collect();
    assert_eq!(
        got,
        vec!["hosts/h/packs/ab/abcd".to_owned()],
        "temp file is hidden"
    );
    assert_eq!(
        b.list("nope").expect("list").count(),
        0,
        "missing dir lists empty"
    );

    let uncreated = LocalBackend::new(dir.path().join("never-created"));
    assert_eq!(
        uncreated.list("").expect("list").count(),
        0,
        "missing root lists empty"
    );
}

#[test]
fn write_before_create_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = LocalBackend::new(dir.path().join("repo"));
    let e = b
        .write("hosts/h/x", &WriteBody::Bytes(b"x"))
        .expect_err("no root");
    assert_eq!(
        e.kind,
        BackendErrorKind::NotFound,
        "writing needs create first: {e}"
    );
    assert!(
        !dir.path().join("repo").exists(),
        "a write must not invent the root"
    );
}

#[test]
fn rejects_escaping_paths() {
    let (_dir, b) = fresh();
    for p in ["../escape", "/abs", "a/./b"] {
        assert!(b.write(p, &WriteBody::Bytes(b"x")).is_err(), "write {p:?}");
        assert!(b.read(p, None).is_err(), "read {p:?}");
    }
}

#[test]
fn no_space_is_its_own_kind() {
    for errno in [libc::ENOSPC, libc::EDQUOT] {
        let e = std::io::Error::from_raw_os_error(errno);
        assert_eq!(io_error_kind(&e), BackendErrorKind::NoSpace, "{e}");
    }
}

#[test]
fn properties_and_location() {
    let (dir, b) = fresh();
    let p = b.properties();
    assert!(p.atomic_overwrite && p.is_local && p.can_delete, "{p:?}");
    assert_eq!(p.cost_class, "local", "cost class");
    assert_eq!(
        b.location(),
        dir.path().join("repo").display().to_string(),
        "location"
    );
}
