//! Exclusive create (`write_new`) on S3: one `PutObject` with `If-None-Match: *`, which a
//! server that supports conditional writes (AWS S3 since 2024, SeaweedFS) checks and applies
//! atomically, refusing with 412 when the key exists.
//!
//! A server that ignores the header would overwrite instead, so the first exclusive create of
//! a backend finds out which kind it talks to: it HEADs first (so even an ignoring server
//! cannot clobber an existing file on that call), creates conditionally, and then sends the
//! same bytes again with the same condition. A server that honours it refuses (412); one that
//! ignores it stores identical bytes over themselves, which changes nothing. The answer is
//! kept for the backend's lifetime (`S3Config::conditional_writes` can also state it).
//!
//! Against a server that ignores the condition, `write_new` falls back to write-then-verify,
//! like restic's locks: HEAD (taken: `AlreadyExists`), PUT, wait [`VERIFY_DELAY`], read back;
//! if the bytes are no longer ours, another writer replaced them and we lost. Two writers
//! whose HEADs both precede both PUTs and whose PUTs are further apart than the delay can
//! both believe they won: best effort, and documented as such.

use std::time::Duration;

use cairn_core::backend::{holds, BackendError, BackendErrorKind, WriteBody};

use super::error::plain;
use super::S3Backend;

/// How long write-then-verify waits before reading back: longer than a small PutObject
/// takes on any working link, so a rival that raced us has landed by then.
pub(crate) const VERIFY_DELAY: Duration = Duration::from_secs(1);

/// `write_new` for the S3 backend; see the module docs.
pub(crate) fn write_new(
    b: &S3Backend,
    path: &str,
    key: &str,
    body: &WriteBody<'_>,
) -> Result<(), BackendError> {
    match b.conditional.get() {
        Some(true) => b.put(path, key, body, true),
        Some(false) => {
            refuse_if_taken(b, path, key)?;
            b.put(path, key, body, false)?;
            verify(b, path, body)
        }
        None => {
            refuse_if_taken(b, path, key)?;
            b.put(path, key, body, true)?;
            match b.put(path, key, body, true) {
                Err(e) if e.kind == BackendErrorKind::AlreadyExists => {
                    let _ = b.conditional.set(true);
                    Ok(())
                }
                Ok(()) => {
                    let _ = b.conditional.set(false);
                    verify(b, path, body)
                }
                // Our create landed; whether the condition works stays open for next time.
                Err(_) => Ok(()),
            }
        }
    }
}

/// `AlreadyExists` if the key is there (a HEAD).
fn refuse_if_taken(b: &S3Backend, path: &str, key: &str) -> Result<(), BackendError> {
    match b.head("write_new", path, key) {
        Ok(_) => Err(plain(
            BackendErrorKind::AlreadyExists,
            "write_new",
            path,
            "an object already exists there",
        )),
        Err(e) if e.kind == BackendErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// After a PUT that a rival may have overwritten: are the stored bytes still ours?
fn verify(b: &S3Backend, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
    std::thread::sleep(VERIFY_DELAY);
    if holds(b, path, body)? {
        return Ok(());
    }
    Err(plain(
        BackendErrorKind::AlreadyExists,
        "write_new",
        path,
        "another writer replaced it (this server ignores If-None-Match, so exclusive \
         creates are best effort)",
    ))
}
