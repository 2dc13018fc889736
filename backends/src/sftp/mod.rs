//! A repository on an SFTP server, over libssh2 (the `ssh2` crate).
//!
//! # Design
//!
//! - **Writes** go to a hidden temporary name in the target's directory (`.tmp-<random>`),
//!   are fsynced through `fsync@openssh.com` when the server offers it, and are then renamed
//!   to the final name, so a reader sees the whole file or nothing. A failed upload removes
//!   its temporary file; one left behind by a dropped connection is invisible to `list`.
//! - **No overwrite.** OpenSSH's server speaks SFTP version 3, whose rename fails when the
//!   target exists, and libssh2 cannot send the `posix-rename@openssh.com` extension that
//!   would replace it atomically. Removing the target first would open a window in which the
//!   file is missing, so this backend never does: [`Properties::atomic_overwrite`] is false
//!   and a write onto an existing name is resolved without replacing anything:
//!   - a host file (pack, index, snapshot) is named by the BLAKE3 of its bytes, so the same
//!     name means the same content: if the sizes agree the write has already happened
//!     (a retry, or two sessions racing to upload one pack) and succeeds;
//!   - any other file succeeds only if it already holds exactly the bytes being written
//!     (a retried write whose reply was lost), and otherwise fails with `AlreadyExists`.
//!     The engine never rewrites such a file (key files get fresh names, the config is
//!     written once), so this only ever reports a real conflict.
//! - **Exclusive create** (`write_new`, for locks) takes the same path, but any existing
//!   target is `AlreadyExists`. OpenSSH's sftp-server carries out `SSH_FXP_RENAME` as
//!   `link()` then `unlink()`, so the check and the creation are one atomic step on the
//!   server: of racing writers exactly one wins.
//! - **A pool of sessions** (`-o sftp.connections=N`, default 4) carries parallel
//!   transfers: one SSH connection serialises its requests, so uploads of several packs at
//!   once need several connections. Sessions open lazily. A session that fails at the
//!   transport level is dropped together with the idle ones, and the error is `Transient`, so
//!   the retry decorator's next attempt runs on a fresh connection. A `read_stream` consumer
//!   holds its session while it runs, so one that calls back into this backend needs
//!   `sftp.connections` of 2 or more.
//! - **Leftovers.** A temporary file outlives its write only when the connection died
//!   mid-upload (there is no session left to remove it with); `list` never shows it.
//! - **Host keys** are checked against `-o sftp.known-hosts=PATH` (default
//!   `~/.ssh/known_hosts`) before authenticating, and an unknown key is never accepted:
//!   unattended backups cannot answer "are you sure?", and trust on first use would let the
//!   first connection go to anyone. An unknown key gets instructions to add it; a changed key
//!   gets a distinct, loud error (see [`hostkey`]).
//! - **Authentication** is by public key only: `-o sftp.identity=PATH` alone if given,
//!   otherwise the ssh-agent, then `~/.ssh/id_ed25519` and `~/.ssh/id_rsa`.
//!
//! Options: `sftp.identity`, `sftp.known-hosts`, `sftp.connections` (1 to 64) and
//! `sftp.timeout` (seconds a blocking network call may wait, default 120).

mod ahead;
mod errors;
mod hostkey;
mod session;
mod write;

use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_core::backend::request::{check_bounded, check_path, check_range};
use cairn_core::backend::{
    Backend, BackendError, BackendErrorKind, ObjectInfo, Properties, StreamConsumer, WriteBody,
};
use cairn_core::cost::RequestMeter;
use ssh2::{File, Sftp};

use crate::url::{BackendOptions, UrlError};
use errors::{is_sftp_status, ssh_err, ssh_error_kind, stream_io_kind};
use session::{ConnectConfig, ConnectError, Pool, PooledConn};

/// Prefix of in-flight temporary files; `list` skips them.
const TMP_PREFIX: &str = ".tmp-";

/// Transfer buffer: large enough that libssh2 pipelines many SFTP requests per call, small
/// enough that parallel transfers of whole packs never pile up in memory.
const CHUNK: usize = 1 << 20;

