//! S3Backend against a real S3 server (SeaweedFS from `scripts/servers/start-s3.sh`, on
//! 127.0.0.1 only): the conformance suite with an admin key and with a prefix-scoped key,
//! the error messages a user sees for the usual credential mistakes, multipart uploads and a
//! `b2:` location through the S3-compatible API.
//!
//! Needs `CAIRN_TEST_S3_*` from `$S3_DIR/env`. Without them the tests skip loudly, except
//! under `CI=true`, where a missing server is a failure.
//!
//! Credentials go through `S3Config` values, never through process environment variables,
//! so the tests can run in parallel.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_backends::s3::{S3Config, S3Credentials};
use cairn_backends::{BackendOptions, S3Backend};
use cairn_core::backend::{Backend, BackendError, BackendErrorKind, WriteBody};
use cairn_core::testing::conformance::backend_conformance;

/// The test server's coordinates.
struct Server {
    endpoint: String,
    bucket: String,
    admin: S3Credentials,
    hosta: S3Credentials,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The server from the environment, or `None` (after a loud note) when it is not set up.
fn server() -> Option<Server> {
    let Some(endpoint) = var("CAIRN_TEST_S3_ENDPOINT") else {
        let msg = "CAIRN_TEST_S3_ENDPOINT is not set: run scripts/servers/start-s3.sh and \
                   source /var/tmp/cairn-s3/env";
        if var("CI").as_deref() == Some("true") {
            panic!("{msg} (a missing S3 server is a failure under CI)");
        }
        eprintln!("\n!!! SKIPPING S3 TEST: {msg} !!!\n");
        return None;
    };
    assert!(
        endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:"),
        "the S3 tests only talk to a local server, not {endpoint}"
    );
    let need = |n: &str| var(n).unwrap_or_else(|| panic!("{n} is not set (see $S3_DIR/env)"));
    Some(Server {
        endpoint,
        bucket: need("CAIRN_TEST_S3_BUCKET"),
        admin: S3Credentials::new(
            need("CAIRN_TEST_S3_ADMIN_KEY"),
            need("CAIRN_TEST_S3_ADMIN_SECRET"),
        ),
        hosta: S3Credentials::new(
            need("CAIRN_TEST_S3_HOSTA_KEY"),
            need("CAIRN_TEST_S3_HOSTA_SECRET"),
        ),
    })
}

/// A name no other test run uses, so runs never see each other's objects.
fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    format!("{tag}-{}-{nanos:x}-{n}", std::process::id())
}

fn open(cfg: S3Config) -> S3Backend {
    match S3Backend::new(cfg) {
        Ok(b) => b,
        Err(e) => panic!("open S3 backend: {e}"),
    }
}

fn cfg(s: &Server, prefix: &str, creds: &S3Credentials) -> S3Config {
    S3Config::new(&s.endpoint, &s.bucket, prefix, creds.clone())
}

/// Asserts an error of `kind` whose text contains every one of `words`.
fn assert_err<T: std::fmt::Debug>(
    r: Result<T, BackendError>,
    kind: BackendErrorKind,
    words: &[&str],
    what: &str,
) {
    match r {
        Ok(v) => panic!("{what}: expected {kind:?}, got Ok({v:?})"),
        Err(e) => {
            let text = e.to_string();
            eprintln!("{what}: {text}");
            assert_eq!(e.kind, kind, "{what}: wrong kind: {text}");
            for w in words {
                assert!(text.contains(w), "{what}: {text:?} should mention {w:?}");
            }
        }
    }
}

#[test]
fn conformance_with_admin_key() {
    let Some(s) = server() else { return };
    let base = unique("conformance-admin");
    let n = AtomicUsize::new(0);
    backend_conformance(|| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        open(cfg(&s, &format!("{base}/{i}"), &s.admin))
    });
}

