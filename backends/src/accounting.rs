//! Request accounting: counts every request by billing class and every byte moved, and
//! optionally logs each request, so a run can say what it cost (`--json`, the metrics
//! file) and a test can prove a prefix-restricted key never strayed outside its prefix.
//!
//! It sits innermost, right on the real backend, so each retry attempt is counted: the
//! provider bills attempts, not successes.

use std::fs::File;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_core::backend::{
    Backend, BackendError, ObjectInfo, Properties, StreamConsumer, WriteBody,
};
use cairn_core::cost::{RequestClass, RequestCounters};

/// A backend that counts what passes through it.
pub struct AccountingBackend<B> {
    inner: B,
    counters: Arc<RequestCounters>,
    log: Option<Mutex<File>>,
    location: String,
}

impl<B: Backend> AccountingBackend<B> {
    /// Wraps `inner`, adding to `counters`.
    pub fn new(inner: B, counters: Arc<RequestCounters>) -> Self {
        let location = inner.location();
        Self {
            inner,
            counters,
            log: None,
            location,
        }
    }

    /// Also appends one line per request to `log`:
    /// `<unix-ms> <class> <location>/<path> <bytes> <ok|error kind>`.
    pub fn with_log(mut self, log: File) -> Self {
        self.log = Some(Mutex::new(log));
        self
    }

    fn record<T>(&self, class: RequestClass, path: &str, bytes: u64, r: &Result<T, BackendError>) {
        self.counters.request(class);
        if r.is_err() {
            self.counters.error();
        }
        let Some(log) = &self.log else { return };
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let outcome = match r {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("{:?}", e.kind),
        };
        let sep = if self.location.ends_with('/') {
            ""
        } else {
            "/"
        };
        let line = format!(
            "{ms} {} {}{sep}{path} {bytes} {outcome}\n",
            class.as_str(),
            self.location
        );
        // The log is diagnostics: a failed log write must not fail the backup.
        if let Ok(mut f) = log.lock() {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// Counts bytes as a reader is drained.
struct CountingReader<'a, R: ?Sized> {
    inner: &'a mut R,
    counters: &'a RequestCounters,
    total: u64,
}

impl<R: Read + ?Sized> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counters.downloaded(n as u64);
        self.total += n as u64;
        Ok(n)
    }
}

impl<B: Backend> Backend for AccountingBackend<B> {
    fn properties(&self) -> Properties {
        self.inner.properties()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> Result<(), BackendError> {
        self.inner.create()
    }

    fn list<'a>(
        &'a self,
        dir: &str,
    ) -> Result<Box<dyn Iterator<Item = Result<ObjectInfo, BackendError>> + Send + 'a>, BackendError>
    {
        let r = self.inner.list(dir);
        self.record(RequestClass::List, dir, 0, &r);
        r
    }

    fn stat(&self, path: &str) -> Result<u64, BackendError> {
        let r = self.inner.stat(path);
        self.record(RequestClass::Head, path, 0, &r);
        r
    }

    fn read(&self, path: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, BackendError> {
        let r = self.inner.read(path, range);
        let n = r.as_ref().map(|v| v.len() as u64).unwrap_or(0);
        self.counters.downloaded(n);
        self.record(RequestClass::Get, path, n, &r);
        r
    }

    fn read_stream(
        &self,
        path: &str,
        range: Option<Range<u64>>,
        consumer: &mut StreamConsumer<'_>,
    ) -> Result<(), BackendError> {
        let mut total = 0;
        let r = self
            .inner
            .read_stream(path, range, &mut |rd: &mut dyn Read| {
                let mut counting = CountingReader {
                    inner: rd,
                    counters: &self.counters,
                    total: 0,
                };
                let res = consumer(&mut counting);
                total += counting.total;
                res
            });
        self.record(RequestClass::Get, path, total, &r);
        r
    }

    fn write(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
        let r = self.inner.write(path, body);
        // Bytes are counted as sent even when the request failed late: they crossed the wire.
        self.counters.uploaded(body.len());
        self.record(RequestClass::Put, path, body.len(), &r);
        r
    }

    fn remove(&self, path: &str) -> Result<(), BackendError> {
        let r = self.inner.remove(path);
        self.record(RequestClass::Delete, path, 0, &r);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::testing::{backend_conformance, InMemoryBackend};

    #[test]
    fn conformance_through_the_decorator() {
        backend_conformance(|| AccountingBackend::new(InMemoryBackend::new(), Arc::default()));
    }

    #[test]
    fn counts_and_logs_each_request() {
        let counters = Arc::new(RequestCounters::default());
        let log = tempfile::NamedTempFile::new().expect("log");
        let b = AccountingBackend::new(InMemoryBackend::new(), counters.clone())
            .with_log(log.reopen().expect("reopen"));
        b.write("a/x", &WriteBody::Bytes(b"hello")).expect("write");
        assert_eq!(b.read("a/x", None).expect("read"), b"hello");
        let mut got = Vec::new();
        b.read_stream("a/x", Some(1..3), &mut |r: &mut dyn Read| {
            got.clear();
            r.read_to_end(&mut got).map(drop)
        })
        .expect("stream");
        assert!(b.stat("nope").is_err());
        let _ = b.list("a").expect("list").count();
        b.remove("a/x").expect("remove");
        let s = counters.snapshot();
        assert_eq!(s.of(RequestClass::Put), 1);
        assert_eq!(s.of(RequestClass::Get), 2);
        assert_eq!(s.of(RequestClass::Head), 1);
        assert_eq!(s.of(RequestClass::List), 1);
        assert_eq!(s.of(RequestClass::Delete), 1);
        assert_eq!(s.errors, 1);
        assert_eq!((s.bytes_up, s.bytes_down), (5, 7));
        let text = std::fs::read_to_string(log.path()).expect("read log");
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert!(lines[0].ends_with(" put memory:/a/x 5 ok"), "{}", lines[0]);
        assert!(
            lines[3].ends_with(" head memory:/nope 0 NotFound"),
            "{}",
            lines[3]
        );
    }
}
