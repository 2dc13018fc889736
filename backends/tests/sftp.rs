//! SftpBackend against a real OpenSSH server on 127.0.0.1 (start it with
//! `scripts/servers/start-sshd.sh`, then `. /srv/sftptest/env`): the conformance suite,
//! authentication and host-key failures, the no-overwrite policy and reconnecting after a
//! dropped connection.
//!
//! Without `CAIRN_TEST_SFTP_URL` the tests skip loudly, or fail under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use cairn_backends::url::{BackendOptions, Location, UrlError};
use cairn_core::backend::{Backend, BackendErrorKind, WriteBody};
use cairn_core::testing::conformance::backend_conformance;

/// The dropped-connection test kills every session of the test server; it takes this lock
/// for writing, every other test holds it for reading for as long as it has sessions open.
static SESSIONS: RwLock<()> = RwLock::new(());

struct Env {
    url: String,
    identity: String,
    known_hosts: String,
    /// The server's `repo/` directory on this machine.
    root: PathBuf,
    pidfile: Option<PathBuf>,
}

fn env() -> Option<Env> {
    let Ok(url) = std::env::var("CAIRN_TEST_SFTP_URL") else {
        let hint = "CAIRN_TEST_SFTP_URL is not set: run `bash scripts/servers/start-sshd.sh` \
                    (as root) and `. /srv/sftptest/env` first";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{hint}");
        }
        loud(&format!("SKIPPING SFTP TEST: {hint}"));
        return None;
    };
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| panic!("{k} must be set with CAIRN_TEST_SFTP_URL"))
    };
    Some(Env {
        url: url.trim_end_matches('/').to_owned(),
        identity: var("CAIRN_TEST_SFTP_IDENTITY"),
        known_hosts: var("CAIRN_TEST_SFTP_KNOWN_HOSTS"),
        root: PathBuf::from(var("CAIRN_TEST_SFTP_ROOT")),
        pidfile: std::env::var("CAIRN_TEST_SFTP_PIDFILE")
            .ok()
            .map(PathBuf::from),
    })
}

/// Writes past the test harness's output capture (which only takes `print!`/`eprint!`), so
/// a skip is seen even when the test "passes".
fn loud(msg: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "\n!!! {msg} !!!\n");
}

fn shared() -> RwLockReadGuard<'static, ()> {
    SESSIONS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A repository subdirectory no other test (or earlier run) uses.
fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{tag}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn opts(e: &Env, extra: &[(&str, &str)]) -> BackendOptions {
    let mut o = BackendOptions::default();
    o.set("sftp.identity", e.identity.clone());
    o.set("sftp.known-hosts", e.known_hosts.clone());
    for (k, v) in extra {
        o.set(*k, *v);
    }
    o
}

fn open_with(url: &str, o: &BackendOptions) -> Result<Arc<dyn Backend>, UrlError> {
    Location::parse(url).expect("parse url").open(o)
}

fn open_sub(e: &Env, sub: &str) -> Arc<dyn Backend> {
    open_with(&format!("{}/{sub}", e.url), &opts(e, &[])).expect("open sftp backend")
}

fn open_err(url: &str, o: &BackendOptions) -> String {
    match open_with(url, o) {
        Ok(b) => panic!("opening {url} must fail, got {}", b.location()),
        Err(e) => e.to_string(),
    }
}

/// Every entry below `dir` on the server's disk, temporary files included.
fn entries(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for ent in std::fs::read_dir(&d).expect("read_dir") {
            let p = ent.expect("entry").path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(dir).expect("below").display().to_string());
        }
    }
    out.sort();
    out
}

fn keygen(dir: &Path, name: &str, kind: &str) -> PathBuf {
    let key = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "cairn-test", "-f"])
        .arg(&key)
        .status()
        .expect("run ssh-keygen");
    assert!(st.success(), "ssh-keygen failed");
    key
}

/// The host part of a known_hosts line for the test server: `[127.0.0.1]:2222`.
fn known_host_name(e: &Env) -> String {
    let text = std::fs::read_to_string(&e.known_hosts).expect("read known_hosts");
    text.split_whitespace()
        .next()
        .expect("known_hosts has an entry")
        .to_owned()
}

#[test]
fn conformance() {
    let Some(e) = env() else { return };
    let _g = shared();
    backend_conformance(|| open_sub(&e, &unique("conf")));
}

