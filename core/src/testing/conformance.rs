//! The contract every [`Backend`] must honour, as one generic suite (after restic's
//! `internal/backend/test`).
//!
//! Each check gets a fresh, empty backend from the factory and calls `create` itself, so
//! the checks are independent and a failure names the check it came from.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use crate::backend::{Backend, BackendError, BackendErrorKind, ObjectInfo, WriteBody};

/// A check of the suite: its name and body.
type Check<B> = (&'static str, fn(&B));

/// Runs every conformance check, each on a fresh empty backend from `make`.
///
/// Panics with the check's name and what went wrong on the first violation.
pub fn backend_conformance<B: Backend>(make: impl Fn() -> B) {
    let checks: &[Check<B>] = &[
        ("create_is_idempotent", create_is_idempotent),
        ("empty_list", empty_list),
        ("round_trip_bytes", round_trip_bytes),
        ("round_trip_file", round_trip_file),
        ("ranged_reads", ranged_reads),
        ("range_past_end", range_past_end),
        ("missing_file", missing_file),
        ("stat_size", stat_size),
        ("list_recursive", list_recursive),
        ("remove", remove),
        ("discard", discard),
        ("overwrite", overwrite),
        ("read_stream", read_stream),
        ("concurrent_writes", concurrent_writes),
        ("large_object", large_object),
        ("nested_paths", nested_paths),
        ("exclusive_create", exclusive_create),
        ("exclusive_create_race", exclusive_create_race),
    ];
    for (name, check) in checks {
        let backend = make();
        ok(backend.create(), &format!("{name}: create"));
        // Re-panic with the check's name: the inner messages name paths, not checks.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&backend)));
        if let Err(payload) = run {
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(non-string panic)");
            panic!("backend conformance check `{name}` failed: {msg}");
        }
    }
}

/// Unwraps a backend result, panicking with context and the error's own sentence.
fn ok<T>(r: Result<T, BackendError>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected error: {e}"),
    }
}

/// Asserts a backend call failed with `kind`.
fn assert_kind<T: std::fmt::Debug>(r: Result<T, BackendError>, kind: BackendErrorKind, what: &str) {
    match r {
        Ok(v) => panic!("{what}: expected {kind:?}, got Ok({v:?})"),
        Err(e) => assert_eq!(e.kind, kind, "{what}: wrong error kind ({e})"),
    }
}

/// Deterministic, non-repeating-looking content so a shifted range cannot compare equal.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            // xorshift32: cheap and stable across platforms and versions.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn put<B: Backend>(b: &B, path: &str, data: &[u8]) {
    ok(
        b.write(path, &WriteBody::Bytes(data)),
        &format!("write {path}"),
    );
}

fn list_all<B: Backend>(b: &B, dir: &str) -> BTreeMap<String, u64> {
    let it = ok(b.list(dir), &format!("list {dir:?}"));
    let mut out = BTreeMap::new();
    for item in it {
        let ObjectInfo { path, size } = ok(item, &format!("list {dir:?} item"));
        let prev = out.insert(path.clone(), size);
        assert!(prev.is_none(), "list {dir:?} returned {path} twice");
    }
    out
}

fn stream_all<B: Backend>(b: &B, path: &str, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let mut got = Vec::new();
    let mut calls = 0;
    let r = b.read_stream(path, range.clone(), &mut |r: &mut dyn Read| {
        // The contract: the consumer may be called again from the start, so reset.
        calls += 1;
        got.clear();
        r.read_to_end(&mut got).map(drop)
    });
    ok(r, &format!("read_stream {path} {range:?}"));
    assert!(calls >= 1, "read_stream {path}: consumer never called");
    got
}

fn create_is_idempotent<B: Backend>(b: &B) {
    ok(b.create(), "second create");
    put(b, "config", b"c");
    ok(b.create(), "create over a populated repository");
    assert_eq!(
        ok(b.read("config", None), "read config"),
        b"c",
        "create must not wipe files"
    );
}

fn empty_list<B: Backend>(b: &B) {
    assert!(
        list_all(b, "").is_empty(),
        "a new repository lists nothing at the root"
    );
    assert!(
        list_all(b, "hosts").is_empty(),
        "a missing directory lists as empty"
    );
}

fn round_trip_bytes<B: Backend>(b: &B) {
    for (i, len) in [0usize, 1, 17, 4096, 100_003].into_iter().enumerate() {
        let path = format!("data/f{i}");
        let data = pattern(len, i as u8);
        put(b, &path, &data);
        assert_eq!(
            ok(b.read(&path, None), &path),
            data,
            "{path}: {len} bytes back"
        );
    }
}

