//! A decorator that makes a backend fail on purpose.
//!
//! Faults are decided before the call reaches the inner backend, so a failed `write` leaves
//! nothing behind: exactly what a process killed before the upload finished looks like.
//! Every attempt is counted, failed ones included, so "the first K attempts are transient"
//! composes with a retrying layer above.

use std::io::Read;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::backend::{
    Backend, BackendError, BackendErrorKind, ObjectInfo, Properties, StreamConsumer, WriteBody,
};
use crate::cost::RequestMeter;

/// A backend operation, for counting and targeting faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// [`Backend::create`]
    Create,
    /// [`Backend::list`] (the call, not each item).
    List,
    /// [`Backend::stat`]
    Stat,
    /// [`Backend::read`]
    Read,
    /// [`Backend::read_stream`]
    ReadStream,
    /// [`Backend::write`]
    Write,
    /// [`Backend::remove`]
    Remove,
    /// [`Backend::write_new`]
    WriteNew,
}

impl Op {
    const ALL: [Op; 8] = [
        Op::Create,
        Op::List,
        Op::Stat,
        Op::Read,
        Op::ReadStream,
        Op::Write,
        Op::Remove,
        Op::WriteNew,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::List => "list",
            Op::Stat => "stat",
            Op::Read => "read",
            Op::ReadStream => "read_stream",
            Op::Write => "write",
            Op::Remove => "remove",
            Op::WriteNew => "write_new",
        }
    }
}

/// Damage applied to the bytes a read returns. Offsets are relative to the returned bytes
/// (the start of the range, not of the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// Flip bit `bit` (0..8) of the byte at `offset`; no effect if the read is shorter.
    FlipBit {
        /// Offset of the byte in the returned data.
        offset: u64,
        /// Which bit, 0 = least significant.
        bit: u8,
    },
    /// Return only the first `len` bytes.
    Truncate {
        /// How many bytes survive.
        len: u64,
    },
}

impl Corruption {
    fn apply(self, data: &mut Vec<u8>) {
        match self {
            Corruption::FlipBit { offset, bit } => {
                if let Some(b) = usize::try_from(offset).ok().and_then(|i| data.get_mut(i)) {
                    *b ^= 1 << (bit & 7);
                }
            }
            Corruption::Truncate { len } => {
                data.truncate(usize::try_from(len).unwrap_or(usize::MAX));
            }
        }
    }
}

/// Failing calls number `from..=to` (1-based, counted since construction) of one op.
struct FailRule {
    op: Op,
    from: u64,
    to: Option<u64>,
    kind: BackendErrorKind,
    /// The call reaches the inner backend first and only its answer is replaced: a
    /// request that landed but whose reply was lost.
    after: bool,
}

type PathPredicate = Box<dyn Fn(&str) -> bool + Send + Sync>;

struct CorruptRule {
    matches: PathPredicate,
    corruption: Corruption,
}

#[derive(Default)]
struct Faults {
    fail: Vec<FailRule>,
    corrupt: Vec<CorruptRule>,
}

/// Wraps a backend and injects failures and corruption; see the module docs.
pub struct FaultyBackend<B> {
    inner: B,
    calls: [AtomicU64; 8],
    faults: Mutex<Faults>,
}