#[test]
fn location_and_properties() {
    let Some(e) = env() else { return };
    let _g = shared();
    let sub = unique("loc");
    let b = open_with(
        &format!("{}/{sub}", e.url),
        &opts(&e, &[("sftp.connections", "2")]),
    )
    .expect("open");
    assert_eq!(b.location(), format!("{}/{sub}", e.url));
    let p = b.properties();
    assert_eq!(p.max_connections, 2);
    assert!(!p.atomic_overwrite, "SFTP v3 rename cannot replace");
    assert!(!p.is_local);
    assert_eq!(p.cost_class, "sftp");

    let msg = open_err(&e.url, &opts(&e, &[("sftp.bogus", "1")]));
    assert!(msg.contains("sftp.bogus"), "{msg}");
    let msg = open_err(&e.url, &opts(&e, &[("sftp.connections", "0")]));
    assert!(msg.contains("sftp.connections"), "{msg}");
}

#[test]
fn missing_repository_reads_as_not_found() {
    let Some(e) = env() else { return };
    let _g = shared();
    let b = open_sub(&e, &unique("none"));
    let r = b.read("config", None);
    assert!(
        matches!(&r, Err(err) if err.kind == BackendErrorKind::NotFound),
        "config of a missing repository: {r:?}"
    );
    assert_eq!(
        b.list("").expect("list").count(),
        0,
        "missing root lists empty"
    );
    let w = b.write("hosts/x/packs/ab/cd", &WriteBody::Bytes(b"x"));
    assert!(
        matches!(&w, Err(err) if err.kind == BackendErrorKind::NotFound),
        "a write must not create a repository that was never created: {w:?}"
    );
}

#[test]
fn create_names_the_directory_it_cannot_make() {
    let Some(e) = env() else { return };
    let _g = shared();
    // Above repo/ the chroot belongs to root: the user cannot create /cairn-nonexistent.
    let url = e.url.rsplit_once('/').expect("url has a path").0.to_owned();
    let b = open_with(
        &format!("{url}/cairn-nonexistent/{}", unique("deep")),
        &opts(&e, &[]),
    )
    .expect("open");
    let err = b
        .create()
        .expect_err("create below an unwritable directory");
    assert_eq!(err.kind, BackendErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("/cairn-nonexistent"), "{err}");

    // A plain file where the repository should be.
    let sub = unique("file");
    std::fs::write(e.root.join(&sub), b"not a dir").expect("write file");
    let err = open_sub(&e, &sub).create().expect_err("create over a file");
    assert!(err.to_string().contains("not a directory"), "{err}");
    std::fs::remove_file(e.root.join(&sub)).expect("cleanup");
}

#[test]
fn create_makes_nested_directories() {
    let Some(e) = env() else { return };
    let _g = shared();
    let sub = format!("{}/a/b", unique("nest"));
    let b = open_sub(&e, &sub);
    b.create().expect("create nested");
    b.create().expect("create again");
    assert!(e.root.join(&sub).is_dir());
}

#[test]
fn wrong_key_is_a_clear_auth_error() {
    let Some(e) = env() else { return };
    let _g = shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = keygen(dir.path(), "stranger", "ed25519");
    let mut o = opts(&e, &[]);
    o.set("sftp.identity", key.display().to_string());
    let msg = open_err(&e.url, &o);
    assert!(
        msg.contains("publickey authentication as backup@127.0.0.1:")
            && msg.contains(&key.display().to_string()),
        "{msg}"
    );

    o.set(
        "sftp.identity",
        dir.path().join("absent").display().to_string(),
    );
    let msg = open_err(&e.url, &o);
    assert!(msg.contains("no such file"), "{msg}");
}

#[test]
fn unknown_host_key_is_refused_with_instructions() {
    let Some(e) = env() else { return };
    let _g = shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("known_hosts");
    std::fs::write(&empty, "").expect("write");
    let mut o = opts(&e, &[]);
    o.set("sftp.known-hosts", empty.display().to_string());
    let msg = open_err(&e.url, &o);
    assert!(msg.contains("is not known"), "{msg}");
    assert!(msg.contains("ssh-keyscan -p "), "{msg}");
    assert!(msg.contains("SHA256:"), "{msg}");
    assert!(!msg.contains("CHANGED"), "{msg}");

    o.set(
        "sftp.known-hosts",
        dir.path().join("missing").display().to_string(),
    );
    let msg = open_err(&e.url, &o);
    assert!(msg.contains("does not exist"), "{msg}");

    // Known only by a key of another type: unknown for this type, not "changed".
    let rsa = keygen(dir.path(), "rsa", "rsa");
    let pubkey = std::fs::read_to_string(rsa.with_extension("pub")).expect("read pub");
    let mut f = pubkey.split_whitespace();
    let line = format!(
        "{} {} {}\n",
        known_host_name(&e),
        f.next().expect("type"),
        f.next().expect("key")
    );
    std::fs::write(&empty, line).expect("write");
    o.set("sftp.known-hosts", empty.display().to_string());
    let msg = open_err(&e.url, &o);
    assert!(msg.contains("only has keys of other types"), "{msg}");
}

