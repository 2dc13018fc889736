//! Retries of transient failures, with exponential backoff and full jitter.
//!
//! Only [`BackendErrorKind::Transient`] is retried: a missing file, a denied request or a
//! full disk will not heal by asking again, and retrying them would only hide the cause
//! behind a long wait. Jitter keeps several of our own threads (and several hosts behind
//! one home router) from retrying in lockstep against a recovering server.
//!
//! Every operation can be repeated safely: writes are atomic and rewindable, reads are
//! idempotent, and a streaming read's consumer resets itself on each call (the
//! [`StreamConsumer`] contract). A listing that fails midway is restarted and the entries
//! already handed out are skipped.
//!
//! An exclusive create ([`Backend::write_new`]) is the one operation a retry can trip over
//! itself: the first attempt may have created the file and lost its answer, and the next
//! one then finds the file there. So after a transient failure, `AlreadyExists` is checked
//! against the bytes we were writing, and a file holding exactly them is our own write.
//! Lock bodies carry a random nonce, so another writer's file never matches by accident.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use cairn_core::backend::{
    holds, Backend, BackendError, BackendErrorKind, ObjectInfo, Properties, StreamConsumer,
    WriteBody,
};
use cairn_core::cost::RequestMeter;

/// Called before each retry with the error, the attempt that failed (1-based) and the
/// wait; the CLI prints a warning from it.
pub type RetryNotify = dyn Fn(&BackendError, u32, Duration) + Send + Sync;

/// How often and how patiently to retry.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Upper bound of the first wait.
    pub base: Duration,
    /// Upper bound of any wait.
    pub max: Duration,
}

impl Default for RetryPolicy {
    /// Eight attempts spread over about two minutes at worst: long enough to ride out a
    /// restarting server or a Wi-Fi reconnect, short enough that cron's next run is not
    /// reached while one is still waiting.
    fn default() -> Self {
        Self {
            attempts: 8,
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `failed + 1`: uniform in `[0, min(max, base * 2^(failed-1))]`
    /// ("full jitter", AWS architecture blog 2015).
    fn delay(&self, failed: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << (failed.saturating_sub(1)).min(20));
        let cap = exp.min(self.max);
        let mut r = [0u8; 4];
        // Without randomness, wait the full cap: slower, never wrong.
        let frac = match getrandom::getrandom(&mut r) {
            Ok(()) => f64::from(u32::from_le_bytes(r)) / f64::from(u32::MAX),
            Err(_) => 1.0,
        };
        cap.mul_f64(frac)
    }
}

/// A backend that retries transient failures of `inner`.
pub struct RetryBackend<B> {
    inner: B,
    policy: RetryPolicy,
    notify: Option<Arc<RetryNotify>>,
}

impl<B: Backend> RetryBackend<B> {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: B, policy: RetryPolicy) -> Self {
        Self {
            inner,
            policy,
            notify: None,
        }
    }

    /// Calls `notify` before each retry.
    pub fn with_notify(mut self, notify: Arc<RetryNotify>) -> Self {
        self.notify = Some(notify);
        self
    }

    fn retry<T>(&self, mut op: impl FnMut() -> Result<T, BackendError>) -> Result<T, BackendError> {
        let mut failed = 0;
        loop {
            match op() {
                Err(e) if e.is_retryable() && failed + 1 < self.policy.attempts => {
                    failed += 1;
                    let wait = self.policy.delay(failed);
                    if let Some(n) = &self.notify {
                        n(&e, failed, wait);
                    }
                    std::thread::sleep(wait);
                }
                r => return r,
            }
        }
    }
}

/// A listing that restarts itself after a transient failure.
struct RetryingList<'a, B> {
    backend: &'a RetryBackend<B>,
    dir: String,
    current: Box<dyn Iterator<Item = Result<ObjectInfo, BackendError>> + Send + 'a>,
    seen: HashSet<String>,
    failed: u32,
}