const DEFAULT_CONNECTIONS: usize = 4;
const MAX_CONNECTIONS: usize = 64;
const DEFAULT_TIMEOUT_SECS: u64 = 120;

/// Why an SFTP operation failed, when the cause is not a libssh2 error.
#[derive(Debug, thiserror::Error)]
enum SftpError {
    #[error("body said {expected} bytes but {actual} were read")]
    LengthMismatch { expected: u64, actual: u64 },
    #[error("not a regular file")]
    NotAFile,
    #[error("the server did not report the file size")]
    NoSize,
    #[error("file name is not UTF-8")]
    NonUtf8Name,
    #[error("cannot create directory {dir}: {source}")]
    MkDir { dir: String, source: ssh2::Error },
    #[error("{0} exists and is not a directory")]
    NotADir(String),
    #[error("a different file already exists under this name ({size} bytes); SFTP cannot replace it atomically")]
    Exists { size: u64 },
    #[error("the server has {avail} bytes free: {source}")]
    Full { avail: u64, source: io::Error },
    #[error("{0}")]
    Connect(ConnectError),
    #[error("the random source failed: {0}")]
    Random(getrandom::Error),
}

fn err(kind: BackendErrorKind, op: &'static str, path: &str, e: SftpError) -> BackendError {
    BackendError::new(kind, op, path, Some(Box::new(e) as _))
}

fn io_other(op: &'static str, path: &str, e: io::Error) -> BackendError {
    let kind = stream_io_kind(&e).unwrap_or(BackendErrorKind::Other);
    BackendError::new(kind, op, path, Some(Box::new(e) as _))
}

/// The same path rule as every backend (see [`check_path`]).
fn clean_rel(op: &'static str, path: &str) -> Result<(), BackendError> {
    check_path(op, path)
}

/// A [`Backend`] on an SFTP server (see the module docs for the design).
pub struct SftpBackend {
    pool: Pool,
    /// The repository directory on the server, without a trailing `/` (`""` is the login
    /// directory, `"/"` the server's root).
    root: String,
    /// Set once the server refused `fsync@openssh.com`, so it is not asked again.
    no_fsync: AtomicBool,
}

impl std::fmt::Debug for SftpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpBackend")
            .field("location", &self.location())
            .finish_non_exhaustive()
    }
}

impl SftpBackend {
    /// Connects and authenticates one session (so a wrong key or host key fails here,
    /// with its full explanation), checking `opts` first.
    pub fn open(
        user: Option<&str>,
        host: &str,
        port: Option<u16>,
        path: &str,
        opts: &BackendOptions,
    ) -> Result<Self, UrlError> {
        for key in opts.keys().filter(|k| k.starts_with("sftp.")) {
            if !matches!(
                key,
                "sftp.identity" | "sftp.known-hosts" | "sftp.connections" | "sftp.timeout"
            ) {
                return Err(UrlError::Option(format!(
                    "{key} is unknown; SFTP takes sftp.identity, sftp.known-hosts, sftp.connections and sftp.timeout"
                )));
            }
        }
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let user = match user {
            Some(u) => u.to_owned(),
            None => std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .map_err(|_| {
                    UrlError::Open(format!(
                        "no user in the SFTP location and $USER is not set; write sftp://USER@{host}/..."
                    ))
                })?,
        };
        let known_hosts = match (opts.get("sftp.known-hosts"), &home) {
            (Some(p), _) => PathBuf::from(p),
            (None, Some(h)) => h.join(".ssh").join("known_hosts"),
            (None, None) => {
                return Err(UrlError::Open(
                    "$HOME is not set; give the known_hosts file with -o sftp.known-hosts=PATH"
                        .into(),
                ))
            }
        };
        let connections = parse_num(opts, "sftp.connections", DEFAULT_CONNECTIONS as u64)?;
        if !(1..=MAX_CONNECTIONS as u64).contains(&connections) {
            return Err(UrlError::Option(format!(
                "sftp.connections={connections} must be between 1 and {MAX_CONNECTIONS}"
            )));
        }
        let timeout = parse_num(opts, "sftp.timeout", DEFAULT_TIMEOUT_SECS)?;
        if timeout == 0 {
            return Err(UrlError::Option(
                "sftp.timeout must be at least 1 second".into(),
            ));
        }
        let cfg = ConnectConfig {
            host: host.to_owned(),
            port: port.unwrap_or(22),
            user,
            identity: opts.get("sftp.identity").map(PathBuf::from),
            home,
            known_hosts,
            timeout: Duration::from_secs(timeout),
        };
        let first = session::connect(&cfg).map_err(|e| UrlError::Open(e.to_string()))?;
        let root = if path.len() > 1 {
            path.trim_end_matches('/').to_owned()
        } else {
            path.to_owned()
        };
        Ok(Self {
            // Bounded above by MAX_CONNECTIONS.
            pool: Pool::new(cfg, connections as usize, first),
            root,
            no_fsync: AtomicBool::new(false),
        })
    }