#[test]
fn changed_host_key_is_a_distinct_loud_error() {
    let Some(e) = env() else { return };
    let _g = shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let other = keygen(dir.path(), "impostor", "ed25519");
    let pubkey = std::fs::read_to_string(other.with_extension("pub")).expect("read pub");
    let mut f = pubkey.split_whitespace();
    let kh = dir.path().join("known_hosts");
    std::fs::write(
        &kh,
        format!(
            "{} {} {}\n",
            known_host_name(&e),
            f.next().expect("type"),
            f.next().expect("key")
        ),
    )
    .expect("write");
    let mut o = opts(&e, &[]);
    o.set("sftp.known-hosts", kh.display().to_string());
    let msg = open_err(&e.url, &o);
    assert!(
        msg.contains("HOST KEY OF") && msg.contains("HAS CHANGED"),
        "{msg}"
    );
    assert!(msg.contains(&kh.display().to_string()), "{msg}");
}

#[test]
fn hashed_known_hosts_entries_match() {
    let Some(e) = env() else { return };
    let _g = shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let kh = dir.path().join("known_hosts");
    std::fs::copy(&e.known_hosts, &kh).expect("copy");
    let st = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .expect("ssh-keygen -H");
    assert!(st.status.success(), "ssh-keygen -H failed");
    let text = std::fs::read_to_string(&kh).expect("read");
    assert!(text.starts_with("|1|"), "entry was hashed: {text}");
    let mut o = opts(&e, &[]);
    o.set("sftp.known-hosts", kh.display().to_string());
    open_with(&e.url, &o).expect("a hashed entry for the host is accepted");
}

#[test]
fn existing_targets_follow_the_no_overwrite_policy() {
    let Some(e) = env() else { return };
    let _g = shared();
    let sub = unique("exist");
    let b = open_sub(&e, &sub);
    b.create().expect("create");

    // Content-addressed: the same name means the same bytes, so a rewrite succeeds.
    let host = "0123456789abcdef0123456789abcdef";
    let name = format!("ab{}", "0".repeat(62));
    let pack = format!("hosts/{host}/packs/ab/{name}");
    b.write(&pack, &WriteBody::Bytes(b"pack bytes"))
        .expect("first");
    b.write(&pack, &WriteBody::Bytes(b"pack bytes"))
        .expect("retry of a pack");

    // Anything else: the same bytes succeed (a retried write), other bytes are refused.
    b.write("keys/admin/k", &WriteBody::Bytes(b"key one"))
        .expect("first");
    b.write("keys/admin/k", &WriteBody::Bytes(b"key one"))
        .expect("same bytes again");
    let r = b.write("keys/admin/k", &WriteBody::Bytes(b"key two"));
    assert!(
        matches!(&r, Err(err) if err.kind == BackendErrorKind::AlreadyExists),
        "{r:?}"
    );
    assert_eq!(b.read("keys/admin/k", None).expect("read"), b"key one");

    let left = entries(&e.root.join(&sub));
    assert!(
        left.iter().all(|p| !p.contains(".tmp-")),
        "no temporary file left behind: {left:?}"
    );
}

#[test]
fn list_skips_temporary_files() {
    let Some(e) = env() else { return };
    let _g = shared();
    let sub = unique("tmp");
    let b = open_sub(&e, &sub);
    b.create().expect("create");
    b.write("index/a", &WriteBody::Bytes(b"a")).expect("write");
    std::fs::write(e.root.join(&sub).join("index/.tmp-crashed"), b"junk").expect("plant");
    let listed: Vec<String> = b
        .list("")
        .expect("list")
        .map(|r| r.expect("item").path)
        .collect();
    assert_eq!(listed, vec!["index/a".to_owned()]);
}

