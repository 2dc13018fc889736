//! Limits: how many requests run at once, and how fast bytes go up and down
//! (`--limit-upload` / `--limit-download`, in KiB/s like restic).
//!
//! Bandwidth is paced as the bytes flow, through a token bucket shared by every thread,
//! not by sleeping after each file: a 16 MiB pack sent at line speed and followed by a
//! long pause would average right but still saturate the uplink the user asked us to
//! leave room on.

use std::io::{self, Read};
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cairn_core::backend::{
    Backend, BackendError, ObjectInfo, Properties, StreamConsumer, WriteBody,
};
use cairn_core::cost::RequestMeter;

/// Largest piece paced at once: small enough that the rate is smooth at a few hundred
/// KiB/s, large enough that the bookkeeping costs nothing at line speed.
const SLICE: usize = 64 << 10;

/// A token bucket of bytes, shared by all transfers in one direction.
///
/// Tokens may go negative ("debt"): a thread takes what it needs and sleeps until the
/// debt would have been earned. Concurrent transfers then share the rate fairly without
/// a queue, and the long-run rate is exact.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A bucket filling at `bytes_per_sec`, holding at most a quarter second of burst.
    pub fn new(bytes_per_sec: u64) -> Self {
        let rate = bytes_per_sec.max(1) as f64;
        let burst = (rate / 4.0).max(SLICE as f64);
        Self {
            rate,
            burst,
            state: Mutex::new((0.0, Instant::now())),
        }
    }

    /// Waits until `n` bytes may pass.
    pub fn take(&self, n: usize) {
        let wait = {
            // A poisoned lock only means another thread panicked mid-update of two
            // floats; the values are still usable.
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let (tokens, last) = *st;
            let refilled =
                (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
            let left = refilled - n as f64;
            *st = (left, now);
            if left < 0.0 {
                Duration::from_secs_f64(-left / self.rate)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// A reader paced by a bucket.
struct Paced<'a, R: ?Sized> {
    inner: &'a mut R,
    bucket: &'a TokenBucket,
}

impl<R: Read + ?Sized> Read for Paced<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len().min(SLICE);
        let n = self.inner.read(&mut buf[..len])?;
        self.bucket.take(n);
        Ok(n)
    }
}

/// A counting semaphore for concurrent requests.
#[derive(Debug)]
struct Slots {
    free: Mutex<usize>,
    cv: Condvar,
}

struct SlotGuard<'a>(&'a Slots);

impl Slots {
    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.cv.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        SlotGuard(self)
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += 1;
        self.0.cv.notify_one();
    }
}

/// What to limit.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// Requests in flight at once.
    pub connections: Option<usize>,
    /// Upload rate in KiB/s.
    pub upload_kib: Option<u64>,
    /// Download rate in KiB/s.
    pub download_kib: Option<u64>,
}

impl Limits {
    /// Whether anything is limited.
    pub fn is_empty(&self) -> bool {
        self.connections.is_none() && self.upload_kib.is_none() && self.download_kib.is_none()
    }
}

/// A backend whose requests and bandwidth are limited.
pub struct LimitBackend<B> {
    inner: B,
    slots: Option<Slots>,
    connections: Option<usize>,
    up: Option<TokenBucket>,
    down: Option<TokenBucket>,
}

impl<B: Backend> LimitBackend<B> {
    /// Wraps `inner` with `limits`.
    pub fn new(inner: B, limits: Limits) -> Self {
        let connections = limits.connections.map(|c| c.max(1));
        Self {
            inner,
            slots: connections.map(|c| Slots {
                free: Mutex::new(c),
                cv: Condvar::new(),
            }),
            connections,
            up: limits
                .upload_kib
                .map(|k| TokenBucket::new(k.saturating_mul(1024))),
            down: limits
                .download_kib
                .map(|k| TokenBucket::new(k.saturating_mul(1024))),
        }
    }

