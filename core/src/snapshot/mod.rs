//! Snapshots (`docs/format.md`, "Snapshots"): what was backed up, when, from where, and how it
//! went. Sealed with the host key (file type 1) and named by the BLAKE3 of the sealed bytes.

pub mod select;

use crate::cbor::{CborError, Dec, Enc};
use crate::id::{Id, Id16, SnapshotId};

/// Counts of one backup run.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Files seen for the first time.
    pub files_new: u64,
    /// Files whose content was read again because they changed.
    pub files_changed: u64,
    /// Files reused unread from the parent snapshot.
    pub files_unchanged: u64,
    /// Directories new.
    pub dirs_new: u64,
    /// Directories changed.
    pub dirs_changed: u64,
    /// Directories unchanged.
    pub dirs_unchanged: u64,
    /// Bytes of file content read.
    pub bytes_read: u64,
    /// Stored bytes added to the repository (after dedup, compression and sealing).
    pub bytes_added: u64,
    /// Blobs added.
    pub blobs_added: u64,
    /// Files in the snapshot.
    pub total_files: u64,
    /// Bytes of file content in the snapshot.
    pub total_bytes: u64,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// Source errors: path and message. Non-empty means the snapshot is incomplete.
    pub errors: Vec<(String, String)>,
}

/// A snapshot.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// Writing host.
    pub host_id: Id16,
    /// Time of the backup, ns since the epoch (UTC).
    pub time_ns: i64,
    /// Root tree.
    pub tree: Id,
    /// Backed-up paths as given (absolute).
    pub paths: Vec<String>,
    /// Host name (from `--host` or the system).
    pub hostname: String,
    /// User who ran the backup.
    pub username: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Snapshot whose files were reused unread.
    pub parent: Option<SnapshotId>,
    /// Program version.
    pub program: String,
    /// Counts.
    pub summary: Summary,
}

fn encode_strs(e: &mut Enc, v: &[String]) {
    e.array(v.len());
    for s in v {
        e.text(s);
    }
}

fn decode_strs(d: &mut Dec) -> Result<Vec<String>, CborError> {
    let n = d.array()?;
    let mut v = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        v.push(d.text()?.to_owned());
    }
    Ok(v)
}

impl Summary {
    fn encode(&self, e: &mut Enc) {
        let s = self;
        e.map(13);
        for (k, v) in [
            s.files_new,
            s.files_changed,
            s.files_unchanged,
            s.dirs_new,
            s.dirs_changed,
            s.dirs_unchanged,
            s.bytes_read,
            s.bytes_added,
            s.blobs_added,
            s.total_files,
            s.total_bytes,
            s.duration_ms,
        ]
        .into_iter()
        .enumerate()
        {
            e.key(k as u64).u64(v);
        }
        e.key(12).array(s.errors.len());
        for (p, m) in &s.errors {
            e.array(2).text(p).text(m);
        }
    }

    fn decode(d: &mut Dec) -> Result<Self, CborError> {
        let n = d.map()?;
        let mut s = Summary::default();
        let mut prev = None;
        for _ in 0..n {
            let k = d.key(&mut prev)?;
            let slot = match k {
                0 => &mut s.files_new,
                1 => &mut s.files_changed,
                2 => &mut s.files_unchanged,
                3 => &mut s.dirs_new,
                4 => &mut s.dirs_changed,
                5 => &mut s.dirs_unchanged,
                6 => &mut s.bytes_read,
                7 => &mut s.bytes_added,
                8 => &mut s.blobs_added,
                9 => &mut s.total_files,
                10 => &mut s.total_bytes,
                11 => &mut s.duration_ms,
                12 => {
                    for _ in 0..d.array()? {
                        if d.array()? != 2 {
                            return Err(d.err("error entry must be a pair"));
                        }
                        s.errors.push((d.text()?.to_owned(), d.text()?.to_owned()));
                    }
                    continue;
                }
                _ => return Err(d.err("unknown summary field")),
            };
            *slot = d.u64()?;
        }
        Ok(s)
    }
}

impl Snapshot {
    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.map(if self.parent.is_some() { 11 } else { 10 });
        e.key(0).u64(1);
        e.key(1).bytes(&self.host_id.0);
        e.key(2).i64(self.time_ns);
        e.key(3).bytes(&self.tree.0);
        e.key(4);
        encode_strs(&mut e, &self.paths);
        e.key(5).text(&self.hostname);
        e.key(6).text(&self.username);
        e.key(7);
        encode_strs(&mut e, &self.tags);
        if let Some(p) = &self.parent {
            e.key(8).bytes(&p.0 .0);
        }
        e.key(9).text(&self.program);
        e.key(10);
        self.summary.encode(&mut e);
        e.buf
    }

    /// Decodes an authenticated payload.
    pub fn decode(b: &[u8]) -> Result<Self, CborError> {
        let mut d = Dec::new(b);
        let n = d.map()?;
        let mut prev = None;
        let mut s = Snapshot {
            host_id: Id16::default(),
            time_ns: 0,
            tree: Id::default(),
            paths: vec![],
            hostname: String::new(),
            username: String::new(),
            tags: vec![],
            parent: None,
            program: String::new(),
            summary: Summary::default(),
        };
        let mut seen_tree = false;
        for i in 0..n {
            let k = d.key(&mut prev)?;
            if i == 0 && k != 0 {
                return Err(d.err("snapshot without version"));
            }
            match k {
                0 => {
                    if d.u64()? != 1 {
                        return Err(d.err("unsupported snapshot version"));
                    }
                }
                1 => s.host_id = Id16(d.fixed()?),
                2 => s.time_ns = d.i64()?,
                3 => {
                    s.tree = Id(d.fixed()?);
                    seen_tree = true;
                }
                4 => s.paths = decode_strs(&mut d)?,
                5 => s.hostname = d.text()?.to_owned(),
                6 => s.username = d.text()?.to_owned(),
                7 => s.tags = decode_strs(&mut d)?,
                8 => s.parent = Some(SnapshotId(Id(d.fixed()?))),
                9 => s.program = d.text()?.to_owned(),
                10 => {
                    d.enter()?;
                    s.summary = Summary::decode(&mut d)?;
                    d.leave();
                }
                _ => return Err(d.err("unknown snapshot field")),
            }
        }
        d.finish()?;
        if !seen_tree {
            return Err(d.err("snapshot without a tree"));
        }
        Ok(s)
    }

    /// Local time of the snapshot, for display and retention.
    pub fn datetime(&self) -> chrono::DateTime<chrono::Local> {
        chrono::DateTime::from_timestamp_nanos(self.time_ns).with_timezone(&chrono::Local)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut s = Snapshot {
            host_id: Id16([1; 16]),
            time_ns: 1_700_000_000_123_456_789,
            tree: Id([2; 32]),
            paths: vec!["/etc".into(), "/home/simon".into()],
            hostname: "laptop".into(),
            username: "simon".into(),
            tags: vec!["daily".into()],
            parent: Some(SnapshotId(Id([3; 32]))),
            program: "cairn 0.1.0".into(),
            summary: Summary {
                files_new: 5,
                errors: vec![("/x".into(), "permission denied".into())],
                ..Summary::default()
            },
        };
        assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
        s.parent = None;
        assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
        assert!(Snapshot::decode(&s.encode()[..10]).is_err());
    }
}
