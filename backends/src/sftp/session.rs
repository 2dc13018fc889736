//! Connecting (TCP, handshake, host key, public-key authentication) and the session pool.

use std::fmt;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cairn_core::backend::BackendErrorKind;
use ssh2::{Session, Sftp};

use super::hostkey::{self, HostKeyError};

/// Everything needed to open one more session.
#[derive(Clone, Debug)]
pub(crate) struct ConnectConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// `-o sftp.identity`: the only key tried when given (like `IdentitiesOnly`).
    pub identity: Option<PathBuf>,
    /// Home directory, for the default keys; `None` if unknown.
    pub home: Option<PathBuf>,
    pub known_hosts: PathBuf,
    /// Per-call timeout of blocking libssh2 calls; also bounds the TCP connect.
    pub timeout: Duration,
}

impl ConnectConfig {
    fn addr(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("cannot connect to {addr}: {source}")]
    Tcp {
        addr: String,
        source: std::io::Error,
    },
    #[error("SSH handshake with {addr} failed: {source}")]
    Handshake { addr: String, source: ssh2::Error },
    #[error("{0}")]
    HostKey(Box<HostKeyError>),
    #[error("publickey authentication as {addr} failed; tried {}", .tried.join(", "))]
    Auth { addr: String, tried: Vec<String> },
    #[error("cannot start the SFTP subsystem as {addr}: {source}")]
    Subsystem { addr: String, source: ssh2::Error },
}

impl ConnectError {
    /// Network trouble is worth retrying; a wrong key or host key never is.
    pub(crate) fn kind(&self) -> BackendErrorKind {
        match self {
            ConnectError::Tcp { .. }
            | ConnectError::Handshake { .. }
            | ConnectError::Subsystem { .. } => BackendErrorKind::Transient,
            ConnectError::Auth { .. } => BackendErrorKind::PermissionDenied,
            ConnectError::HostKey(_) => BackendErrorKind::Other,
        }
    }
}

/// One authenticated session and its SFTP channel.
pub(crate) struct Conn {
    // Field order is drop order: the channel before the session it runs on.
    pub sftp: Sftp,
    _sess: Session,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Conn")
    }
}

/// Opens one session: TCP, handshake, host key check, authentication, SFTP channel.
pub(crate) fn connect(cfg: &ConnectConfig) -> Result<Conn, ConnectError> {
    let addr = cfg.addr();
    let tcp =
        tcp_connect(&cfg.host, cfg.port, cfg.timeout).map_err(|source| ConnectError::Tcp {
            addr: addr.clone(),
            source,
        })?;
    let mut sess = Session::new().map_err(|source| ConnectError::Handshake {
        addr: addr.clone(),
        source,
    })?;
    sess.set_tcp_stream(tcp);
    // u32 milliseconds: about 49 days at most, far above any sane setting.
    sess.set_timeout(u32::try_from(cfg.timeout.as_millis()).unwrap_or(u32::MAX));
    sess.handshake().map_err(|source| ConnectError::Handshake {
        addr: addr.clone(),
        source,
    })?;
    // Before authenticating: never send a signature to a server we do not trust.
    hostkey::verify(&sess, &cfg.host, cfg.port, &cfg.known_hosts)
        .map_err(|e| ConnectError::HostKey(Box::new(e)))?;
    authenticate(&sess, cfg)?;
    let sftp = sess
        .sftp()
        .map_err(|source| ConnectError::Subsystem { addr, source })?;
    Ok(Conn { sftp, _sess: sess })
}

fn tcp_connect(host: &str, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    let mut last = None;
    for sa in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&sa, timeout) {
            Ok(s) => {
                // Bulk transfers; Nagle only delays the small SFTP requests in between.
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "host name resolved to no address",
        )
    }))
}

/// Tries, in order: the `sftp.identity` key alone if given; otherwise every agent identity,
/// then `~/.ssh/id_ed25519` and `~/.ssh/id_rsa`. The error lists each attempt and its result.
fn authenticate(sess: &Session, cfg: &ConnectConfig) -> Result<(), ConnectError> {
    let mut tried = Vec::new();
    if let Some(key) = &cfg.identity {
        if try_key_file(sess, &cfg.user, key, &mut tried) {
            return Ok(());
        }
    } else {
        if try_agent(sess, &cfg.user, &mut tried) {
            return Ok(());
        }
        let mut any_default = false;
        if let Some(home) = &cfg.home {
            for name in ["id_ed25519", "id_rsa"] {
                let key = home.join(".ssh").join(name);
                if key.exists() {
                    any_default = true;
                    if try_key_file(sess, &cfg.user, &key, &mut tried) {
                        return Ok(());
                    }
                }
            }
        }
        if !any_default {
            tried.push("~/.ssh/id_ed25519 and ~/.ssh/id_rsa (neither exists)".into());
        }
    }
    Err(ConnectError::Auth {
        addr: cfg.addr(),
        tried,
    })
}

