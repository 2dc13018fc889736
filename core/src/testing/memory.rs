//! A backend held in memory.

use std::collections::BTreeMap;
use std::io::Read;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::cost::RequestMeter;

use crate::backend::{
    Backend, BackendError, BackendErrorKind, ObjectInfo, Properties, StreamConsumer, WriteBody,
    MAX_BOUNDED_READ,
};

/// Why an in-memory operation failed, as the `source` of a [`BackendError`].
#[derive(Debug, thiserror::Error)]
enum MemoryError {
    #[error("range {start}..{end} is {len} bytes, more than the bounded-read limit {max}")]
    TooLarge {
        start: u64,
        end: u64,
        len: u64,
        max: u64,
    },
    #[error("range {start}..{end} does not fit a file of {size} bytes")]
    BadRange { start: u64, end: u64, size: u64 },
    #[error("body said {expected} bytes but {actual} were read")]
    LengthMismatch { expected: u64, actual: u64 },
}

/// A complete [`Backend`] over a `BTreeMap` from repository-relative path to contents.
///
/// Writes are atomic by construction (the map is replaced under one lock), so it reports
/// `atomic_overwrite`. Directories are implicit: `list("a")` returns every key below `a/`.
#[derive(Debug, Default)]
pub struct InMemoryBackend {
    files: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl InMemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stored path, sorted; handy for asserting what a test left behind.
    pub fn paths(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Replaces a file's bytes without going through `write`, to stage corruption.
    pub fn put_raw(&self, path: &str, data: Vec<u8>) {
        self.lock().insert(path.to_owned(), data);
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        // A panicking test thread must not turn every later call into a second panic; the map
        // itself is never left half-updated because every mutation is a single call.
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, op: &'static str, path: &str) -> Result<Vec<u8>, BackendError> {
        self.lock()
            .get(path)
            .cloned()
            .ok_or_else(|| BackendError::new(BackendErrorKind::NotFound, op, path, None))
    }
}

/// The slice of `data` a range selects, or why it cannot.
fn select(
    op: &'static str,
    path: &str,
    data: &[u8],
    range: Option<Range<u64>>,
) -> Result<Range<usize>, BackendError> {
    let size = data.len() as u64;
    let Range { start, end } = range.unwrap_or(0..size);
    if start > end || end > size {
        let src = MemoryError::BadRange { start, end, size };
        return Err(BackendError::new(
            BackendErrorKind::RangeNotSatisfiable,
            op,
            path,
            Some(Box::new(src) as _),
        ));
    }
    // Both bounds are at most `data.len()`, so they fit a usize.
    Ok(start as usize..end as usize)
}

impl Backend for InMemoryBackend {
    fn properties(&self) -> Properties {
        Properties {
            max_connections: 8,
            atomic_overwrite: true,
            is_local: true,
            can_delete: true,
            cost_class: "local",
            deletes_versions: false,
        }
    }

    fn location(&self) -> String {
        "memory:".to_owned()
    }

    fn create(&self) -> Result<(), BackendError> {
        Ok(())
    }

    fn list<'a>(
        &'a self,
        dir: &str,
    ) -> Result<Box<dyn Iterator<Item = Result<ObjectInfo, BackendError>> + Send + 'a>, BackendError>
    {
        let dir = dir.trim_end_matches('/');
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        // A snapshot taken under the lock: holding the lock across the caller's iteration
        // would deadlock a caller that writes while listing.
        let items: Vec<_> = self
            .lock()
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| {
                Ok(ObjectInfo {
                    path: k.clone(),
                    size: v.len() as u64,
                })
            })
            .collect();
        Ok(Box::new(items.into_iter()))
    }

    fn stat(&self, path: &str) -> Result<u64, BackendError> {
        self.lock()
            .get(path)
            .map(|v| v.len() as u64)
            .ok_or_else(|| BackendError::new(BackendErrorKind::NotFound, "stat", path, None))
    }

    fn read(&self, path: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, BackendError> {
        let data = self.get("read", path)?;
        let sel = select("read", path, &data, range)?;
        let len = (sel.end - sel.start) as u64;
        if len > MAX_BOUNDED_READ {
            let src = MemoryError::TooLarge {
                start: sel.start as u64,
                end: sel.end as u64,
                len,
                max: MAX_BOUNDED_READ,
            };
            return Err(BackendError::new(
                BackendErrorKind::Other,
                "read",
                path,
                Some(Box::new(src) as _),
            ));
        }
        Ok(data[sel].to_vec())
    }

    fn read_stream(
        &self,
        path: &str,
        range: Option<Range<u64>>,
        consumer: &mut StreamConsumer<'_>,
    ) -> Result<(), BackendError> {
        let data = self.get("read_stream", path)?;
        let sel = select("read_stream", path, &data, range)?;
        let mut reader: &[u8] = &data[sel];
        consumer(&mut reader).map_err(|e| {
            BackendError::new(
                BackendErrorKind::Other,
                "read_stream",
                path,
                Some(Box::new(e) as _),
            )
        })
    }

    fn write(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
        let data = Self::body_bytes(path, body)?;
        self.lock().insert(path.to_owned(), data);
        Ok(())
    }

    fn write_new(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
        let data = Self::body_bytes(path, body)?;
        // Check and insert under one lock: that is the whole exclusivity.
        match self.lock().entry(path.to_owned()) {
            std::collections::btree_map::Entry::Occupied(_) => Err(BackendError::new(
                BackendErrorKind::AlreadyExists,
                "write_new",
                path,
                None,
            )),
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(data);
                Ok(())
            }
        }
    }

    fn remove(&self, path: &str) -> Result<(), BackendError> {
        self.lock()
            .remove(path)
            .map(drop)
            .ok_or_else(|| BackendError::new(BackendErrorKind::NotFound, "remove", path, None))
    }

    fn meter_requests(&self, _meter: Arc<dyn RequestMeter>) -> bool {
        false
    }
}

impl InMemoryBackend {
    /// The bytes of a write body, checked against its stated length.
    fn body_bytes(path: &str, body: &WriteBody<'_>) -> Result<Vec<u8>, BackendError> {
        let io_err = |e: std::io::Error| {
            BackendError::new(
                BackendErrorKind::Other,
                "write",
                path,
                Some(Box::new(e) as _),
            )
        };
        let mut data = Vec::new();
        body.open()
            .map_err(io_err)?
            .read_to_end(&mut data)
            .map_err(io_err)?;
        if data.len() as u64 != body.len() {
            let src = MemoryError::LengthMismatch {
                expected: body.len(),
                actual: data.len() as u64,
            };
            return Err(BackendError::new(
                BackendErrorKind::Other,
                "write",
                path,
                Some(Box::new(src) as _),
            ));
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_conformance() {
        crate::testing::conformance::backend_conformance(InMemoryBackend::new);
    }

    #[test]
    fn list_does_not_match_sibling_prefixes() {
        let b = InMemoryBackend::new();
        b.put_raw("ab/x", vec![1]);
        b.put_raw("abc/y", vec![2]);
        let got: Vec<String> = b
            .list("ab")
            .expect("list")
            .map(|r| r.expect("item").path)
            .collect();
        assert_eq!(got, vec!["ab/x".to_owned()], "`ab` must not list `abc/`");
    }
}
