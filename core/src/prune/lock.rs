//! The admin's prune lock: two prunes must never sweep at once (each rewrites index files
//! from its own census, and one could list packs the other deletes). Backups never look at
//! it. Taken with the backend's exclusive create, so the second prune is refused at once,
//! never left waiting on a lock a crashed prune left behind.

use std::sync::Arc;

use crate::backend::{layout, Backend, BackendErrorKind, WriteBody};
use crate::cbor::{Dec, Enc};
use crate::error::{Error, Result};
use crate::repository::Repository;

/// Who holds the lock (plain CBOR: it is a note for people, not trusted for anything but
/// telling a dead local holder from a live one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockOwner {
    /// Host name of the machine running the prune.
    pub hostname: String,
    /// Its process id.
    pub pid: u32,
    /// When it took the lock (ms since the epoch).
    pub since_ms: i64,
}

impl std::fmt::Display for LockOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let since = chrono::DateTime::from_timestamp_millis(self.since_ms)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        write!(f, "host {} pid {} since {since}", self.hostname, self.pid)
    }
}

/// Who an unreadable lock file is shown as held by.
const UNREADABLE: &str = "an unreadable lock file";

impl LockOwner {
    fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.map(3);
        e.key(0).text(&self.hostname);
        e.key(1).u64(self.pid.into());
        e.key(2).i64(self.since_ms);
        e.buf
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let mut d = Dec::new(b);
        if d.map().ok()? != 3 {
            return None;
        }
        let mut prev = None;
        d.key(&mut prev).ok()?;
        let hostname = d.text().ok()?.to_owned();
        d.key(&mut prev).ok()?;
        let pid = d.u32().ok()?;
        d.key(&mut prev).ok()?;
        let since_ms = d.i64().ok()?;
        d.finish().ok()?;
        Some(Self {
            hostname,
            pid,
            since_ms,
        })
    }
}

/// A held prune lock; [`PruneLock::release`] removes it.
pub struct PruneLock {
    backend: Arc<dyn Backend>,
}

fn remove(b: &dyn Backend) -> Result<()> {
    Ok(b.discard(layout::PRUNE_LOCK)?)
}

impl PruneLock {
    /// Takes the lock for `me`. A lock held by a process `is_dead` says has ended (a prune
    /// killed on this machine) is taken over; any other holder is an [`Error::Locked`].
    pub fn acquire(
        repo: &Repository,
        me: &LockOwner,
        is_dead: &dyn Fn(&LockOwner) -> bool,
    ) -> Result<Self> {
        let backend = repo.backend_handle();
        let body = me.encode();
        for _ in 0..2 {
            match backend.write_new(layout::PRUNE_LOCK, &WriteBody::Bytes(&body)) {
                Ok(()) => return Ok(Self { backend }),
                Err(e) if e.kind == BackendErrorKind::AlreadyExists => {
                    let held = backend.read(layout::PRUNE_LOCK, None)?;
                    match LockOwner::decode(&held) {
                        Some(o) if is_dead(&o) => remove(&*backend)?,
                        Some(o) => {
                            return Err(Error::Locked {
                                holder: o.to_string(),
                            })
                        }
                        None => {
                            return Err(Error::Locked {
                                holder: UNREADABLE.into(),
                            })
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Locked {
            holder: "another prune that took it over at the same moment".into(),
        })
    }

    /// Removes the lock.
    pub fn release(self) -> Result<()> {
        remove(&*self.backend)
    }
}

/// Who holds the prune lock, in words, or `None` when no prune holds it (`check` warns of
/// a lock left behind).
pub fn holder(repo: &Repository) -> Result<Option<String>> {
    match repo.backend_handle().read(layout::PRUNE_LOCK, None) {
        Ok(b) => Ok(Some(
            LockOwner::decode(&b).map_or_else(|| UNREADABLE.into(), |o| o.to_string()),
        )),
        Err(e) if e.kind == BackendErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes the prune lock whoever holds it (`cairn unlock`, after a prune died on another
/// machine). Returns who held it, if anyone.
pub fn force_unlock(repo: &Repository) -> Result<Option<LockOwner>> {
    let backend = repo.backend_handle();
    let held = match backend.read(layout::PRUNE_LOCK, None) {
        Ok(b) => LockOwner::decode(&b),
        Err(e) if e.kind == BackendErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    remove(&*backend)?;
    Ok(Some(held.unwrap_or(LockOwner {
        hostname: "(unreadable lock)".into(),
        pid: 0,
        since_ms: 0,
    })))
}