/// The same contract on a versioned bucket (a delete there only hides the file, as on B2)
/// with `s3.delete-versions`: a remove lists and deletes every version, and a missing key
/// is still NotFound without a HEAD.
#[test]
fn conformance_deleting_versions_on_a_versioned_bucket() {
    let Some(s) = server() else { return };
    let bucket = std::env::var("CAIRN_TEST_S3_VERSIONED_BUCKET")
        .unwrap_or_else(|_| panic!("CAIRN_TEST_S3_VERSIONED_BUCKET is not set (see $S3_DIR/env)"));
    let base = unique("conformance-versions");
    let n = AtomicUsize::new(0);
    backend_conformance(|| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        let mut c = S3Config::new(&s.endpoint, &bucket, format!("{base}/{i}"), s.admin.clone());
        c.delete_versions = true;
        open(c)
    });
}

#[test]
fn conformance_with_prefix_scoped_key() {
    let Some(s) = server() else { return };
    // hosta may read, write and list only below backups/hosta/, like a B2 namePrefix key.
    let base = format!("hosta/{}", unique("conformance"));
    let n = AtomicUsize::new(0);
    backend_conformance(|| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        open(cfg(&s, &format!("{base}/{i}"), &s.hosta))
    });
}

#[test]
fn scoped_key_outside_its_prefix_is_denied_clearly() {
    let Some(s) = server() else { return };
    let prefix = format!("hostb/{}", unique("intruder"));
    let b = open(cfg(&s, &prefix, &s.hosta));
    let words = [
        "access denied to s3 bucket backups prefix hostb/",
        "restricted to another prefix",
    ];
    assert_err(
        b.write("config", &WriteBody::Bytes(b"x")),
        BackendErrorKind::PermissionDenied,
        &words,
        "write",
    );
    assert_err(
        b.read("config", None),
        BackendErrorKind::PermissionDenied,
        &words,
        "read",
    );
    let listed: Result<Vec<_>, _> = match b.list("") {
        Ok(it) => it.collect(),
        Err(e) => Err(e),
    };
    assert_err(listed, BackendErrorKind::PermissionDenied, &words, "list");
    // A sibling prefix that merely starts with "hosta" is not hosta's either.
    let b = open(cfg(&s, &unique("hostaX"), &s.hosta));
    assert_err(
        b.write("config", &WriteBody::Bytes(b"x")),
        BackendErrorKind::PermissionDenied,
        &["access denied"],
        "write to a sibling prefix",
    );
}

#[test]
fn wrong_secret_key_is_named() {
    let Some(s) = server() else { return };
    let creds = S3Credentials::new(&s.admin.access_key_id, "not-the-secret");
    let b = open(cfg(&s, &unique("wrong-secret"), &creds));
    for (what, r) in [
        (
            "write",
            b.write("config", &WriteBody::Bytes(b"x")).map(drop),
        ),
        ("read", b.read("config", None).map(drop)),
    ] {
        assert_err(
            r,
            BackendErrorKind::PermissionDenied,
            &["wrong secret key"],
            what,
        );
    }
    assert!(
        !b.location().contains("not-the-secret"),
        "location must not show the secret"
    );
}

#[test]
fn unknown_access_key_is_named() {
    let Some(s) = server() else { return };
    let creds = S3Credentials::new("nosuchkey", "whatever");
    let b = open(cfg(&s, &unique("unknown-key"), &creds));
    assert_err(
        b.write("config", &WriteBody::Bytes(b"x")),
        BackendErrorKind::PermissionDenied,
        &["unknown access key", "nosuchkey"],
        "write",
    );
}

#[test]
fn missing_bucket_is_named() {
    let Some(s) = server() else { return };
    let mut c = cfg(&s, "repo", &s.admin);
    // Only reads: SeaweedFS makes a missing bucket on an admin's first PUT.
    let bucket = unique("cairn-missing");
    c.bucket.clone_from(&bucket);
    let b = open(c);
    // create succeeds by design (it may not probe the bucket); the first real use says why.
    assert!(b.create().is_ok(), "create sends nothing");
    let words = [format!("bucket {bucket} does not exist")];
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    assert_err(
        b.read("config", None),
        BackendErrorKind::Other,
        &words,
        "read",
    );
    let listed: Result<Vec<_>, _> = b.list("").expect("list starts lazily").collect();
    assert_err(listed, BackendErrorKind::Other, &words, "list");
}

