//! Request accounting: counts every request by billing class and every byte moved, and
//! optionally logs each request, so a run can say what it cost (`--json`, the metrics
//! file) and a test can prove a prefix-restricted key never strayed outside its prefix.
//!
//! It sits innermost, right on the real backend, so each retry attempt is counted: the
//! provider bills attempts, not successes.
//!
//! What is counted is what the backend says it sent, not a guess from the call: a backend
//! on a billed service (S3, B2) takes a [`RequestMeter`] through
//! [`Backend::meter_requests`] and reports each HTTP request (every page of a listing,
//! every part of a multipart upload, the HEAD before a delete). Backends that decline
//! (local disks, SFTP: nothing billed per request) are counted one request per call.
//! Bytes and failed calls are counted here either way.

use std::fs::File;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_core::backend::{
    Backend, BackendError, ObjectInfo, Properties, StreamConsumer, WriteBody,
};
use cairn_core::cost::{MeteredRequest, RequestClass, RequestCounters, RequestMeter};

/// A backend that counts what passes through it.
pub struct AccountingBackend<B> {
    inner: B,
    sink: Arc<Sink>,
    /// Whether `inner` reports its own requests to `sink`.
    metered: bool,
}

/// Where requests are counted and logged, shared with a metering backend.
struct Sink {
    counters: Arc<RequestCounters>,
    log: OnceLock<Mutex<File>>,
    location: String,
}