impl<B: Backend> FaultyBackend<B> {
    /// Wraps `inner` with no faults configured.
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            calls: Default::default(),
            faults: Mutex::new(Faults::default()),
        }
    }

    /// The wrapped backend, to inspect what really got stored.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// How many times `op` was called so far, failed attempts included.
    pub fn calls(&self, op: Op) -> u64 {
        self.calls[op.index()].load(Ordering::SeqCst)
    }

    /// Total calls over all ops.
    pub fn total_calls(&self) -> u64 {
        Op::ALL.iter().map(|&op| self.calls(op)).sum()
    }

    /// The `n`th call of `op` from now (1 = the next one) fails with `kind`.
    pub fn fail_nth(&self, op: Op, n: u64, kind: BackendErrorKind) {
        let at = self.calls(op) + n;
        self.add_fail(op, at, Some(at), kind);
    }

    /// Every call of `op` from the `n`th from now on fails with `kind`: the process "died"
    /// there, as far as that op is concerned.
    pub fn fail_from_nth(&self, op: Op, n: u64, kind: BackendErrorKind) {
        let at = self.calls(op) + n;
        self.add_fail(op, at, None, kind);
    }

    /// The next `k` calls of `op` fail with [`BackendErrorKind::Transient`].
    pub fn transient_first(&self, op: Op, k: u64) {
        if k == 0 {
            return;
        }
        let from = self.calls(op) + 1;
        self.add_fail(op, from, Some(from + k - 1), BackendErrorKind::Transient);
    }

    /// The next `k` calls of `op` (`Write` or `WriteNew`) reach the inner backend, which
    /// carries them out, and then fail with [`BackendErrorKind::Transient`]: the request
    /// landed but its answer was lost, so a retry finds its own earlier work.
    pub fn lose_reply_first(&self, op: Op, k: u64) {
        if k == 0 {
            return;
        }
        let from = self.calls(op) + 1;
        self.lock().fail.push(FailRule {
            op,
            from,
            to: Some(from + k - 1),
            kind: BackendErrorKind::Transient,
            after: true,
        });
    }

    /// Reads (`read` and `read_stream`) of paths starting with `prefix` are damaged.
    pub fn corrupt_prefix(&self, prefix: impl Into<String>, corruption: Corruption) {
        let prefix = prefix.into();
        self.corrupt_matching(move |p| p.starts_with(&prefix), corruption);
    }

    /// Reads of paths for which `matches` is true are damaged.
    pub fn corrupt_matching(
        &self,
        matches: impl Fn(&str) -> bool + Send + Sync + 'static,
        corruption: Corruption,
    ) {
        self.lock().corrupt.push(CorruptRule {
            matches: Box::new(matches),
            corruption,
        });
    }

    /// Drops every configured fault; call counts are kept.
    pub fn clear_faults(&self) {
        *self.lock() = Faults::default();
    }

    fn lock(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add_fail(&self, op: Op, from: u64, to: Option<u64>, kind: BackendErrorKind) {
        self.lock().fail.push(FailRule {
            op,
            from,
            to,
            kind,
            after: false,
        });
    }

    /// Counts the call and returns the injected error, if this call is one to fail before
    /// it reaches the inner backend; otherwise the call's number.
    fn enter(&self, op: Op, path: &str) -> Result<u64, BackendError> {
        let n = self.calls[op.index()].fetch_add(1, Ordering::SeqCst) + 1;
        match self.rule(op, n, false) {
            Some(kind) => Err(injected(kind, op, path, n)),
            None => Ok(n),
        }
    }

    /// Replaces the answer of call `n` if a lost-reply rule covers it.
    fn leave(
        &self,
        op: Op,
        n: u64,
        path: &str,
        r: Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        match (r, self.rule(op, n, true)) {
            (Ok(()), Some(kind)) => Err(injected(kind, op, path, n)),
            (r, _) => r,
        }
    }

    fn rule(&self, op: Op, n: u64, after: bool) -> Option<BackendErrorKind> {
        self.lock()
            .fail
            .iter()
            .find(|r| {
                r.op == op && r.after == after && n >= r.from && r.to.is_none_or(|to| n <= to)
            })
            .map(|r| r.kind)
    }

    fn corruption_for(&self, path: &str) -> Vec<Corruption> {
        self.lock()
            .corrupt
            .iter()
            .filter(|r| (r.matches)(path))
            .map(|r| r.corruption)
            .collect()
    }
}

fn injected(kind: BackendErrorKind, op: Op, path: &str, n: u64) -> BackendError {
    BackendError::new(
        kind,
        op.name(),
        path,
        Some(format!("injected fault on call {n}").into()),
    )
}

/// A reader that damages the stream it passes through, with the same offsets as
/// [`Corruption::apply`] on the whole buffer.
struct CorruptReader<'r> {
    inner: &'r mut dyn Read,
    pos: u64,
    damage: &'r [Corruption],
}