fn round_trip_file<B: Backend>(b: &B) {
    let data = pattern(300_001, 7);
    let mut spool = ok_io(tempfile::NamedTempFile::new(), "spool file");
    ok_io(spool.write_all(&data), "fill spool");
    ok_io(spool.flush(), "flush spool");
    let body = WriteBody::File {
        path: spool.path().to_path_buf(),
        len: data.len() as u64,
    };
    ok(b.write("packs/aa/file", &body), "write File body");
    assert_eq!(
        ok(b.read("packs/aa/file", None), "read"),
        data,
        "File body round trip"
    );
    assert!(
        spool.path().exists(),
        "the backend must not consume the spool file"
    );
}

fn ok_io<T>(r: std::io::Result<T>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

fn ranged_reads<B: Backend>(b: &B) {
    let data = pattern(10_000, 3);
    put(b, "r", &data);
    let cases = [
        (0, 1),
        (0, 100),
        (4000, 4500),
        (9_999, 10_000),
        (9_000, 10_000),
        (0, 10_000),
        (5000, 5000),
    ];
    for (s, e) in cases {
        let got = ok(b.read("r", Some(s..e)), &format!("read r {s}..{e}"));
        assert_eq!(got, &data[s as usize..e as usize], "read r {s}..{e}");
    }
}

fn range_past_end<B: Backend>(b: &B) {
    put(b, "r", &pattern(100, 4));
    for (s, e) in [(0, 101), (50, 200), (100, 101), (1000, 2000)] {
        assert_kind(
            b.read("r", Some(s..e)),
            BackendErrorKind::RangeNotSatisfiable,
            &format!("read 100-byte file at {s}..{e}"),
        );
        let r = b.read_stream("r", Some(s..e), &mut |r: &mut dyn Read| {
            std::io::copy(r, &mut std::io::sink()).map(drop)
        });
        assert_kind(
            r,
            BackendErrorKind::RangeNotSatisfiable,
            &format!("read_stream 100-byte file at {s}..{e}"),
        );
    }
}

fn missing_file<B: Backend>(b: &B) {
    put(b, "present", b"x");
    for path in ["absent", "dir/absent", "present/below"] {
        let nf = BackendErrorKind::NotFound;
        if path != "present/below" {
            assert_kind(b.read(path, None), nf, &format!("read {path}"));
            assert_kind(b.read(path, Some(0..1)), nf, &format!("ranged read {path}"));
            assert_kind(b.stat(path), nf, &format!("stat {path}"));
            let r = b.read_stream(path, None, &mut |_r: &mut dyn Read| Ok(()));
            assert_kind(r, nf, &format!("read_stream {path}"));
            assert_kind(b.remove(path), nf, &format!("remove {path}"));
        } else {
            // A path below a file cannot exist; any error will do, but never success.
            assert!(b.read(path, None).is_err(), "read {path} must fail");
            assert!(b.stat(path).is_err(), "stat {path} must fail");
        }
    }
}

fn stat_size<B: Backend>(b: &B) {
    for (path, len) in [("s/0", 0usize), ("s/1", 1), ("s/big", 123_457)] {
        put(b, path, &pattern(len, 5));
        assert_eq!(ok(b.stat(path), path), len as u64, "stat {path}");
    }
}

fn list_recursive<B: Backend>(b: &B) {
    let files = [
        ("config", 3usize),
        ("keys/admin/k1", 10),
        ("hosts/h1/index/i1", 20),
        ("hosts/h1/packs/ab/abcd", 30),
        ("hosts/h1/packs/cd/cdef", 0),
        ("hosts/h2/snapshots/s1", 40),
        ("hostsx/other", 5),
    ];
    for (i, (p, len)) in files.iter().enumerate() {
        put(b, p, &pattern(*len, i as u8));
    }
    let expect = |pre: &str| -> BTreeMap<String, u64> {
        files
            .iter()
            .filter(|(p, _)| pre.is_empty() || p.starts_with(&format!("{pre}/")))
            .map(|(p, l)| ((*p).to_owned(), *l as u64))
            .collect()
    };
    for dir in [
        "",
        "hosts",
        "hosts/h1",
        "hosts/h1/packs",
        "hosts/h1/packs/ab",
        "keys",
    ] {
        assert_eq!(list_all(b, dir), expect(dir), "list {dir:?}");
    }
    assert!(
        list_all(b, "hosts/h3").is_empty(),
        "missing dir lists empty"
    );
    assert!(
        list_all(b, "hosts/h1/packs/ff").is_empty(),
        "missing leaf dir lists empty"
    );
}

fn remove<B: Backend>(b: &B) {
    put(b, "d/x", b"gone soon");
    put(b, "d/y", b"stays");
    if !b.properties().can_delete {
        assert_kind(
            b.remove("d/x"),
            BackendErrorKind::PermissionDenied,
            "append-only remove",
        );
        return;
    }
    ok(b.remove("d/x"), "remove d/x");
    assert_kind(
        b.read("d/x", None),
        BackendErrorKind::NotFound,
        "read after remove",
    );
    assert_kind(
        b.stat("d/x"),
        BackendErrorKind::NotFound,
        "stat after remove",
    );
    assert_kind(b.remove("d/x"), BackendErrorKind::NotFound, "second remove");
    let left: Vec<String> = list_all(b, "d").into_keys().collect();
    assert_eq!(left, vec!["d/y".to_owned()], "list after remove");
}

fn discard<B: Backend>(b: &B) {
    if !b.properties().can_delete {
        return;
    }
    put(b, "d/x", b"gone soon");
    ok(b.discard("d/x"), "discard d/x");
    assert_kind(
        b.stat("d/x"),
        BackendErrorKind::NotFound,
        "stat after discard",
    );
    ok(b.discard("d/x"), "discard of a file already gone");
    ok(b.discard("d/never"), "discard of a file never there");
}

fn overwrite<B: Backend>(b: &B) {
    put(b, "o", b"first version");
    let r = b.write("o", &WriteBody::Bytes(b"second"));
    if b.properties().atomic_overwrite {
        ok(r, "overwrite on an atomic_overwrite backend");
        assert_eq!(
            ok(b.read("o", None), "read o"),
            b"second",
            "overwrite replaces"
        );
        assert_eq!(ok(b.stat("o"), "stat o"), 6, "stat after overwrite");
    } else {
        match r {
            Ok(()) => assert_eq!(ok(b.read("o", None), "read o"), b"second", "overwrite"),
            Err(e) => {
                assert_eq!(
                    e.kind,
                    BackendErrorKind::AlreadyExists,
                    "refused overwrite: {e}"
                );
                assert_eq!(
                    ok(b.read("o", None), "read o"),
                    b"first version",
                    "a refused overwrite keeps the old file"
                );
            }
        }
    }
    assert_eq!(
        list_all(b, "").len(),
        1,
        "overwrite leaves exactly one listed file"
    );
}

fn read_stream<B: Backend>(b: &B) {
    let data = pattern(200_000, 9);
    put(b, "st", &data);
    assert_eq!(stream_all(b, "st", None), data, "whole stream");
    for (s, e) in [
        (0u64, 10u64),
        (1234, 150_000),
        (199_999, 200_000),
        (200_000, 200_000),
    ] {
        let got = stream_all(b, "st", Some(s..e));
        assert_eq!(got, &data[s as usize..e as usize], "stream {s}..{e}");
        assert_eq!(
            got,
            ok(b.read("st", Some(s..e)), "read"),
            "stream = read at {s}..{e}"
        );
    }
    let r = b.read_stream("st", None, &mut |_r: &mut dyn Read| {
        Err(std::io::Error::other("consumer gave up"))
    });
    assert!(r.is_err(), "a consumer error must surface as an error");
}

fn concurrent_writes<B: Backend>(b: &B) {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 8;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    let path = format!("hosts/h/packs/{t:02x}/{i:04x}");
                    put(b, &path, &pattern(1000 + t * 10 + i, (t * 16 + i) as u8));
                }
            });
        }
    });
    let listed = list_all(b, "hosts");
    assert_eq!(
        listed.len(),
        THREADS * PER_THREAD,
        "every concurrent write is listed"
    );
    for t in 0..THREADS {
        for i in 0..PER_THREAD {
            let path = format!("hosts/h/packs/{t:02x}/{i:04x}");
            let want = pattern(1000 + t * 10 + i, (t * 16 + i) as u8);
            assert_eq!(ok(b.read(&path, None), &path), want, "content of {path}");
        }
    }
}

