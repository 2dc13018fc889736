//! Request accounting against what the server really received: the S3 backend, through the
//! retry and accounting decorators (as the CLI stacks them), talks to the real SeaweedFS
//! server through a counting HTTP proxy, and after each scenario the accounting's counts per
//! billing class must equal the proxy's, classified by the HTTP verbs S3 bills by.
//!
//! Scenarios: a multipart upload, small uploads, a listing over several pages, ranged and
//! streamed reads, stats, deletes, retries after a lost answer (multipart part, HEAD,
//! exclusive create), each compared on its own.
//!
//! Needs `CAIRN_TEST_S3_*` from `$S3_DIR/env` (scripts/servers/start-s3.sh); without them
//! the test skips loudly, except under `CI=true`.

#[path = "support/counting_proxy.rs"]
mod counting_proxy;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_backends::s3::{S3Config, S3Credentials};
use cairn_backends::{AccountingBackend, RetryBackend, RetryPolicy, S3Backend};
use cairn_core::backend::{Backend, BackendErrorKind, WriteBody};
use cairn_core::cost::{RequestClass, RequestCounters, RequestCounts};
use counting_proxy::{CountingProxy, Seen};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The server's address, bucket and admin key, or `None` (after a loud note).
fn server() -> Option<(SocketAddr, String, S3Credentials)> {
    let Some(endpoint) = var("CAIRN_TEST_S3_ENDPOINT") else {
        let msg = "CAIRN_TEST_S3_ENDPOINT is not set: run scripts/servers/start-s3.sh and \
                   source /var/tmp/cairn-s3/env";
        if var("CI").as_deref() == Some("true") {
            panic!("{msg} (a missing S3 server is a failure under CI)");
        }
        eprintln!("\n!!! SKIPPING S3 BILLING TEST: {msg} !!!\n");
        return None;
    };
    let addr = endpoint
        .strip_prefix("http://")
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .filter(|a| a.ip().is_loopback())
        .unwrap_or_else(|| panic!("the S3 tests only talk to 127.0.0.1:<port>, not {endpoint}"));
    let need = |n: &str| var(n).unwrap_or_else(|| panic!("{n} is not set (see $S3_DIR/env)"));
    let creds = S3Credentials::new(
        need("CAIRN_TEST_S3_ADMIN_KEY"),
        need("CAIRN_TEST_S3_ADMIN_SECRET"),
    );
    Some((addr, need("CAIRN_TEST_S3_BUCKET"), creds))
}

/// The billing class of a request the server received, by S3's rules.
fn class_on_the_wire(s: &Seen) -> RequestClass {
    let name = s.s3_class();
    RequestClass::ALL
        .into_iter()
        .find(|c| c.as_str() == name)
        .unwrap_or_else(|| panic!("no request class named {name}"))
}

/// Counts per class, in `RequestClass::ALL` order.
fn per_class(f: impl Fn(RequestClass) -> u64) -> [u64; 5] {
    RequestClass::ALL.map(f)
}

struct Bench {
    proxy: CountingProxy,
    counters: Arc<RequestCounters>,
    backend: RetryBackend<AccountingBackend<Arc<S3Backend>>>,
    last: RequestCounts,
}

impl Bench {
    /// Compares what the accounting counted since the last check with what the proxy saw,
    /// class by class, and returns the proxy's counts.
    fn check(&mut self, scenario: &str) -> [u64; 5] {
        let seen = self.proxy.take();
        let now = self.counters.snapshot();
        let counted = per_class(|c| now.of(c) - self.last.of(c));
        self.last = now;
        let wire = per_class(|c| seen.iter().filter(|s| class_on_the_wire(s) == c).count() as u64);
        let names = RequestClass::ALL.map(RequestClass::as_str);
        eprintln!("{scenario:<34} proxy {wire:?}  accounting {counted:?}  ({names:?})");
        let listing: Vec<String> = seen
            .iter()
            .map(|s| {
                format!(
                    "{} {}{}",
                    s.method,
                    s.target,
                    if s.cut { " (cut)" } else { "" }
                )
            })
            .collect();
        assert_eq!(
            counted,
            wire,
            "{scenario}: accounting {counted:?} != proxy {wire:?} ({names:?}); the server saw:\n{}",
            listing.join("\n")
        );
        wire
    }
}