/// Pids of every descendant of `root` (the listener): the per-connection sshd processes.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for ent in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = ent.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(ent.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().unwrap_or("");
        if state == "Z" {
            continue;
        }
        if let Some(ppid) = f.next().and_then(|p| p.parse::<u32>().ok()) {
            parent_of.push((pid, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (pid, ppid) in &parent_of {
            if *ppid == p && !out.contains(pid) {
                out.push(*pid);
                frontier.push(*pid);
            }
        }
    }
    out
}

#[test]
fn reconnects_after_the_connection_drops() {
    let Some(e) = env() else { return };
    let Some(pidfile) = e.pidfile.clone() else {
        loud("SKIPPING reconnect test: CAIRN_TEST_SFTP_PIDFILE is not set");
        return;
    };
    // No other test may have sessions open while this one kills them all.
    let _g = SESSIONS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let listener: u32 = std::fs::read_to_string(&pidfile)
        .expect("read sshd pid file")
        .trim()
        .parse()
        .expect("pid");
    let sub = unique("drop");
    let b = open_sub(&e, &sub);
    b.create().expect("create");
    b.write("a", &WriteBody::Bytes(b"before"))
        .expect("write before");

    let sessions = descendants(listener);
    assert!(
        !sessions.is_empty(),
        "the backend's session has an sshd process"
    );
    for pid in &sessions {
        // Only the session processes of the test server, by pid.
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    for _ in 0..100 {
        if descendants(listener).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let first = b.read("a", None);
    assert!(
        matches!(&first, Err(err) if err.kind == BackendErrorKind::Transient),
        "an operation on a dead session is transient: {first:?}"
    );
    // What a retry decorator does: try again, a bounded number of times.
    let mut got = None;
    for _ in 0..3 {
        if let Ok(v) = b.read("a", None) {
            got = Some(v);
            break;
        }
    }
    assert_eq!(got.as_deref(), Some(&b"before"[..]), "read after reconnect");
    b.write("b", &WriteBody::Bytes(b"after"))
        .expect("write after reconnect");
    assert_eq!(b.read("b", None).expect("read b"), b"after");
}

#[test]
fn failed_writes_leave_no_temporary_file() {
    let Some(e) = env() else { return };
    let _g = shared();
    let sub = unique("fail");
    let b = open_sub(&e, &sub);
    b.create().expect("create");
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool");
    std::fs::write(&spool, vec![7u8; 5000]).expect("spool");
    // The body claims more bytes than the spool file has.
    let body = WriteBody::File {
        path: spool,
        len: 9000,
    };
    let r = b.write("packs/aa/short", &body);
    assert!(r.is_err(), "a short body must fail");
    let left = entries(&e.root.join(&sub));
    assert!(
        left.iter()
            .all(|p| !p.contains(".tmp-") && !p.ends_with("short")),
        "neither the temporary nor the final file remains: {left:?}"
    );

    // A directory the user may not write to.
    std::fs::create_dir(e.root.join(&sub).join("locked")).expect("mkdir");
    let r = b.write("locked/f", &WriteBody::Bytes(b"x"));
    // The test runs as root, but the server writes as `backup`: root-owned 0755 is closed.
    assert!(
        matches!(&r, Err(err) if err.kind == BackendErrorKind::PermissionDenied),
        "{r:?}"
    );
}

#[test]
fn fsync_is_used_when_the_server_offers_it() {
    let Some(e) = env() else { return };
    let _g = shared();
    let loc = Location::parse(&format!("{}/{}", e.url, unique("fsync"))).expect("parse");
    let Location::Sftp {
        user,
        host,
        port,
        path,
    } = loc
    else {
        panic!("not an sftp url")
    };
    let b = cairn_backends::SftpBackend::open(user.as_deref(), &host, port, &path, &opts(&e, &[]))
        .expect("open");
    b.create().expect("create");
    b.write("f", &WriteBody::Bytes(b"durable")).expect("write");
    assert!(b.fsync_supported(), "OpenSSH offers fsync@openssh.com");
}

/// Unmounts the small filesystem of `full_disk_is_no_space` even when the test fails.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn full_disk_is_no_space() {
    let Some(e) = env() else { return };
    let _g = shared();
    let sub = unique("full");
    let dir = e.root.join(&sub);
    std::fs::create_dir(&dir).expect("mkdir");
    // A 256 KiB tmpfs owned by the SFTP user (uid/gid of the repo directory).
    let meta = std::fs::metadata(&e.root).expect("stat root");
    let o = format!(
        "size=256k,mode=0755,uid={},gid={}",
        std::os::unix::fs::MetadataExt::uid(&meta),
        std::os::unix::fs::MetadataExt::gid(&meta)
    );
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &o, "tmpfs"])
        .arg(&dir)
        .stderr(std::process::Stdio::null())
        .status();
    if !matches!(st, Ok(s) if s.success()) {
        let _ = std::fs::remove_dir(&dir);
        loud("SKIPPING full_disk_is_no_space: cannot mount a tmpfs (not root?)");
        return;
    }
    let _m = Mounted(dir.clone());
    let b = open_sub(&e, &sub);
    b.create().expect("create");
    let big = vec![1u8; 1 << 20];
    let r = b.write("packs/aa/big", &WriteBody::Bytes(&big));
    assert!(
        matches!(&r, Err(err) if err.kind == BackendErrorKind::NoSpace),
        "{r:?}"
    );
    let left = entries(&dir);
    assert!(
        left.iter().all(|p| !p.contains(".tmp-")),
        "the partial temporary file is removed: {left:?}"
    );
    b.write("small", &WriteBody::Bytes(b"fits"))
        .expect("space is back");
}