fn try_key_file(sess: &Session, user: &str, key: &Path, tried: &mut Vec<String>) -> bool {
    if !key.exists() {
        tried.push(format!("{} (no such file)", key.display()));
        return false;
    }
    // Handing libssh2 the .pub when it exists spares it deriving the public key from the
    // private one, which fails for some key formats.
    let mut pub_path = key.as_os_str().to_owned();
    pub_path.push(".pub");
    let pub_path = PathBuf::from(pub_path);
    let pubkey = pub_path.exists().then_some(pub_path.as_path());
    match sess.userauth_pubkey_file(user, pubkey, key, None) {
        Ok(()) if sess.authenticated() => true,
        Ok(()) => {
            tried.push(format!("{} (rejected)", key.display()));
            false
        }
        Err(e) => {
            tried.push(format!("{} ({})", key.display(), e.message()));
            false
        }
    }
}

fn try_agent(sess: &Session, user: &str, tried: &mut Vec<String>) -> bool {
    if std::env::var_os("SSH_AUTH_SOCK").is_none() {
        tried.push("agent (SSH_AUTH_SOCK not set)".into());
        return false;
    }
    let mut agent = match sess.agent() {
        Ok(a) => a,
        Err(e) => {
            tried.push(format!("agent ({})", e.message()));
            return false;
        }
    };
    if let Err(e) = agent.connect().and_then(|()| agent.list_identities()) {
        tried.push(format!("agent ({})", e.message()));
        return false;
    }
    let ids = agent.identities().unwrap_or_default();
    if ids.is_empty() {
        tried.push("agent (no identities)".into());
    }
    let mut ok = false;
    for id in &ids {
        if agent.userauth(user, id).is_ok() && sess.authenticated() {
            ok = true;
            break;
        }
        tried.push(format!("agent key {:?} (rejected)", id.comment()));
    }
    let _ = agent.disconnect();
    ok
}

/// A bounded pool of sessions. Sessions open lazily, up to `max`; a caller that finds
/// every session busy waits for one. A session that failed at the transport level is
/// dropped, not returned, and so are the idle ones (whatever broke one connection, a
/// network change, a restarted server, has most likely broken them all), so the next call
/// opens a fresh session instead of tripping over each dead one in turn.
pub(crate) struct Pool {
    cfg: ConnectConfig,
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Conn>,
    /// Sessions alive: idle, checked out or being opened.
    open: usize,
}

impl Pool {
    pub(crate) fn new(cfg: ConnectConfig, max: usize, first: Conn) -> Self {
        Self {
            cfg,
            max: max.max(1),
            state: Mutex::new(PoolState {
                idle: vec![first],
                open: 1,
            }),
            freed: Condvar::new(),
        }
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    pub(crate) fn config(&self) -> &ConnectConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // The state is two plain fields, consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A session for one operation, opening one if none is idle and the limit allows.
    pub(crate) fn get(&self) -> Result<PooledConn<'_>, ConnectError> {
        let mut st = self.lock();
        loop {
            if let Some(conn) = st.idle.pop() {
                return Ok(PooledConn {
                    pool: self,
                    conn: Some(conn),
                    broken: false,
                });
            }
            if st.open < self.max {
                st.open += 1;
                break;
            }
            st = self.freed.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        drop(st);
        // Connect outside the lock: a slow handshake must not block the other sessions.
        match connect(&self.cfg) {
            Ok(conn) => Ok(PooledConn {
                pool: self,
                conn: Some(conn),
                broken: false,
            }),
            Err(e) => {
                self.lock().open -= 1;
                self.freed.notify_one();
                Err(e)
            }
        }
    }

    fn put_back(&self, conn: Conn, broken: bool) {
        let mut st = self.lock();
        if broken {
            st.open -= 1 + st.idle.len();
            let idle = std::mem::take(&mut st.idle);
            drop(st);
            // Dropping a dead session may block on its socket; do it outside the lock.
            drop(idle);
            drop(conn);
            self.freed.notify_all();
        } else {
            st.idle.push(conn);
            drop(st);
            self.freed.notify_one();
        }
    }
}

/// A checked-out session; goes back to the pool on drop unless marked broken.
pub(crate) struct PooledConn<'p> {
    pool: &'p Pool,
    conn: Option<Conn>,
    broken: bool,
}

impl PooledConn<'_> {
    /// The session failed at the transport level: drop it instead of reusing it.
    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }

    pub(crate) fn sftp(&self) -> &Sftp {
        // `conn` is only None inside drop.
        match &self.conn {
            Some(c) => &c.sftp,
            None => unreachable!("PooledConn used after drop"),
        }
    }
}

impl Drop for PooledConn<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.put_back(conn, self.broken);
        }
    }
}