#[test]
fn multipart_upload_round_trips() {
    let Some(s) = server() else { return };
    let mut c = cfg(&s, &unique("multipart"), &s.admin);
    c.part_size = 5 << 20;
    let b = open(c);
    // 40 MiB + a ragged tail: eight full 5 MiB parts and a short last one.
    let len = (40 << 20) + 12_345;
    let mut spool = tempfile::NamedTempFile::new().expect("spool");
    let mut want = blake3::Hasher::new();
    let mut x = 0x9e37_79b9_u32;
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for byte in block.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *byte = x.to_le_bytes()[0];
        }
        let n = left.min(block.len());
        want.update(&block[..n]);
        spool.write_all(&block[..n]).expect("fill spool");
        left -= n;
    }
    spool.flush().expect("flush");
    let body = WriteBody::File {
        path: spool.path().to_path_buf(),
        len: len as u64,
    };
    b.write("packs/big", &body).expect("multipart write");
    assert_eq!(b.stat("packs/big").expect("stat"), len as u64);
    let mut got = blake3::Hasher::new();
    b.read_stream("packs/big", None, &mut |r: &mut dyn Read| {
        got.reset();
        let mut buf = vec![0; 1 << 16];
        loop {
            let k = r.read(&mut buf)?;
            if k == 0 {
                return Ok(());
            }
            got.update(&buf[..k]);
        }
    })
    .expect("stream back");
    assert_eq!(got.finalize(), want.finalize(), "content after multipart");
    // A range across the boundary of parts 1 and 2.
    let r = (5 << 20) - 10..(5 << 20) + 10;
    assert_eq!(b.read("packs/big", Some(r)).expect("ranged").len(), 20);
    let listed: Vec<_> = b
        .list("packs")
        .expect("list")
        .collect::<Result<_, _>>()
        .expect("list items");
    assert_eq!(listed.len(), 1, "one object, no part leftovers: {listed:?}");
}

#[test]
fn b2_location_through_the_s3_api() {
    let Some(s) = server() else { return };
    // What `b2:backups:/hosta/...` does with B2_ENDPOINT and a B2 key id/key in the
    // environment, with the environment passed explicitly.
    let env = |name: &str| -> Option<String> {
        match name {
            "B2_ENDPOINT" => Some(s.endpoint.clone()),
            "B2_ACCOUNT_ID" => Some(s.hosta.access_key_id.clone()),
            "B2_ACCOUNT_KEY" => Some(s.hosta.secret_access_key.clone()),
            _ => None,
        }
    };
    let loc = cairn_backends::Location::parse(&format!("b2:{}:/hosta/{}", s.bucket, unique("b2")))
        .expect("parse b2 location");
    let cairn_backends::Location::B2 { bucket, prefix } = loc else {
        panic!("not a b2 location: {loc:?}");
    };
    let c =
        S3Config::for_b2(&bucket, &prefix, &BackendOptions::default(), &env).expect("b2 config");
    let b = open(c);
    let p = b.properties();
    assert_eq!(p.cost_class, "b2");
    assert!(
        b.location().starts_with("b2:backups:/hosta/"),
        "{}",
        b.location()
    );
    b.create().expect("create");
    b.write("keys/k1", &WriteBody::Bytes(b"key"))
        .expect("write");
    assert_eq!(b.read("keys/k1", None).expect("read"), b"key");
    let names: Vec<String> = b
        .list("")
        .expect("list")
        .map(|r| r.expect("item").path)
        .collect();
    assert_eq!(names, vec!["keys/k1".to_owned()]);
    b.remove("keys/k1").expect("remove");
}

#[test]
fn unreachable_server_is_transient() {
    // No S3 server needed: a port nobody listens on (bound, then released) refuses at once.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let c = S3Config::new(
        format!("http://127.0.0.1:{port}"),
        "backups",
        "repo",
        S3Credentials::new("k", "s"),
    );
    let b = open(c);
    assert_err(
        b.read("config", None),
        BackendErrorKind::Transient,
        &["cannot reach http://127.0.0.1"],
        "read",
    );
    let listed: Result<Vec<_>, _> = b.list("").expect("list starts lazily").collect();
    assert_err(listed, BackendErrorKind::Transient, &[], "list");
}

