//! The storage contract every backend implements, and the one path layout they all share.
//!
//! A backend stores opaque files under relative, `/`-separated paths that only
//! [`layout`](crate::backend::layout) produces. It knows nothing of encryption: the
//! `repository` module owns the backend and exposes only authenticated, typed operations.
//!
//! The trait is synchronous (`Send + Sync`) because the engine is driven by rayon and bounded
//! channels; a backend built on an async client keeps its runtime private.

pub mod layout;
pub mod request;

use std::fmt;
use std::io::Read;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cost::RequestMeter;

/// Largest range [`Backend::read`] serves; larger reads must stream.
pub const MAX_BOUNDED_READ: u64 = 80 << 20;

/// What a backend can and cannot do, as data.
#[derive(Clone, Debug)]
pub struct Properties {
    /// How many requests may run at once.
    pub max_connections: usize,
    /// Whether `write` to an existing path replaces it atomically.
    pub atomic_overwrite: bool,
    /// Whether the storage lives on this machine (no point in caching it locally).
    pub is_local: bool,
    /// Whether this credential may delete.
    pub can_delete: bool,
    /// Price class for the prune cost model ("local", "sftp", "s3", "b2").
    pub cost_class: &'static str,
    /// Whether a delete lists and removes every stored version of the file
    /// (`s3.delete-versions`, on for B2), where a plain delete would only hide it (B2
    /// through its S3 API, a versioned bucket) and the space would free only when the
    /// bucket's lifecycle rule says. Each delete then costs a listing more.
    pub deletes_versions: bool,
}

/// The kind of a backend failure: what the caller decides on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The file does not exist.
    NotFound,
    /// The requested range lies beyond the end of the file.
    RangeNotSatisfiable,
    /// The credential may not do this.
    PermissionDenied,
    /// The storage is full or over quota.
    NoSpace,
    /// Worth retrying: a dropped connection, a timeout, a 5xx.
    Transient,
    /// A write that must not replace an existing file found one.
    AlreadyExists,
    /// A durability guarantee failed (fsync): the handle is poisoned.
    Poisoned,
    /// Anything else.
    Other,
}

/// A failed backend operation, with what it was doing and on which path.
///
/// Its `Display` already carries the cause (deduplicated: backend messages often embed
/// their own cause's text), so it reports no `source()`; otherwise `{:#}` at the CLI
/// would print the same cause two or three times.
#[derive(Debug)]
pub struct BackendError {
    /// What went wrong, for decisions.
    pub kind: BackendErrorKind,
    /// The operation ("read", "write", "list", ...).
    pub op: &'static str,
    /// The repository-relative path.
    pub path: String,
    /// The cause.
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl std::error::Error for BackendError {}

impl BackendError {
    /// A new error.
    pub fn new(
        kind: BackendErrorKind,
        op: &'static str,
        path: impl Into<String>,
        source: impl Into<Option<Box<dyn std::error::Error + Send + Sync>>>,
    ) -> Self {
        Self {
            kind,
            op,
            path: path.into(),
            source: source.into(),
        }
    }

    /// Whether a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind == BackendErrorKind::Transient
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            BackendErrorKind::NotFound => "not found",
            BackendErrorKind::RangeNotSatisfiable => "range not satisfiable",
            BackendErrorKind::PermissionDenied => "permission denied",
            BackendErrorKind::NoSpace => "no space left",
            BackendErrorKind::Transient => "transient failure",
            BackendErrorKind::AlreadyExists => "already exists",
            BackendErrorKind::Poisoned => "earlier write failed durably; refusing further writes",
            BackendErrorKind::Other => "failed",
        };
        write!(f, "{} {}: {what}", self.op, self.path)?;
        if let Some(src) = &self.source {
            let mut text = src.to_string();
            let mut next = src.source();
            while let Some(cause) = next {
                let t = cause.to_string();
                if !text.contains(&t) {
                    text.push_str(": ");
                    text.push_str(&t);
                }
                next = cause.source();
            }
            write!(f, " ({text})")?;
        }
        Ok(())
    }
}

/// One listed file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Repository-relative path.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// Called with each piece of a paced body as it is read; blocks to hold a rate.
pub type Pace<'a> = dyn Fn(usize) + Sync + 'a;