    /// The server path of a repository-relative path ("" is the root).
    fn server_path(&self, rel: &str) -> PathBuf {
        PathBuf::from(if rel.is_empty() {
            if self.root.is_empty() {
                ".".to_owned()
            } else {
                self.root.clone()
            }
        } else if self.root.is_empty() {
            rel.to_owned()
        } else if self.root.ends_with('/') {
            format!("{}{rel}", self.root)
        } else {
            format!("{}/{rel}", self.root)
        })
    }

    fn full(&self, op: &'static str, rel: &str) -> Result<PathBuf, BackendError> {
        clean_rel(op, rel)?;
        Ok(self.server_path(rel))
    }

    /// Runs `f` on a pooled session. A transient failure means the session may be dead:
    /// it is dropped rather than returned, so the next attempt connects afresh.
    fn with_conn<T>(
        &self,
        op: &'static str,
        path: &str,
        f: impl FnOnce(&Sftp) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let mut conn: PooledConn<'_> = self.pool.get().map_err(|e| {
            let kind = e.kind();
            err(kind, op, path, SftpError::Connect(e))
        })?;
        let res = f(conn.sftp());
        if matches!(&res, Err(e) if e.kind == BackendErrorKind::Transient) {
            conn.mark_broken();
        }
        res
    }

    /// Classifies an [`io::Error`] from ssh2's `Read`/`Write`, which has lost the libssh2
    /// code: if a cheap request on the same session still works, the server answered the
    /// transfer with an error status; if not, the connection is gone (`Transient`).
    fn stream_error(
        &self,
        sftp: &Sftp,
        op: &'static str,
        path: &str,
        e: io::Error,
    ) -> BackendError {
        if let Some(kind) = stream_io_kind(&e) {
            return BackendError::new(kind, op, path, Some(Box::new(e) as _));
        }
        let kind = match sftp.stat(&self.server_path("")) {
            Err(probe) if !is_sftp_status(&probe) => BackendErrorKind::Transient,
            _ => BackendErrorKind::Other,
        };
        BackendError::new(kind, op, path, Some(Box::new(e) as _))
    }

    /// Opens a regular file for reading, with its size.
    fn open_read(
        &self,
        sftp: &Sftp,
        op: &'static str,
        path: &str,
    ) -> Result<(File, u64), BackendError> {
        let full = self.full(op, path)?;
        let mut file = sftp.open(&full).map_err(|e| ssh_err(op, path, e))?;
        let st = file.stat().map_err(|e| ssh_err(op, path, e))?;
        if !st.is_file() {
            return Err(err(
                BackendErrorKind::NotFound,
                op,
                path,
                SftpError::NotAFile,
            ));
        }
        let size = st
            .size
            .ok_or_else(|| err(BackendErrorKind::Other, op, path, SftpError::NoSize))?;
        Ok((file, size))
    }

    /// Whether the server has confirmed every fsync so far (false once it said it cannot).
    #[doc(hidden)]
    pub fn fsync_supported(&self) -> bool {
        !self.no_fsync.load(Ordering::Relaxed)
    }
}