#[test]
fn location_and_properties() {
    let c = S3Config::new(
        "http://127.0.0.1:9",
        "bkt",
        "/a/b/",
        S3Credentials::new("id", "supersecret"),
    );
    let b = open(c);
    assert_eq!(b.location(), "s3:http://127.0.0.1:9/bkt/a/b");
    let p = b.properties();
    assert_eq!(p.max_connections, 8);
    assert_eq!(p.cost_class, "s3");
    assert!(p.atomic_overwrite && p.can_delete && !p.is_local);
}

/// A one-request HTTP server on 127.0.0.1: records the request head and answers `reply`.
fn one_shot_server(reply: &'static str) -> (String, std::thread::JoinHandle<String>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", l.local_addr().expect("addr"));
    let h = std::thread::spawn(move || {
        let (mut sock, _) = l.accept().expect("accept");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if sock.read(&mut byte).expect("read head") == 0 {
                break;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        sock.read_exact(&mut body).expect("read body");
        sock.write_all(reply.as_bytes()).expect("reply");
        head
    });
    (endpoint, h)
}

#[test]
fn writes_carry_content_md5_and_bad_digest_is_transient() {
    // No S3 server needed. MD5("abc") = 900150983cd24fb0d6963f7d28e17f72.
    let (endpoint, h) = one_shot_server(concat!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/xml\r\n",
        "Content-Length: 71\r\nConnection: close\r\n\r\n",
        "<Error><Code>BadDigest</Code><Message>digest mismatch</Message></Error>",
    ));
    let b = open(S3Config::new(
        endpoint,
        "bkt",
        "repo",
        S3Credentials::new("k", "s"),
    ));
    let r = b.write("config", &WriteBody::Bytes(b"abc"));
    let head = h.join().expect("server thread");
    assert!(
        head.starts_with("put /bkt/repo/config"),
        "path-style PUT below the prefix: {head}"
    );
    assert!(
        head.contains("content-md5: kafqmdzst7dwlj99kof/cg=="),
        "Content-MD5 of the body is sent: {head}"
    );
    assert_err(
        r,
        BackendErrorKind::Transient,
        &["Content-MD5 mismatch"],
        "write answered BadDigest",
    );
}

#[test]
fn hung_server_is_transient_not_a_hang() {
    // No S3 server needed: a local server that accepts and never answers, then one that
    // sends headers and half a body and stalls.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", l.local_addr().expect("addr"));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (silent, _) = l.accept().expect("accept 1");
        let (mut half, _) = l.accept().expect("accept 2");
        let mut buf = [0u8; 4096];
        let _ = half.read(&mut buf);
        let _ = half.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: application/octet-stream\r\n\r\nhalf",
        );
        // Hold both connections open until the test is done.
        let _ = done_rx.recv();
        drop((silent, half));
    });
    let mut c = S3Config::new(endpoint, "bkt", "repo", S3Credentials::new("k", "s"));
    c.read_timeout = std::time::Duration::from_secs(1);
    let b = open(c);
    assert_err(
        b.stat("config"),
        BackendErrorKind::Transient,
        &["no answer"],
        "stat on a silent server",
    );
    let r = b.read_stream("config", None, &mut |r: &mut dyn Read| {
        std::io::copy(r, &mut std::io::sink()).map(drop)
    });
    assert_err(
        r,
        BackendErrorKind::Transient,
        &["stalled"],
        "stalled download",
    );
    let _ = done_tx.send(());
    server.join().expect("server thread");
}

/// A stand-in for an S3 server that ignores `If-None-Match` (as some S3-compatible
/// stores do): objects in memory, HEAD/GET/PUT only, every PUT stored. `clobber` makes the
/// next PUT store other bytes, as if a rival's write landed right after ours.
struct IgnoringServer {
    endpoint: String,
    objects: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>>,
    clobber: std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    conditional_puts: std::sync::Arc<AtomicUsize>,
}

