//! The same tests against every kind of repository: a local directory, the real OpenSSH
//! server and the real S3 server that `scripts/servers/start-*.sh` start on 127.0.0.1.
//!
//! The servers announce themselves through `CAIRN_TEST_SFTP_*` and `CAIRN_TEST_S3_*`
//! (the start scripts write them to an env file that `scripts/test.sh` sources). Without
//! them a remote variant skips loudly, except under `CI=true`, where a missing server is
//! a failure: CI must never pass by testing less.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::support::{Cairn, Fixture};

/// Which kind of repository a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remote {
    /// A local directory.
    Local,
    /// The OpenSSH server (sftp-only chroot account).
    Sftp,
    /// The S3 server (SeaweedFS).
    S3,
}

/// An environment variable a remote needs; `None` means skip (never under CI).
fn server_var(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{name} is not set: CI must run the remote tests against real servers \
                 (scripts/servers/start-sshd.sh and start-s3.sh, sourced by scripts/test.sh)"
            );
            eprintln!("SKIPPED: {name} is not set; start the test servers (scripts/servers/) to run this test");
            None
        }
    }
}

/// A name no other test (or earlier run) uses.
pub fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{tag}-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A runner and the local path of a fresh, not yet initialised repository on `remote`,
/// or `None` when the server is not available (outside CI).
pub fn runner(remote: Remote, local_dir: &std::path::Path) -> Option<(Cairn, Option<PathBuf>)> {
    match remote {
        Remote::Local => {
            let repo = local_dir.join("repo");
            Some((Cairn::new(&repo), Some(repo)))
        }
        Remote::Sftp => {
            let url = server_var("CAIRN_TEST_SFTP_URL")?;
            let identity = server_var("CAIRN_TEST_SFTP_IDENTITY")?;
            let known = server_var("CAIRN_TEST_SFTP_KNOWN_HOSTS")?;
            let root = server_var("CAIRN_TEST_SFTP_ROOT")?;
            let name = unique("e2e");
            let mut c = Cairn::new(format!("{}/{name}", url.trim_end_matches('/')));
            c.opts = vec![
                OsString::from("-o"),
                format!("sftp.identity={identity}").into(),
                OsString::from("-o"),
                format!("sftp.known-hosts={known}").into(),
            ];
            Some((c, Some(PathBuf::from(root).join(name))))
        }
        Remote::S3 => {
            let endpoint = server_var("CAIRN_TEST_S3_ENDPOINT")?;
            let bucket = server_var("CAIRN_TEST_S3_BUCKET")?;
            let key = server_var("CAIRN_TEST_S3_ADMIN_KEY")?;
            let secret = server_var("CAIRN_TEST_S3_ADMIN_SECRET")?;
            let mut c = Cairn::new(format!("s3:{endpoint}/{bucket}/{}", unique("e2e")));
            c.env = vec![
                ("AWS_ACCESS_KEY_ID".into(), key.into()),
                ("AWS_SECRET_ACCESS_KEY".into(), secret.into()),
            ];
            Some((c, None))
        }
    }
}

/// A runner for a fresh, not yet initialised repository on the S3 server reached through a
/// counting proxy, and the proxy; `None` when the server is missing (outside CI).
pub fn s3_through_proxy(
    dir: &std::path::Path,
    tag: &str,
) -> Option<(Cairn, crate::counting_proxy::CountingProxy)> {
    // Only for the skip-or-fail-under-CI decision and the credentials.
    let (direct, _) = runner(Remote::S3, dir)?;
    let endpoint = std::env::var("CAIRN_TEST_S3_ENDPOINT").ok()?;
    let bucket = std::env::var("CAIRN_TEST_S3_BUCKET").ok()?;
    let addr = endpoint
        .strip_prefix("http://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("not an http://host:port endpoint: {endpoint}"));
    let proxy = crate::counting_proxy::CountingProxy::start(addr);
    let mut c = Cairn::new(format!("s3:{}/{bucket}/{}", proxy.endpoint(), unique(tag)));
    c.env = direct.env;
    Some((c, proxy))
}

impl Fixture {
    /// A fresh, initialised repository on `remote`; `None` when its server is missing
    /// outside CI (the test then returns early, having said so).
    pub fn on(remote: Remote) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cairn, local_repo) = runner(remote, dir.path())?;
        cairn.init();
        Some(Self {
            dir,
            cairn,
            local_repo,
        })
    }
}

/// Declares `#[test] fn <test>()` in module `$module`, calling `test(Remote::$kind)`.
#[macro_export]
macro_rules! on_backend {
    ($kind:ident => $module:ident; $($test:ident),+ $(,)?) => {
        mod $module {
            $(
                #[test]
                fn $test() {
                    super::$test($crate::servers::Remote::$kind);
                }
            )+
        }
    };
}

/// The tests on a local, an SFTP and an S3 repository.
#[macro_export]
macro_rules! on_all_backends {
    ($($test:ident),+ $(,)?) => {
        $crate::on_backend!(Local => local; $($test),+);
        $crate::on_backend!(Sftp => sftp; $($test),+);
        $crate::on_backend!(S3 => s3; $($test),+);
    };
}

/// The tests on the repositories whose files this machine can reach: local and SFTP (its
/// chroot is a local directory), for tests that damage or watch repository files.
#[macro_export]
macro_rules! on_file_backends {
    ($($test:ident),+ $(,)?) => {
        $crate::on_backend!(Local => local; $($test),+);
        $crate::on_backend!(Sftp => sftp; $($test),+);
    };
}

/// A signed GET to the S3 server as its admin (curl's SigV4): what the server itself holds,
/// for tests that must not take cairn's word for it. `query` needs `k=v` pairs (curl 7.88
/// signs a bare `?versions` wrongly).
pub fn s3_admin_get(path_and_query: &str) -> String {
    let endpoint = std::env::var("CAIRN_TEST_S3_ENDPOINT").expect("S3 endpoint");
    let key = std::env::var("CAIRN_TEST_S3_ADMIN_KEY").expect("S3 admin key");
    let secret = std::env::var("CAIRN_TEST_S3_ADMIN_SECRET").expect("S3 admin secret");
    // SHA-256 of the empty body.
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--fail",
            "--max-time",
            "10",
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
        ])
        .arg("--user")
        .arg(format!("{key}:{secret}"))
        .arg("-H")
        .arg(format!("x-amz-content-sha256: {empty}"))
        .arg(format!("{endpoint}/{path_and_query}"))
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "GET {path_and_query}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A runner for a fresh repository in the versioned bucket (where a plain delete only hides
/// the file, as on B2), and its key prefix; `None` when the server is missing (outside CI).
pub fn s3_versioned(dir: &std::path::Path, tag: &str) -> Option<(Cairn, String)> {
    let (direct, _) = runner(Remote::S3, dir)?;
    let endpoint = server_var("CAIRN_TEST_S3_ENDPOINT")?;
    let bucket = server_var("CAIRN_TEST_S3_VERSIONED_BUCKET")?;
    let prefix = unique(tag);
    let mut c = Cairn::new(format!("s3:{endpoint}/{bucket}/{prefix}"));
    c.env = direct.env;
    Some((c, prefix))
}