/// The bytes of a write: small files in memory or packs spooled to a local file, possibly
/// paced. All are rewindable, so a retry can send them again.
///
/// Backends send a body through [`WriteBody::open`], which honours the pacing, and may
/// read it a second time through [`WriteBody::open_unpaced`] for checksums that must
/// precede the upload (S3's Content-MD5). They may use [`WriteBody::file`] or
/// [`WriteBody::bytes`] for speed, but then must still pace when [`WriteBody::is_paced`].
pub enum WriteBody<'a> {
    /// In-memory bytes.
    Bytes(&'a [u8]),
    /// A local file of known length (a spooled pack).
    File {
        /// Path of the local file.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
    },
    /// Another body whose bytes are paced as they are read (`--limit-upload`).
    Paced {
        /// The bytes.
        body: &'a WriteBody<'a>,
        /// Called with the size of each piece read.
        pace: &'a Pace<'a>,
    },
}

/// A reader that paces what passes through it.
struct PacedRead<'a> {
    inner: Box<dyn Read + Send + 'a>,
    pace: &'a Pace<'a>,
}

impl Read for PacedRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Small pieces, so the rate is smooth rather than a burst per caller buffer.
        let len = buf.len().min(64 << 10);
        let n = self.inner.read(&mut buf[..len])?;
        (self.pace)(n);
        Ok(n)
    }
}

impl WriteBody<'_> {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            WriteBody::Bytes(b) => b.len() as u64,
            WriteBody::File { len, .. } => *len,
            WriteBody::Paced { body, .. } => body.len(),
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A fresh reader from the start, paced if the body is (called again on retry).
    pub fn open(&self) -> std::io::Result<Box<dyn Read + Send + '_>> {
        Ok(match self {
            WriteBody::Paced { body, pace } => Box::new(PacedRead {
                inner: body.open()?,
                pace: *pace,
            }),
            _ => self.open_unpaced()?,
        })
    }

    /// A fresh reader of the same bytes without pacing, for a local pass such as a
    /// checksum that does not touch the network.
    pub fn open_unpaced(&self) -> std::io::Result<Box<dyn Read + Send + '_>> {
        Ok(match self {
            WriteBody::Bytes(b) => Box::new(*b),
            WriteBody::File { path, .. } => Box::new(std::fs::File::open(path)?),
            WriteBody::Paced { body, .. } => body.open_unpaced()?,
        })
    }

    /// Whether sending must go through [`WriteBody::open`] to honour a rate limit.
    pub fn is_paced(&self) -> bool {
        matches!(self, WriteBody::Paced { .. })
    }

    /// The local file holding the bytes, if any (pacing aside).
    pub fn file(&self) -> Option<(&std::path::Path, u64)> {
        match self {
            WriteBody::Bytes(_) => None,
            WriteBody::File { path, len } => Some((path, *len)),
            WriteBody::Paced { body, .. } => body.file(),
        }
    }

    /// The bytes in memory, if that is where they are (pacing aside).
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            WriteBody::Bytes(b) => Some(b),
            WriteBody::File { .. } => None,
            WriteBody::Paced { body, .. } => body.bytes(),
        }
    }
}

/// Consumer of a streaming read. It may be called again from the start when a read is
/// retried, so it must reset whatever it builds on each call.
pub type StreamConsumer<'a> = dyn FnMut(&mut dyn Read) -> std::io::Result<()> + 'a;

/// The storage contract.
pub trait Backend: Send + Sync {
    /// Capabilities as data.
    fn properties(&self) -> Properties;

    /// A human description with credentials redacted.
    fn location(&self) -> String;

    /// Create the repository root. Idempotent.
    fn create(&self) -> Result<(), BackendError>;