fn parse_num(opts: &BackendOptions, key: &str, default: u64) -> Result<u64, UrlError> {
    match opts.get(key) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| UrlError::Option(format!("{key}={v:?} is not a number"))),
    }
}

impl Backend for SftpBackend {
    fn properties(&self) -> Properties {
        Properties {
            max_connections: self.pool.max(),
            atomic_overwrite: false,
            is_local: false,
            can_delete: true,
            cost_class: "sftp",
            deletes_versions: false,
        }
    }

    fn location(&self) -> String {
        let cfg = self.pool.config();
        let path = if self.root.starts_with('/') {
            self.root.clone()
        } else {
            format!("/~/{}", self.root)
        };
        format!("sftp://{}@{}:{}{path}", cfg.user, cfg.host, cfg.port)
    }

    fn create(&self) -> Result<(), BackendError> {
        let root = self.server_path("").display().to_string();
        self.with_conn("create", &root, |sftp| {
            match sftp.stat(Path::new(&root)) {
                Ok(st) if st.is_dir() => return Ok(()),
                Ok(_) => {
                    let e = SftpError::NotADir(root.clone());
                    return Err(err(BackendErrorKind::Other, "create", &root, e));
                }
                Err(e) if ssh_error_kind(&e) == BackendErrorKind::NotFound => {}
                Err(e) => return Err(ssh_err("create", &root, e)),
            }
            // mkdir -p from the top; existing components (like a chroot's "/") are fine.
            let mut cur = if root.starts_with('/') {
                "/".to_owned()
            } else {
                String::new()
            };
            for comp in root.split('/').filter(|c| !c.is_empty()) {
                if !cur.is_empty() && !cur.ends_with('/') {
                    cur.push('/');
                }
                cur.push_str(comp);
                if let Err(e) = sftp.mkdir(Path::new(&cur), 0o755) {
                    match sftp.stat(Path::new(&cur)) {
                        Ok(st) if st.is_dir() => {}
                        _ => {
                            let kind = ssh_error_kind(&e);
                            let e = SftpError::MkDir {
                                dir: cur.clone(),
                                source: e,
                            };
                            return Err(err(kind, "create", &root, e));
                        }
                    }
                }
            }
            Ok(())
        })
    }

