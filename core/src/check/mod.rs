//! `check`: finds missing, truncated and damaged repository files and names each one.
//!
//! The structure check (always) reads the config, key files, index files, snapshots, the
//! prune state (plans, sweep records, every host's session markers, the prune lock), every
//! pack's header and every tree a snapshot reaches; it never reads file data. `--read-data`
//! (`CheckOptions::read_data`) also streams whole packs: the name must be the BLAKE3 of the
//! bytes and every blob must match its `cid` and open (content check included where the
//! trees give its content key).
//!
//! Every problem names the repository file it lies in, so an operator knows exactly which
//! file to restore from a mirror; problems that are consequences of a lost index entry name
//! the snapshot they damage instead. Check is read-only: it never repairs anything.

mod prune_state;
mod read_data;
mod structure;
mod tree_packs;

use std::collections::HashMap;
use std::fmt;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::repository::Repository;

pub use read_data::Subset;

/// What kind of problem was found. Everything is an error except the few warnings listed in
/// [`ProblemKind::is_error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// The config is missing, unreadable, or differs from the one verified at open.
    ConfigInvalid,
    /// A key file does not parse or its plain checksum fails.
    KeyFileDamaged,
    /// An index file is unreadable, misnamed, fails its AEAD or does not decode.
    IndexFileDamaged,
    /// A snapshot file is unreadable, misnamed, fails its AEAD or does not decode.
    SnapshotDamaged,
    /// An index lists a pack that is not in the repository.
    PackMissing,
    /// A pack's size differs from the size its index lists.
    PackSizeMismatch,
    /// A pack could not be read (storage error other than "missing").
    PackUnreadable,
    /// A pack's header cannot be located, opened or decoded.
    PackHeaderDamaged,
    /// A pack's header lists other blobs than its index does.
    PackHeaderMismatch,
    /// `--read-data`: the BLAKE3 of a pack's bytes is not its name.
    PackHashMismatch,
    /// `--read-data`: a blob fails its cid, AEAD or content check, or lies past the end.
    BlobDamaged,
    /// A tree a snapshot reaches is in no index file.
    TreeMissing,
    /// A tree a snapshot reaches cannot be read, opened or decoded.
    TreeDamaged,
    /// A file's content blob is in no index file.
    DataBlobMissing,
    /// A file's content blob lies in a pack that is missing or truncated.
    DataBlobLost,
    /// A prune plan is unreadable, misnamed, fails its AEAD or admin signature, or does not
    /// decode (prune and backup ignore it).
    PlanDamaged,
    /// A sweep record is unreadable, misnamed, fails its AEAD or admin signature, or does
    /// not decode.
    SweepRecordDamaged,
    /// A backup session marker (of any host) is unreadable, misnamed, fails its AEAD or
    /// does not decode.
    SessionMarkerDamaged,
    /// Warning: the newest sweep record has no plan of its generation.
    SweepRecordWithoutPlan,
    /// Warning: a backup session still says "running" but has not heartbeated for more
    /// than 7 days (the backup died without ending it).
    StaleSession,
    /// Warning: the prune lock is held (a prune is running, or one died holding it).
    PruneLocked,
    /// Warning: a pack no index file lists (left by an interrupted backup; the next backup
    /// indexes it).
    UnindexedPack,
    /// Warning: a file that is not part of the repository layout (or of another host).
    UnknownFile,
    /// Warning: `keys/admin/` holds no key file, so only a local key file opens the
    /// repository.
    NoKeyFile,
}

impl ProblemKind {
    /// Whether this makes `check` fail; warnings do not.
    pub fn is_error(self) -> bool {
        !matches!(
            self,
            ProblemKind::UnindexedPack
                | ProblemKind::UnknownFile
                | ProblemKind::NoKeyFile
                | ProblemKind::SweepRecordWithoutPlan
                | ProblemKind::StaleSession
                | ProblemKind::PruneLocked
        )
    }
}

/// One finding, naming the repository file it concerns.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// What was found.
    pub kind: ProblemKind,
    /// The repository path of the damaged or missing file (for consequences of a missing
    /// index entry: the snapshot's path).
    pub path: String,
    /// The snapshot whose trees led here, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Id>,
    /// The path inside that snapshot, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The blob concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob: Option<Id>,
    /// The blob's offset in its pack, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// What exactly is wrong, in words.
    pub detail: String,
}

