//! Backup session markers (`docs/format.md`, "Session markers"): how prune learns which
//! backups are running without any lock a backup would wait for. A backup writes one marker
//! when it starts, a new one at every heartbeat, and a last one when it commits or gives up;
//! hosts never delete (their storage keys may not), so each marker is a new file named by
//! its BLAKE3 and the admin's Sweep removes old ones.

use crate::cbor::{CborError, Dec, Enc};
use crate::id::{Id, Id16, SnapshotId};

/// Where a session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Started or heartbeating.
    Running = 0,
    /// Its snapshot is written.
    Committed = 1,
    /// Ended without a snapshot (error, interrupt, dry run).
    Aborted = 2,
}

/// One session marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionMarker {
    /// Random id of the backup session.
    pub sid: Id16,
    /// When the session started (ms since the epoch).
    pub started_ms: i64,
    /// When this marker was written.
    pub at_ms: i64,
    /// Newest plan generation the session had seen when it started; condemned blobs of
    /// plans up to this one it treats as absent.
    pub gen_seen: u64,
    /// Where it stands.
    pub state: SessionState,
    /// The snapshot written, once committed.
    pub snapshot: Option<SnapshotId>,
}

impl SessionMarker {
    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.map(if self.snapshot.is_some() { 7 } else { 6 });
        e.key(0).u64(1);
        e.key(1).bytes(&self.sid.0);
        e.key(2).i64(self.started_ms);
        e.key(3).i64(self.at_ms);
        e.key(4).u64(self.gen_seen);
        e.key(5).u64(self.state as u64);
        if let Some(s) = &self.snapshot {
            e.key(6).bytes(&s.0 .0);
        }
        e.buf
    }

    /// Decodes an authenticated payload.
    pub fn decode(b: &[u8]) -> Result<Self, CborError> {
        let mut d = Dec::new(b);
        let n = d.map()?;
        if !(6..=7).contains(&n) {
            return Err(d.err("session marker must have 6 or 7 fields"));
        }
        let mut prev = None;
        let mut field = |d: &mut Dec, want: u64| -> Result<(), CborError> {
            if d.key(&mut prev)? != want {
                return Err(d.err("missing or unknown field"));
            }
            Ok(())
        };
        field(&mut d, 0)?;
        if d.u64()? != 1 {
            return Err(d.err("unsupported session marker version"));
        }
        field(&mut d, 1)?;
        let sid = Id16(d.fixed()?);
        field(&mut d, 2)?;
        let started_ms = d.i64()?;
        field(&mut d, 3)?;
        let at_ms = d.i64()?;
        field(&mut d, 4)?;
        let gen_seen = d.u64()?;
        field(&mut d, 5)?;
        let state = match d.u64()? {
            0 => SessionState::Running,
            1 => SessionState::Committed,
            2 => SessionState::Aborted,
            _ => return Err(d.err("unknown session state")),
        };
        let snapshot = if n == 7 {
            field(&mut d, 6)?;
            Some(SnapshotId(Id(d.fixed()?)))
        } else {
            None
        };
        d.finish()?;
        Ok(Self {
            sid,
            started_ms,
            at_ms,
            gen_seen,
            state,
            snapshot,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for snapshot in [None, Some(SnapshotId(Id([9; 32])))] {
            let m = SessionMarker {
                sid: Id16([1; 16]),
                started_ms: 5,
                at_ms: 6,
                gen_seen: 2,
                state: SessionState::Committed,
                snapshot,
            };
            assert_eq!(SessionMarker::decode(&m.encode()).unwrap(), m);
        }
        assert!(SessionMarker::decode(&[0xa0]).is_err());
    }
}