fn large_object<B: Backend>(b: &B) {
    const LEN: usize = 20 << 20;
    let mut spool = ok_io(tempfile::NamedTempFile::new(), "spool file");
    let mut hasher = blake3::Hasher::new();
    let block = pattern(1 << 20, 11);
    for i in 0..(LEN >> 20) {
        // Vary each MiB so a misplaced block cannot hash the same.
        let mut blk = block.clone();
        blk[0] = i as u8;
        hasher.update(&blk);
        ok_io(spool.write_all(&blk), "fill spool");
    }
    ok_io(spool.flush(), "flush spool");
    let want = hasher.finalize();
    let body = WriteBody::File {
        path: spool.path().to_path_buf(),
        len: LEN as u64,
    };
    ok(b.write("hosts/h/packs/ff/large", &body), "write 20 MiB");
    assert_eq!(
        ok(b.stat("hosts/h/packs/ff/large"), "stat"),
        LEN as u64,
        "large size"
    );

    let mut hasher = blake3::Hasher::new();
    let mut n = 0u64;
    let r = b.read_stream("hosts/h/packs/ff/large", None, &mut |r: &mut dyn Read| {
        hasher.reset();
        n = 0;
        let mut buf = vec![0; 64 << 10];
        loop {
            let k = r.read(&mut buf)?;
            if k == 0 {
                return Ok(());
            }
            n += k as u64;
            hasher.update(&buf[..k]);
        }
    });
    ok(r, "stream 20 MiB");
    assert_eq!(n, LEN as u64, "streamed length");
    assert_eq!(hasher.finalize(), want, "streamed content");
    let tail = ok(
        b.read("hosts/h/packs/ff/large", Some(LEN as u64 - 100..LEN as u64)),
        "tail",
    );
    assert_eq!(
        tail,
        &block[block.len() - 100..],
        "tail of the large object"
    );
}