impl<B: Backend> Iterator for RetryingList<'_, B> {
    type Item = Result<ObjectInfo, BackendError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.current.next()? {
                Ok(info) => {
                    if self.seen.insert(info.path.clone()) {
                        return Some(Ok(info));
                    }
                }
                Err(e) if e.is_retryable() && self.failed + 1 < self.backend.policy.attempts => {
                    self.failed += 1;
                    let wait = self.backend.policy.delay(self.failed);
                    if let Some(n) = &self.backend.notify {
                        n(&e, self.failed, wait);
                    }
                    std::thread::sleep(wait);
                    match self.backend.retry(|| self.backend.inner.list(&self.dir)) {
                        Ok(it) => self.current = it,
                        Err(e) => return Some(Err(e)),
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl<B: Backend> Backend for RetryBackend<B> {
    fn properties(&self) -> Properties {
        self.inner.properties()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> Result<(), BackendError> {
        self.retry(|| self.inner.create())
    }

    fn list<'a>(
        &'a self,
        dir: &str,
    ) -> Result<Box<dyn Iterator<Item = Result<ObjectInfo, BackendError>> + Send + 'a>, BackendError>
    {
        let current = self.retry(|| self.inner.list(dir))?;
        Ok(Box::new(RetryingList {
            backend: self,
            dir: dir.to_owned(),
            current,
            seen: HashSet::new(),
            failed: 0,
        }))
    }

    fn stat(&self, path: &str) -> Result<u64, BackendError> {
        self.retry(|| self.inner.stat(path))
    }

    fn read(&self, path: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, BackendError> {
        self.retry(|| self.inner.read(path, range.clone()))
    }

    fn read_stream(
        &self,
        path: &str,
        range: Option<Range<u64>>,
        consumer: &mut StreamConsumer<'_>,
    ) -> Result<(), BackendError> {
        self.retry(|| self.inner.read_stream(path, range.clone(), consumer))
    }

    fn write(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
        self.retry(|| self.inner.write(path, body))
    }

    fn write_new(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
        let mut may_have_landed = false;
        self.retry(|| match self.inner.write_new(path, body) {
            Err(e) if e.is_retryable() => {
                may_have_landed = true;
                Err(e)
            }
            Err(e) if e.kind == BackendErrorKind::AlreadyExists && may_have_landed => {
                // A failed comparison proves nothing either way: report the conflict as
                // found, which errs on the side of not taking a lock.
                match holds(&self.inner, path, body) {
                    Ok(true) => Ok(()),
                    _ => Err(e),
                }
            }
            r => r,
        })
    }

    fn remove(&self, path: &str) -> Result<(), BackendError> {
        self.retry(|| self.inner.remove(path))
    }

    fn discard(&self, path: &str) -> Result<(), BackendError> {
        self.retry(|| self.inner.discard(path))
    }

    fn meter_requests(&self, meter: Arc<dyn RequestMeter>) -> bool {
        self.inner.meter_requests(meter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::backend::BackendErrorKind;
    use cairn_core::testing::{backend_conformance, FaultyBackend, InMemoryBackend, Op};
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(1),
            max: Duration::from_millis(4),
        }
    }

    #[test]
    fn conformance_through_the_decorator() {
        backend_conformance(|| RetryBackend::new(InMemoryBackend::new(), fast()));
    }

    #[test]
    fn transient_failures_are_retried_and_reported() {
        let faulty = Arc::new(FaultyBackend::new(InMemoryBackend::new()));
        faulty.transient_first(Op::Write, 3);
        let seen = Arc::new(AtomicU32::new(0));
        let s2 = seen.clone();
        let b = RetryBackend::new(faulty.clone(), fast()).with_notify(Arc::new(move |_, _, _| {
            s2.fetch_add(1, Ordering::Relaxed);
        }));
        b.write("x", &WriteBody::Bytes(b"1"))
            .expect("third retry succeeds");
        assert_eq!(seen.load(Ordering::Relaxed), 3);
        assert_eq!(faulty.calls(Op::Write), 4);
    }

    #[test]
    fn exclusive_create_recognises_its_own_lost_reply() {
        let faulty = Arc::new(FaultyBackend::new(InMemoryBackend::new()));
        faulty.lose_reply_first(Op::WriteNew, 1);
        let b = RetryBackend::new(faulty.clone(), fast());
        b.write_new("locks/l", &WriteBody::Bytes(b"ours"))
            .expect("the landed first attempt is ours");
        assert_eq!(faulty.calls(Op::WriteNew), 2);
        assert_eq!(b.read("locks/l", None).expect("read"), b"ours");

        // Someone else's lock stays a conflict, retried or not.
        faulty.lose_reply_first(Op::WriteNew, 1);
        let e = b
            .write_new("locks/l", &WriteBody::Bytes(b"mine"))
            .expect_err("another writer's file");
        assert_eq!(e.kind, BackendErrorKind::AlreadyExists);
        let e = b
            .write_new("locks/l", &WriteBody::Bytes(b"ours"))
            .expect_err("no earlier attempt: same bytes are still a conflict");
        assert_eq!(e.kind, BackendErrorKind::AlreadyExists);
    }

    #[test]
    fn gives_up_after_the_last_attempt() {
        let faulty = Arc::new(FaultyBackend::new(InMemoryBackend::new()));
        faulty.transient_first(Op::Read, 10);
        let b = RetryBackend::new(faulty.clone(), fast());
        let e = b.read("x", None).expect_err("still failing");
        assert_eq!(e.kind, BackendErrorKind::Transient);
        assert_eq!(faulty.calls(Op::Read), 4);
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        let faulty = Arc::new(FaultyBackend::new(InMemoryBackend::new()));
        let b = RetryBackend::new(faulty.clone(), fast());
        let e = b.read("missing", None).expect_err("missing");
        assert_eq!(e.kind, BackendErrorKind::NotFound);
        assert_eq!(faulty.calls(Op::Read), 1);
    }

    #[test]
    fn delays_grow_and_stay_capped() {
        let p = RetryPolicy {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_millis(800),
        };
        for failed in 1..30 {
            assert!(p.delay(failed) <= Duration::from_millis(800));
        }
        assert!(p.delay(1) <= Duration::from_millis(100));
    }
}