impl IgnoringServer {
    fn start() -> Self {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", l.local_addr().expect("addr"));
        let s = Self {
            endpoint,
            objects: Default::default(),
            clobber: Default::default(),
            conditional_puts: Default::default(),
        };
        let (objects, clobber, conditional) = (
            s.objects.clone(),
            s.clobber.clone(),
            s.conditional_puts.clone(),
        );
        // The thread ends with the test process; each connection gets its own.
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let (objects, clobber, conditional) =
                    (objects.clone(), clobber.clone(), conditional.clone());
                std::thread::spawn(move || {
                    serve(conn, &objects, &clobber, &conditional);
                });
            }
        });
        s
    }
}

fn serve(
    conn: std::net::TcpStream,
    objects: &std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>,
    clobber: &std::sync::Mutex<Option<Vec<u8>>>,
    conditional: &AtomicUsize,
) {
    use std::io::BufRead;
    let mut out = conn.try_clone().expect("clone");
    let mut r = std::io::BufReader::new(conn);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let lower = head.to_ascii_lowercase();
        let mut words = head.split(' ');
        let method = words.next().unwrap_or("").to_owned();
        let key = words
            .next()
            .unwrap_or("")
            .split('?')
            .next()
            .unwrap_or("")
            .to_owned();
        let len: usize = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let mut objects = objects.lock().expect("lock");
        let reply = match method.as_str() {
            "PUT" => {
                if lower.contains("\r\nif-none-match:") {
                    conditional.fetch_add(1, Ordering::SeqCst);
                }
                let stored = clobber.lock().expect("lock").take().unwrap_or(body);
                objects.insert(key, stored);
                "HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: 0\r\n\r\n"
                    .as_bytes()
                    .to_vec()
            }
            "HEAD" | "GET" => match objects.get(&key) {
                Some(data) => {
                    let mut v = format!(
                        "HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: {}\r\n\r\n",
                        data.len()
                    )
                    .into_bytes();
                    if method == "GET" {
                        v.extend_from_slice(data);
                    }
                    v
                }
                None if method == "HEAD" => {
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
                }
                None => {
                    let xml = "<Error><Code>NoSuchKey</Code><Message>no</Message></Error>";
                    format!(
                        "HTTP/1.1 404 Not Found\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{xml}",
                        xml.len()
                    )
                    .into_bytes()
                }
            },
            _ => b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\n\r\n".to_vec(),
        };
        drop(objects);
        if out.write_all(&reply).is_err() {
            return;
        }
    }
}

#[test]
fn exclusive_create_detects_a_server_that_ignores_if_none_match() {
    // No S3 server needed: the stand-in above answers 200 to a conditional PUT onto an
    // existing key, which the first exclusive create notices.
    let srv = IgnoringServer::start();
    let b = open(S3Config::new(
        srv.endpoint.clone(),
        "bkt",
        "repo",
        S3Credentials::new("k", "s"),
    ));
    assert_eq!(b.conditional_writes(), None);
    b.write_new("locks/a", &WriteBody::Bytes(b"one"))
        .expect("first exclusive create");
    assert_eq!(b.conditional_writes(), Some(false), "the probe noticed");
    assert_eq!(
        srv.conditional_puts.load(Ordering::SeqCst),
        2,
        "create and probe"
    );
    assert_err(
        b.write_new("locks/a", &WriteBody::Bytes(b"two")),
        BackendErrorKind::AlreadyExists,
        &["already exists"],
        "taken name (seen by the HEAD, never overwritten)",
    );
    assert_eq!(b.read("locks/a", None).expect("read"), b"one");

    // Write-then-verify: a fresh name works; a rival's bytes landing over ours lose us it.
    b.write_new("locks/b", &WriteBody::Bytes(b"mine"))
        .expect("fallback create");
    *srv.clobber.lock().expect("lock") = Some(b"rival".to_vec());
    assert_err(
        b.write_new("locks/c", &WriteBody::Bytes(b"mine")),
        BackendErrorKind::AlreadyExists,
        &["another writer replaced it"],
        "replaced during the verify delay",
    );
    assert_eq!(b.read("locks/c", None).expect("read"), b"rival");
    assert_eq!(
        srv.conditional_puts.load(Ordering::SeqCst),
        2,
        "no conditions sent once known to be ignored"
    );
}