    fn list<'a>(
        &'a self,
        dir: &str,
    ) -> Result<Box<dyn Iterator<Item = Result<ObjectInfo, BackendError>> + Send + 'a>, BackendError>
    {
        let dir = dir.trim_end_matches('/');
        if !dir.is_empty() {
            clean_rel("list", dir)?;
        }
        Ok(Box::new(ListIter {
            backend: self,
            pending: vec![dir.to_owned()],
            current: None,
        }))
    }

    fn stat(&self, path: &str) -> Result<u64, BackendError> {
        let full = self.full("stat", path)?;
        self.with_conn("stat", path, |sftp| {
            let st = sftp.stat(&full).map_err(|e| ssh_err("stat", path, e))?;
            if !st.is_file() {
                return Err(err(
                    BackendErrorKind::NotFound,
                    "stat",
                    path,
                    SftpError::NotAFile,
                ));
            }
            st.size
                .ok_or_else(|| err(BackendErrorKind::Other, "stat", path, SftpError::NoSize))
        })
    }

    fn read(&self, path: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, BackendError> {
        self.with_conn("read", path, |sftp| {
            let (mut file, size) = self.open_read(sftp, "read", path)?;
            let r = check_range("read", path, size, range)?;
            let mut buf = vec![0; check_bounded("read", path, &r)?];
            // libssh2's seek only moves its local offset; no request is sent.
            file.seek(SeekFrom::Start(r.start))
                .map_err(|e| io_other("read", path, e))?;
            file.read_exact(&mut buf)
                .map_err(|e| self.stream_error(sftp, "read", path, e))?;
            Ok(buf)
        })
    }

    fn read_stream(
        &self,
        path: &str,
        range: Option<Range<u64>>,
        consumer: &mut StreamConsumer<'_>,
    ) -> Result<(), BackendError> {
        self.with_conn("read_stream", path, |sftp| {
            let (mut file, size) = self.open_read(sftp, "read_stream", path)?;
            let r = check_range("read_stream", path, size, range)?;
            file.seek(SeekFrom::Start(r.start))
                .map_err(|e| io_other("read_stream", path, e))?;
            let len = r.end - r.start;
            // The take() sits below the read-ahead, so no request ever asks for bytes past
            // the range, and a small range gets a small buffer.
            let (res, failed) = ahead::read_ahead(file, len, |reader| {
                let res = consumer(reader);
                (res, reader.failed)
            });
            match res {
                Ok(()) => Ok(()),
                // The transfer failed underneath the consumer: classify that failure.
                Err(e) if failed.is_some() => Err(self.stream_error(sftp, "read_stream", path, e)),
                // The consumer's own failure (say, a full local disk during restore).
                Err(e) => Err(BackendError::new(
                    BackendErrorKind::Other,
                    "read_stream",
                    path,
                    Some(Box::new(e) as _),
                )),
            }
        })
    }

    fn write(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
        self.with_conn("write", path, |sftp| self.write_on(sftp, path, body, false))
    }

    fn write_new(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
        self.with_conn("write_new", path, |sftp| {
            self.write_on(sftp, path, body, true)
        })
    }

    fn meter_requests(&self, _meter: std::sync::Arc<dyn RequestMeter>) -> bool {
        // An SFTP server bills nothing per request: one per call is the honest count.
        false
    }

    fn remove(&self, path: &str) -> Result<(), BackendError> {
        let full = self.full("remove", path)?;
        self.with_conn("remove", path, |sftp| {
            sftp.unlink(&full).map_err(|e| ssh_err("remove", path, e))
        })
    }
}

/// A lazy depth-first walk, one directory listing at a time. Each listing borrows a pooled
/// session only for that request, so a caller that reads files while listing cannot starve
/// the pool.
struct ListIter<'a> {
    backend: &'a SftpBackend,
    /// Repository-relative directories still to read ("" is the root).
    pending: Vec<String>,
    current: Option<(String, std::vec::IntoIter<(PathBuf, ssh2::FileStat)>)>,
}

impl ListIter<'_> {
    fn step(&mut self) -> Option<Result<ObjectInfo, BackendError>> {
        let (dir, entries) = self.current.as_mut()?;
        for (p, st) in entries.by_ref() {
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                let e = err(BackendErrorKind::Other, "list", dir, SftpError::NonUtf8Name);
                return Some(Err(e));
            };
            if name.starts_with(TMP_PREFIX) {
                continue;
            }
            let rel = if dir.is_empty() {
                name.to_owned()
            } else {
                format!("{dir}/{name}")
            };
            // The attributes come from readdir, i.e. lstat: symlinks and special files are
            // not repository files and are skipped, as in the local backend.
            if st.is_dir() {
                self.pending.push(rel);
            } else if st.is_file() {
                return Some(Ok(ObjectInfo {
                    path: rel,
                    size: st.size.unwrap_or(0),
                }));
            }
        }
        None
    }
}

impl Iterator for ListIter<'_> {
    type Item = Result<ObjectInfo, BackendError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.step() {
                return Some(item);
            }
            self.current = None;
            let dir = self.pending.pop()?;
            let full = self.backend.server_path(&dir);
            let listed = self.backend.with_conn("list", &dir, |sftp| {
                match sftp.readdir(&full) {
                    Ok(v) => Ok(v),
                    // A missing directory lists as empty, including one removed mid-walk.
                    Err(e) if ssh_error_kind(&e) == BackendErrorKind::NotFound => Ok(Vec::new()),
                    Err(e) => Err(ssh_err("list", &dir, e)),
                }
            });
            match listed {
                Ok(v) => self.current = Some((dir, v.into_iter())),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