impl Problem {
    fn new(kind: ProblemKind, path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind,
            path: path.into(),
            snapshot: None,
            file: None,
            blob: None,
            offset: None,
            detail: detail.into(),
        }
    }

    fn in_snapshot(mut self, snapshot: Id, file: &str) -> Self {
        self.snapshot = Some(snapshot);
        self.file = Some(file.to_owned());
        self
    }

    fn blob(mut self, id: Id, offset: Option<u64>) -> Self {
        self.blob = Some(id);
        self.offset = offset;
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.detail)?;
        if let Some(b) = &self.blob {
            write!(f, " (blob {b}")?;
            if let Some(o) = self.offset {
                write!(f, " at offset {o}")?;
            }
            write!(f, ")")?;
        }
        if let Some(s) = &self.snapshot {
            write!(f, " [snapshot {}", s.short())?;
            if let Some(p) = &self.file {
                write!(f, ", {p}")?;
            }
            write!(f, "]")?;
        }
        Ok(())
    }
}

/// What to check.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Also stream these packs and verify every byte; `None` checks the structure only.
    pub read_data: Option<Subset>,
}

/// Progress and cancellation; every method has a do-nothing default.
pub trait CheckProgress: Sync {
    /// A new phase starts ("index files", "packs", ...).
    fn phase(&self, _name: &str) {}
    /// A pack was read whole (`--read-data`), of `bytes` bytes.
    fn pack_read(&self, _bytes: u64) {}
    /// Whether to stop as soon as possible (Ctrl-C).
    fn cancelled(&self) -> bool {
        false
    }
}

/// Progress that shows nothing and never cancels.
pub struct NoCheckProgress;

impl CheckProgress for NoCheckProgress {}

/// The outcome of a check.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CheckReport {
    /// Problems that make the check fail.
    pub errors: Vec<Problem>,
    /// Findings that need no action now.
    pub warnings: Vec<Problem>,
    /// Snapshots that opened.
    pub snapshots: usize,
    /// Distinct trees walked.
    pub trees: usize,
    /// Packs in the repository (of this host).
    pub packs: usize,
    /// Blobs whose stored bytes were verified (`--read-data`).
    pub blobs_checked: u64,
    /// Whether pack data was read.
    pub read_data: bool,
    /// Packs read whole.
    pub packs_read: usize,
}

impl CheckReport {
    fn add(&mut self, p: Problem) {
        if p.kind.is_error() {
            self.errors.push(p);
        } else {
            self.warnings.push(p);
        }
    }

    /// Whether no error was found (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Checks the repository of `repo`'s host. Returns `Err` only when the check itself could
/// not run (listing failed, cancelled); damage is reported in the [`CheckReport`].
///
/// It does not use the index loaded into `repo` (if any): it reads the index files itself,
/// so damaged ones are reported rather than skipped.
pub fn check(
    repo: &Repository,
    opts: &CheckOptions,
    progress: &dyn CheckProgress,
) -> Result<CheckReport> {
    let mut c = structure::Checker::new(repo, progress, opts.read_data.is_some());
    c.run()?;
    if let Some(subset) = &opts.read_data {
        c.report.read_data = true;
        progress.phase("read pack data");
        c.read_data(subset)?;
    }
    Ok(c.report)
}

/// A problem's detail from an error: the reason alone, since the path is printed anyway.
fn reason(e: &Error) -> String {
    use crate::backend::BackendErrorKind;
    match e {
        Error::Corrupt { reason, .. } | Error::KeyFileMalformed { reason, .. } => reason.clone(),
        Error::BlobIntegrity { stage, .. } => format!("failed its {stage} check"),
        Error::Backend(b) => match b.kind {
            BackendErrorKind::NotFound => "missing".into(),
            BackendErrorKind::RangeNotSatisfiable => "shorter than expected (truncated)".into(),
            _ => b.to_string(),
        },
        other => other.to_string(),
    }
}

/// Content keys of data blobs, collected from the trees for `--read-data`.
type ContentKeys = HashMap<Id, [u8; 32]>;