impl Sink {
    /// Counts and logs one request.
    fn request(&self, class: RequestClass, path: &str, bytes: u64, outcome: &str) {
        self.counters.request(class);
        let Some(log) = self.log.get() else { return };
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        // A path outside the repository (see `MeteredRequest::path`) must not read as
        // one inside it, so it is not joined to the location.
        let target = if path.starts_with('/') {
            format!("outside-repository:{path}")
        } else if self.location.ends_with('/') {
            format!("{}{path}", self.location)
        } else {
            format!("{}/{path}", self.location)
        };
        let line = format!("{ms} {} {target} {bytes} {outcome}\n", class.as_str());
        // The log is diagnostics: a failed log write must not fail the backup.
        if let Ok(mut f) = log.lock() {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

impl RequestMeter for Sink {
    fn record(&self, r: &MeteredRequest<'_>) {
        self.request(r.class, r.path, r.bytes, r.outcome);
    }
}

impl<B: Backend> AccountingBackend<B> {
    /// Wraps `inner`, adding to `counters`.
    pub fn new(inner: B, counters: Arc<RequestCounters>) -> Self {
        let sink = Arc::new(Sink {
            counters,
            log: OnceLock::new(),
            location: inner.location(),
        });
        let metered = inner.meter_requests(sink.clone());
        Self {
            inner,
            sink,
            metered,
        }
    }

    /// Also appends one line per request to `log`:
    /// `<unix-ms> <class> <location>/<path> <bytes> <outcome>`, where the outcome is `ok`
    /// or the error kind of a call, and for a metered backend's requests `ok`, `NotFound`,
    /// `http-<status>`, `no-response` or `cancelled`, with the bytes of the body sent or
    /// else of the answer's.
    pub fn with_log(self, log: File) -> Self {
        // Only ever set here, on a fresh decorator; a second log would be a caller bug,
        // and keeping the first one loses nothing.
        let _ = self.sink.log.set(Mutex::new(log));
        self
    }

    /// Counts a call: its failure always, the request itself unless the backend meters
    /// its own.
    fn record<T>(&self, class: RequestClass, path: &str, bytes: u64, r: &Result<T, BackendError>) {
        if r.is_err() {
            self.sink.counters.error();
        }
        if self.metered {
            return;
        }
        let outcome = match r {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("{:?}", e.kind),
        };
        self.sink.request(class, path, bytes, &outcome);
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
        self.sink.counters.downloaded(n);
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
                    counters: &self.sink.counters,
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
        self.sink.counters.uploaded(body.len());
        self.record(RequestClass::Put, path, body.len(), &r);
        r
    }

    fn write_new(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
        let r = self.inner.write_new(path, body);
        self.sink.counters.uploaded(body.len());
        self.record(RequestClass::Put, path, body.len(), &r);
        r
    }

    fn remove(&self, path: &str) -> Result<(), BackendError> {
        let r = self.inner.remove(path);
        self.record(RequestClass::Delete, path, 0, &r);
        r
    }

    fn discard(&self, path: &str) -> Result<(), BackendError> {
        let r = self.inner.discard(path);
        self.record(RequestClass::Delete, path, 0, &r);
        r
    }

    fn meter_requests(&self, _meter: Arc<dyn RequestMeter>) -> bool {
        // Requests below are this decorator's to count; an outer meter would count them
        // a second time. No decorator wraps another accounting one.
        false
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

    /// A backend that meters itself: every write is two requests on its "wire".
    struct TwoPerWrite {
        inner: InMemoryBackend,
        meter: std::sync::Mutex<Option<Arc<dyn RequestMeter>>>,
    }

    impl Backend for TwoPerWrite {
        fn properties(&self) -> Properties {
            self.inner.properties()
        }
        fn location(&self) -> String {
            "two:".into()
        }
        fn create(&self) -> Result<(), BackendError> {
            self.inner.create()
        }
        fn list<'a>(
            &'a self,
            dir: &str,
        ) -> Result<
            Box<dyn Iterator<Item = Result<ObjectInfo, BackendError>> + Send + 'a>,
            BackendError,
        > {
            self.inner.list(dir)
        }
        fn stat(&self, path: &str) -> Result<u64, BackendError> {
            self.inner.stat(path)
        }
        fn read(&self, path: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, BackendError> {
            self.inner.read(path, range)
        }
        fn read_stream(
            &self,
            path: &str,
            range: Option<Range<u64>>,
            consumer: &mut StreamConsumer<'_>,
        ) -> Result<(), BackendError> {
            self.inner.read_stream(path, range, consumer)
        }
        fn write(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
            if let Some(m) = self.meter.lock().expect("lock").as_ref() {
                // The second one strays outside the repository, as no real backend should.
                let requests = [
                    (RequestClass::Put, "Upload", path),
                    (RequestClass::Head, "Check", "/bkt/elsewhere"),
                ];
                for (class, api, path) in requests {
                    m.record(&MeteredRequest {
                        class,
                        api,
                        path,
                        bytes: 1,
                        outcome: "ok",
                    });
                }
            }
            self.inner.write(path, body)
        }
        fn write_new(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
            self.inner.write_new(path, body)
        }
        fn remove(&self, path: &str) -> Result<(), BackendError> {
            self.inner.remove(path)
        }
        fn meter_requests(&self, meter: Arc<dyn RequestMeter>) -> bool {
            *self.meter.lock().expect("lock") = Some(meter);
            true
        }
    }

    #[test]
    fn a_metering_backend_is_counted_by_what_it_reports() {
        let counters = Arc::new(RequestCounters::default());
        let log = tempfile::NamedTempFile::new().expect("log");
        let inner = TwoPerWrite {
            inner: InMemoryBackend::new(),
            meter: std::sync::Mutex::new(None),
        };
        let b =
            AccountingBackend::new(inner, counters.clone()).with_log(log.reopen().expect("reopen"));
        b.write("a/x", &WriteBody::Bytes(b"hello")).expect("write");
        assert!(b.stat("nope").is_err());
        let s = counters.snapshot();
        // Two reported requests for the write; the stat reported none, so none is counted.
        assert_eq!((s.of(RequestClass::Put), s.of(RequestClass::Head)), (1, 1));
        assert_eq!(s.total(), 2);
        assert_eq!(s.errors, 1, "failed calls are still counted here");
        assert_eq!(s.bytes_up, 5, "bytes are counted per call");
        let text = std::fs::read_to_string(log.path()).expect("read log");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains(" put two:/a/x 1 ok"), "{text}");
        assert!(
            text.contains(" head outside-repository:/bkt/elsewhere 1 ok"),
            "a stray request must not read as one inside the repository: {text}"
        );
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