/// `[list, head, get, put, delete]`.
const fn classes(list: u64, head: u64, get: u64, put: u64, delete: u64) -> [u64; 5] {
    [list, head, get, put, delete]
}

fn spool(len: usize) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("spool");
    let mut x = 0x2545_f491_u32;
    let block: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len());
        f.write_all(&block[..n]).expect("fill spool");
        left -= n;
    }
    f.flush().expect("flush spool");
    f
}

#[test]
fn accounting_counts_what_the_server_received() {
    let Some((addr, bucket, creds)) = server() else {
        return;
    };
    let proxy = CountingProxy::start(addr);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let prefix = format!("billing-{}-{nanos:x}", std::process::id());
    let mut cfg = S3Config::new(proxy.endpoint(), bucket, prefix, creds);
    cfg.part_size = 5 << 20;
    cfg.multipart_threshold = 5 << 20;
    cfg.list_page_size = Some(7);
    let s3 = Arc::new(S3Backend::new(cfg).expect("open S3 backend"));
    let counters = Arc::new(RequestCounters::default());
    let retry = RetryPolicy {
        attempts: 4,
        base: Duration::from_millis(10),
        max: Duration::from_millis(50),
    };
    let backend = RetryBackend::new(AccountingBackend::new(s3.clone(), counters.clone()), retry);
    let mut t = Bench {
        proxy,
        counters,
        backend,
        last: RequestCounts::default(),
    };
    let b = &t.backend;

    // Multipart: 12 MiB + a tail in 5 MiB parts = create, 3 parts, complete, HEAD.
    let big_len = (12 << 20) + 1234;
    let big = spool(big_len);
    let body = WriteBody::File {
        path: big.path().to_path_buf(),
        len: big_len as u64,
    };
    b.write("packs/big", &body).expect("multipart write");
    assert_eq!(
        t.check("multipart upload (3 parts)"),
        classes(0, 1, 0, 5, 0)
    );

    let b = &t.backend;
    for i in 0..25 {
        let data = format!("small file {i}");
        b.write(&format!("data/{i:02}"), &WriteBody::Bytes(data.as_bytes()))
            .expect("small write");
    }
    assert_eq!(t.check("25 small uploads"), classes(0, 0, 0, 25, 0));

    // 25 keys in pages of 7: at least 4 pages; the server decides whether a fifth,
    // empty one is needed, and the counts must agree either way.
    let b = &t.backend;
    let listed = b.list("data").expect("list").count();
    assert_eq!(listed, 25);
    let wire = t.check("listing 25 keys, pages of 7");
    assert!(wire[0] >= 4, "pages on the wire: {wire:?}");

    let b = &t.backend;
    assert_eq!(b.read("packs/big", Some(0..100)).expect("range").len(), 100);
    assert_eq!(
        b.read("packs/big", Some((5 << 20) - 10..(5 << 20) + 10))
            .expect("range across parts")
            .len(),
        20
    );
    assert!(b
        .read("packs/big", Some(7..7))
        .expect("empty range")
        .is_empty());
    let mut n = 0u64;
    b.read_stream(
        "packs/big",
        Some(1000..(1 << 20)),
        &mut |r: &mut dyn Read| {
            n = std::io::copy(r, &mut std::io::sink())?;
            Ok(())
        },
    )
    .expect("ranged stream");
    assert_eq!(n, (1 << 20) - 1000);
    b.read_stream("packs/big", None, &mut |r: &mut dyn Read| {
        std::io::copy(r, &mut std::io::sink()).map(drop)
    })
    .expect("whole stream");
    // Three ranged GETs, a whole GET, and a HEAD for the empty range.
    assert_eq!(t.check("ranged and streamed reads"), classes(0, 1, 4, 0, 0));

    let b = &t.backend;
    for i in 0..3 {
        assert!(b.stat(&format!("data/{i:02}")).expect("stat") > 0);
    }
    let e = b.stat("data/missing").expect_err("missing");
    assert_eq!(e.kind, BackendErrorKind::NotFound);
    assert_eq!(t.check("4 stats, one missing"), classes(0, 4, 0, 0, 0));

    let b = &t.backend;
    for i in 0..3 {
        b.remove(&format!("data/{i:02}")).expect("remove");
    }
    let e = b.remove("data/missing").expect_err("remove missing");
    assert_eq!(e.kind, BackendErrorKind::NotFound);
    // Each remove HEADs first; the missing one stops there.
    assert_eq!(t.check("4 removes, one missing"), classes(0, 4, 0, 0, 3));

    // The server stores part 2 but its answer is lost: the upload is aborted, and the
    // retry decorator starts it over. Every request of both attempts is billed.
    t.proxy
        .cut_answer(1, |m, target| m == "PUT" && target.contains("partNumber=2"));
    let b = &t.backend;
    b.write("packs/big2", &body)
        .expect("multipart write after a lost answer");
    assert!(!t.proxy.cut_pending(), "the cut happened");
    // Attempt 1: create, part 1, part 2 (cut), abort. Attempt 2: create, 3 parts,
    // complete, HEAD.
    assert_eq!(
        t.check("multipart, answer to part 2 lost"),
        classes(0, 1, 0, 8, 1)
    );

    t.proxy.cut_answer(1, |m, _| m == "HEAD");
    let b = &t.backend;
    assert_eq!(
        b.stat("packs/big").expect("stat after a lost answer"),
        big_len as u64
    );
    assert_eq!(t.check("stat, first answer lost"), classes(0, 2, 0, 0, 0));

    // The first exclusive create also learns whether the server honours If-None-Match:
    // HEAD (free name), conditional PUT, the same PUT again (412 from SeaweedFS).
    let b = &t.backend;
    assert_eq!(s3.conditional_writes(), None);
    b.write_new("locks/l0", &WriteBody::Bytes(b"lock nonce 0"))
        .expect("first exclusive create");
    assert_eq!(
        s3.conditional_writes(),
        Some(true),
        "SeaweedFS honours If-None-Match"
    );
    assert_eq!(
        t.check("first write_new (learns 412)"),
        classes(0, 1, 0, 2, 0)
    );

    // Exclusive create whose first PUT lands but whose answer is lost: the retry finds
    // the object (412), recognises its own bytes (HEAD + GET), and succeeds.
    t.proxy
        .cut_answer(1, |m, target| m == "PUT" && target.contains("/locks/"));
    let b = &t.backend;
    b.write_new("locks/l1", &WriteBody::Bytes(b"lock nonce 1"))
        .expect("exclusive create after a lost answer");
    assert_eq!(
        t.check("write_new, answer lost, retried"),
        classes(0, 1, 1, 2, 0)
    );
    let b = &t.backend;
    let e = b
        .write_new("locks/l1", &WriteBody::Bytes(b"lock nonce 2"))
        .expect_err("someone else's lock");
    assert_eq!(e.kind, BackendErrorKind::AlreadyExists, "{e}");
    assert_eq!(
        b.read("locks/l1", None).expect("read lock"),
        b"lock nonce 1"
    );
    assert_eq!(
        t.check("write_new onto a taken name"),
        classes(0, 0, 1, 1, 0)
    );
}