    fn slot(&self) -> Option<SlotGuard<'_>> {
        self.slots.as_ref().map(Slots::acquire)
    }
}

impl<B: Backend> Backend for LimitBackend<B> {
    fn properties(&self) -> Properties {
        let mut p = self.inner.properties();
        if let Some(c) = self.connections {
            p.max_connections = p.max_connections.min(c);
        }
        p
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> Result<(), BackendError> {
        let _slot = self.slot();
        self.inner.create()
    }

    fn list<'a>(
        &'a self,
        dir: &str,
    ) -> Result<Box<dyn Iterator<Item = Result<ObjectInfo, BackendError>> + Send + 'a>, BackendError>
    {
        let _slot = self.slot();
        self.inner.list(dir)
    }

    fn stat(&self, path: &str) -> Result<u64, BackendError> {
        let _slot = self.slot();
        self.inner.stat(path)
    }

    fn read(&self, path: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, BackendError> {
        let _slot = self.slot();
        let data = self.inner.read(path, range)?;
        if let Some(b) = &self.down {
            // The bytes are already here; pacing after the fact still holds the long-run
            // rate, and bounded reads are small (headers, index files).
            for piece in data.chunks(SLICE) {
                b.take(piece.len());
            }
        }
        Ok(data)
    }

    fn read_stream(
        &self,
        path: &str,
        range: Option<Range<u64>>,
        consumer: &mut StreamConsumer<'_>,
    ) -> Result<(), BackendError> {
        let _slot = self.slot();
        match &self.down {
            None => self.inner.read_stream(path, range, consumer),
            Some(bucket) => self
                .inner
                .read_stream(path, range, &mut |r: &mut dyn Read| {
                    consumer(&mut Paced { inner: r, bucket })
                }),
        }
    }

    fn write(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
        let _slot = self.slot();
        let Some(bucket) = &self.up else {
            return self.inner.write(path, body);
        };
        let pace = |n: usize| bucket.take(n);
        self.inner
            .write(path, &WriteBody::Paced { body, pace: &pace })
    }

    fn write_new(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
        let _slot = self.slot();
        let Some(bucket) = &self.up else {
            return self.inner.write_new(path, body);
        };
        let pace = |n: usize| bucket.take(n);
        self.inner
            .write_new(path, &WriteBody::Paced { body, pace: &pace })
    }

    fn remove(&self, path: &str) -> Result<(), BackendError> {
        let _slot = self.slot();
        self.inner.remove(path)
    }

    fn discard(&self, path: &str) -> Result<(), BackendError> {
        let _slot = self.slot();
        self.inner.discard(path)
    }

    fn meter_requests(&self, meter: Arc<dyn RequestMeter>) -> bool {
        self.inner.meter_requests(meter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::testing::{backend_conformance, InMemoryBackend};

    #[test]
    fn conformance_through_the_decorator() {
        backend_conformance(|| {
            LimitBackend::new(
                InMemoryBackend::new(),
                Limits {
                    connections: Some(2),
                    upload_kib: Some(1 << 20),
                    download_kib: Some(1 << 20),
                },
            )
        });
    }

    #[test]
    fn bucket_holds_the_rate() {
        // 4 MiB/s; move 1 MiB plus the burst: must take at least 0.25 s of pacing.
        let b = TokenBucket::new(4 << 20);
        let start = Instant::now();
        let mut left = (1 << 20) + (1 << 20);
        while left > 0 {
            let n = left.min(SLICE);
            b.take(n);
            left -= n;
        }
        // The first burst (1 MiB) is free; the rest is paced: >= 0.25 s for 1 MiB more.
        assert!(start.elapsed() >= Duration::from_millis(240));
    }

    #[test]
    fn connections_cap_is_reported() {
        let b = LimitBackend::new(
            InMemoryBackend::new(),
            Limits {
                connections: Some(1),
                ..Limits::default()
            },
        );
        assert_eq!(b.properties().max_connections, 1);
        assert!(Limits::default().is_empty());
    }
}