fn nested_paths<B: Backend>(b: &B) {
    let host = "0123456789abcdef0123456789abcdef";
    let name = "ab".to_owned() + &"0123456789abcdef".repeat(4)[2..];
    let path = format!("hosts/{host}/packs/ab/{name}");
    put(b, &path, b"nested");
    assert_eq!(ok(b.read(&path, None), &path), b"nested", "nested read");
    let listed: Vec<String> = list_all(b, "hosts").into_keys().collect();
    assert_eq!(
        listed,
        vec![path.clone()],
        "list returns the path exactly as written"
    );
    let listed: Vec<String> = list_all(b, &format!("hosts/{host}/packs"))
        .into_keys()
        .collect();
    assert_eq!(listed, vec![path], "list from a deeper directory");
}

fn exclusive_create<B: Backend>(b: &B) {
    ok(
        b.write_new("locks/a/l1", &WriteBody::Bytes(b"first")),
        "write_new into a new directory",
    );
    assert_eq!(ok(b.read("locks/a/l1", None), "read l1"), b"first");
    for body in [&b"second"[..], b"first"] {
        assert_kind(
            b.write_new("locks/a/l1", &WriteBody::Bytes(body)),
            BackendErrorKind::AlreadyExists,
            "second write_new (a backend cannot know the first was ours)",
        );
    }
    assert_eq!(
        ok(b.read("locks/a/l1", None), "read l1 again"),
        b"first",
        "a refused write_new leaves the first content"
    );
    put(b, "locks/a/plain", b"written");
    assert_kind(
        b.write_new("locks/a/plain", &WriteBody::Bytes(b"x")),
        BackendErrorKind::AlreadyExists,
        "write_new over a file from write",
    );
    assert_eq!(ok(b.read("locks/a/plain", None), "read plain"), b"written");
    let listed: Vec<String> = list_all(b, "locks").into_keys().collect();
    assert_eq!(
        listed,
        vec!["locks/a/l1".to_owned(), "locks/a/plain".to_owned()],
        "no leftovers from refused creates"
    );
}

fn exclusive_create_race<B: Backend>(b: &B) {
    const THREADS: usize = 8;
    const ROUNDS: usize = 3;
    for round in 0..ROUNDS {
        let path = format!("locks/race-{round}");
        let start = std::sync::Barrier::new(THREADS);
        let results: Vec<(usize, Result<(), BackendError>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (path, start) = (&path, &start);
                    s.spawn(move || {
                        let body = pattern(100 + t, (round * THREADS + t) as u8);
                        start.wait();
                        (t, b.write_new(path, &WriteBody::Bytes(&body)))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h.join() {
                    Ok(r) => r,
                    Err(_) => panic!("{path}: a writer thread panicked"),
                })
                .collect()
        });
        let mut winners = Vec::new();
        for (t, r) in results {
            match r {
                Ok(()) => winners.push(t),
                Err(e) => assert_eq!(
                    e.kind,
                    BackendErrorKind::AlreadyExists,
                    "{path}: a losing writer must see AlreadyExists ({e})"
                ),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "{path}: exactly one winner, got {winners:?}"
        );
        let t = winners[0];
        assert_eq!(
            ok(b.read(&path, None), &path),
            pattern(100 + t, (round * THREADS + t) as u8),
            "{path}: the content is the winner's"
        );
    }
    assert_eq!(list_all(b, "locks").len(), ROUNDS, "one file per round");
}