impl Read for CorruptReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut limit = buf.len() as u64;
        for d in self.damage {
            if let Corruption::Truncate { len } = *d {
                limit = limit.min(len.saturating_sub(self.pos));
            }
        }
        // `limit` never exceeds `buf.len()`.
        let limit = usize::try_from(limit).unwrap_or(buf.len());
        let n = self.inner.read(&mut buf[..limit])?;
        for d in self.damage {
            if let Corruption::FlipBit { offset, bit } = *d {
                if (self.pos..self.pos + n as u64).contains(&offset) {
                    let i = (offset - self.pos) as usize;
                    buf[i] ^= 1 << (bit & 7);
                }
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl<B: Backend> Backend for FaultyBackend<B> {
    fn properties(&self) -> Properties {
        self.inner.properties()
    }

    fn location(&self) -> String {
        format!("faulty:{}", self.inner.location())
    }

    fn create(&self) -> Result<(), BackendError> {
        self.enter(Op::Create, "")?;
        self.inner.create()
    }

    fn list<'a>(
        &'a self,
        dir: &str,
    ) -> Result<Box<dyn Iterator<Item = Result<ObjectInfo, BackendError>> + Send + 'a>, BackendError>
    {
        self.enter(Op::List, dir)?;
        self.inner.list(dir)
    }

    fn stat(&self, path: &str) -> Result<u64, BackendError> {
        self.enter(Op::Stat, path)?;
        self.inner.stat(path)
    }

    fn read(&self, path: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, BackendError> {
        self.enter(Op::Read, path)?;
        let mut data = self.inner.read(path, range)?;
        for c in self.corruption_for(path) {
            c.apply(&mut data);
        }
        Ok(data)
    }

    fn read_stream(
        &self,
        path: &str,
        range: Option<Range<u64>>,
        consumer: &mut StreamConsumer<'_>,
    ) -> Result<(), BackendError> {
        self.enter(Op::ReadStream, path)?;
        let damage = self.corruption_for(path);
        if damage.is_empty() {
            return self.inner.read_stream(path, range, consumer);
        }
        self.inner
            .read_stream(path, range, &mut |r: &mut dyn Read| {
                let mut r = CorruptReader {
                    inner: r,
                    pos: 0,
                    damage: &damage,
                };
                consumer(&mut r)
            })
    }

    fn write(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
        let n = self.enter(Op::Write, path)?;
        let r = self.inner.write(path, body);
        self.leave(Op::Write, n, path, r)
    }

    fn write_new(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
        let n = self.enter(Op::WriteNew, path)?;
        let r = self.inner.write_new(path, body);
        self.leave(Op::WriteNew, n, path, r)
    }

    fn remove(&self, path: &str) -> Result<(), BackendError> {
        self.enter(Op::Remove, path)?;
        self.inner.remove(path)
    }

    fn discard(&self, path: &str) -> Result<(), BackendError> {
        self.enter(Op::Remove, path)?;
        self.inner.discard(path)
    }

    fn meter_requests(&self, meter: Arc<dyn RequestMeter>) -> bool {
        self.inner.meter_requests(meter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::memory::InMemoryBackend;

    fn kind<T>(r: Result<T, BackendError>) -> Option<BackendErrorKind> {
        r.err().map(|e| e.kind)
    }

    #[test]
    fn without_faults_it_is_transparent() {
        crate::testing::backend_conformance(|| FaultyBackend::new(InMemoryBackend::new()));
    }

    /// Guards against a vacuous suite: silently damaged reads must be caught.
    #[test]
    #[should_panic(expected = "check `round_trip_bytes` failed")]
    fn conformance_catches_corruption() {
        crate::testing::backend_conformance(|| {
            let b = FaultyBackend::new(InMemoryBackend::new());
            b.corrupt_matching(
                |p| p.starts_with("data/"),
                Corruption::FlipBit { offset: 0, bit: 0 },
            );
            b
        });
    }

    #[test]
    fn fails_exactly_the_nth_call() {
        let b = FaultyBackend::new(InMemoryBackend::new());
        b.fail_nth(Op::Write, 2, BackendErrorKind::NoSpace);
        assert_eq!(
            kind(b.write("a", &WriteBody::Bytes(b"1"))),
            None,
            "1st write"
        );
        assert_eq!(
            kind(b.write("b", &WriteBody::Bytes(b"2"))),
            Some(BackendErrorKind::NoSpace),
            "2nd write must fail"
        );
        assert_eq!(
            kind(b.write("c", &WriteBody::Bytes(b"3"))),
            None,
            "3rd write"
        );
        assert_eq!(b.calls(Op::Write), 3, "failed attempts are counted");
        assert_eq!(
            b.inner().paths(),
            vec!["a", "c"],
            "the failed write stored nothing"
        );
    }

    #[test]
    fn fail_from_nth_is_sticky() {
        let b = FaultyBackend::new(InMemoryBackend::new());
        b.fail_from_nth(Op::Write, 2, BackendErrorKind::Other);
        assert_eq!(
            kind(b.write("a", &WriteBody::Bytes(b"1"))),
            None,
            "1st write"
        );
        for p in ["b", "c", "d"] {
            assert_eq!(
                kind(b.write(p, &WriteBody::Bytes(b"x"))),
                Some(BackendErrorKind::Other),
                "write {p} after the cut"
            );
        }
        assert_eq!(kind(b.read("a", None)), None, "other ops are unaffected");
    }

    #[test]
    fn transient_then_success() {
        let b = FaultyBackend::new(InMemoryBackend::new());
        b.inner().put_raw("x", vec![9]);
        b.transient_first(Op::Read, 2);
        for attempt in 1..=2 {
            let e = b.read("x", None).err();
            assert!(
                e.as_ref().is_some_and(BackendError::is_retryable),
                "attempt {attempt} must be transient, got {e:?}"
            );
        }
        assert_eq!(
            b.read("x", None).ok(),
            Some(vec![9]),
            "third attempt succeeds"
        );
        assert_eq!(b.calls(Op::Read), 3, "read count");
    }

    #[test]
    fn corrupts_reads_and_streams_alike() {
        let b = FaultyBackend::new(InMemoryBackend::new());
        b.inner().put_raw("packs/aa", (0..10).collect());
        b.inner().put_raw("index/aa", (0..10).collect());
        b.corrupt_prefix("packs/", Corruption::FlipBit { offset: 3, bit: 0 });
        b.corrupt_matching(|p| p.ends_with("aa"), Corruption::Truncate { len: 5 });

        let expect = vec![0, 1, 2, 2, 4];
        assert_eq!(b.read("packs/aa", None).ok(), Some(expect.clone()), "read");
        let mut got = Vec::new();
        let r = b.read_stream("packs/aa", None, &mut |r: &mut dyn Read| {
            got.clear();
            r.read_to_end(&mut got).map(drop)
        });
        assert!(r.is_ok(), "read_stream: {r:?}");
        assert_eq!(got, expect, "read_stream damages the same bytes as read");
        assert_eq!(
            b.read("index/aa", Some(2..8)).ok(),
            Some(vec![2, 3, 4, 5, 6]),
            "truncation is relative to the range"
        );
    }
}