#[test]
fn a_request_cut_short_by_our_deadline_is_still_counted() {
    // No S3 server needed: one that accepts and never answers. cairn's deadline drops the
    // request; it reached the server, so it is billed and must be counted.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", l.local_addr().expect("addr"));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let conn = l.accept().expect("accept");
        let _ = done_rx.recv();
        drop(conn);
    });
    let mut cfg = S3Config::new(endpoint, "bkt", "repo", S3Credentials::new("k", "s"));
    cfg.read_timeout = Duration::from_secs(1);
    let counters = Arc::new(RequestCounters::default());
    let log = tempfile::NamedTempFile::new().expect("log");
    let b = AccountingBackend::new(S3Backend::new(cfg).expect("open"), counters.clone())
        .with_log(log.reopen().expect("reopen"));
    let e = b.stat("config").expect_err("silent server");
    assert_eq!(e.kind, BackendErrorKind::Transient, "{e}");
    let s = counters.snapshot();
    assert_eq!((s.of(RequestClass::Head), s.total(), s.errors), (1, 1, 1));
    let text = std::fs::read_to_string(log.path()).expect("read log");
    assert!(
        text.trim_end().ends_with("/bkt/repo/config 0 cancelled"),
        "{text}"
    );
    let _ = done_tx.send(());
    server.join().expect("server thread");
}