    /// Every file below the directory `dir` (recursively), lazily.
    /// A missing directory lists as empty.
    fn list<'a>(
        &'a self,
        dir: &str,
    ) -> Result<Box<dyn Iterator<Item = Result<ObjectInfo, BackendError>> + Send + 'a>, BackendError>;

    /// Size of a file.
    fn stat(&self, path: &str) -> Result<u64, BackendError>;

    /// A bounded read of the whole file or a range. A range ending past the end of the file
    /// is an error (`RangeNotSatisfiable`); at most [`MAX_BOUNDED_READ`] bytes.
    fn read(&self, path: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, BackendError>;

    /// A streaming read; `consumer` may be called more than once (see [`StreamConsumer`]).
    fn read_stream(
        &self,
        path: &str,
        range: Option<Range<u64>>,
        consumer: &mut StreamConsumer<'_>,
    ) -> Result<(), BackendError>;

    /// Atomic write: readers see the whole file or none of it.
    fn write(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError>;

    /// Exclusive create: like [`Backend::write`], but fails with
    /// [`BackendErrorKind::AlreadyExists`] if `path` exists, without touching it. Of several
    /// writers racing to create one path, exactly one succeeds (what each backend
    /// guarantees, and how, is in docs/internals.md). For locks: small bodies.
    ///
    /// A backend reports `AlreadyExists` even when the file there is an earlier attempt of
    /// this very write whose answer was lost; telling the two apart is the retry
    /// decorator's job, since only it knows there was an earlier attempt.
    fn write_new(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError>;

    /// Remove a file.
    fn remove(&self, path: &str) -> Result<(), BackendError>;

    /// Removes a file if it is there; one already gone is not an error. Prune deletes
    /// this way: a backend that must look before it removes, to report a missing file
    /// (S3's DeleteObject succeeds either way), saves that request here.
    fn discard(&self, path: &str) -> Result<(), BackendError> {
        match self.remove(path) {
            Err(e) if e.kind == BackendErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    /// Asks the backend to report every request it sends to its service to `meter`, and
    /// returns whether it will. A backend that returns `false` is counted as one request
    /// per call by the accounting decorator; one that returns `true` is not counted there
    /// at all, so nothing is counted twice. Decorators pass the call through. A backend
    /// reports to the last meter it was given, so wrap it in one accounting decorator only.
    fn meter_requests(&self, meter: Arc<dyn RequestMeter>) -> bool;
}

/// Whether the file at `path` holds exactly the bytes of `body`: how a retried exclusive
/// create recognises its own earlier attempt (see [`Backend::write_new`]).
pub fn holds<B: Backend + ?Sized>(
    backend: &B,
    path: &str,
    body: &WriteBody<'_>,
) -> Result<bool, BackendError> {
    if backend.stat(path)? != body.len() {
        return Ok(false);
    }
    let mut same = false;
    backend.read_stream(path, None, &mut |stored: &mut dyn Read| {
        let mut ours = body.open_unpaced()?;
        same = same_bytes(stored, &mut ours)?;
        Ok(())
    })?;
    Ok(same)
}

/// Whether two readers yield the same bytes to their ends.
fn same_bytes(a: &mut dyn Read, b: &mut dyn Read) -> std::io::Result<bool> {
    let (mut ba, mut bb) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    loop {
        let n = a.read(&mut ba)?;
        if n == 0 {
            return Ok(b.read(&mut bb[..1])? == 0);
        }
        let mut got = 0;
        while got < n {
            let m = b.read(&mut bb[got..n])?;
            if m == 0 {
                return Ok(false);
            }
            got += m;
        }
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

impl<B: Backend + ?Sized> Backend for Arc<B> {
    fn properties(&self) -> Properties {
        (**self).properties()
    }
    fn location(&self) -> String {
        (**self).location()
    }
    fn create(&self) -> Result<(), BackendError> {
        (**self).create()
    }
    fn list<'a>(
        &'a self,
        dir: &str,
    ) -> Result<Box<dyn Iterator<Item = Result<ObjectInfo, BackendError>> + Send + 'a>, BackendError>
    {
        (**self).list(dir)
    }
    fn stat(&self, path: &str) -> Result<u64, BackendError> {
        (**self).stat(path)
    }
    fn read(&self, path: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, BackendError> {
        (**self).read(path, range)
    }
    fn read_stream(
        &self,
        path: &str,
        range: Option<Range<u64>>,
        consumer: &mut StreamConsumer<'_>,
    ) -> Result<(), BackendError> {
        (**self).read_stream(path, range, consumer)
    }
    fn write(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
        (**self).write(path, body)
    }
    fn write_new(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
        (**self).write_new(path, body)
    }
    fn remove(&self, path: &str) -> Result<(), BackendError> {
        (**self).remove(path)
    }
    fn discard(&self, path: &str) -> Result<(), BackendError> {
        (**self).discard(path)
    }
    fn meter_requests(&self, meter: Arc<dyn RequestMeter>) -> bool {
        (**self).meter_requests(meter)
    }
}
