//! The CLI side of choosing snapshots: loads them, warns about damaged ones, and hands the
//! user's `latest`/prefix/filters to `cairn_core::snapshot::select`.

use anyhow::Result;
use cairn_core::id::SnapshotId;
use cairn_core::repository::Repository;
use cairn_core::snapshot::select::{self, Filter};
use cairn_core::snapshot::Snapshot;

use crate::args::Filters;

pub use select::split_subpath;

/// The core filter of the command-line filters.
pub fn filter(f: &Filters) -> Filter {
    Filter {
        hosts: f.hosts.clone(),
        tags: f.tags.clone(),
        paths: f.paths.clone(),
    }
}

/// Whether a snapshot passes the filters.
pub fn matches(s: &Snapshot, f: &Filters) -> bool {
    filter(f).matches(s)
}

/// Every snapshot, oldest first; damaged snapshot files are reported as warnings.
pub fn all(repo: &Repository) -> Result<Vec<(SnapshotId, Snapshot)>> {
    let (ok, bad) = repo.load_snapshots()?;
    for e in bad {
        eprintln!("warning: {e}");
    }
    Ok(ok)
}

/// Resolves `latest` or an id prefix to one snapshot.
pub fn one(repo: &Repository, spec: &str, f: &Filters) -> Result<(SnapshotId, Snapshot)> {
    Ok(select::resolve(&all(repo)?, spec, &filter(f))?.clone())
}

/// The snapshots named by `specs` (in the order given, duplicates dropped), or every
/// snapshot passing the filters when there is none.
pub fn many(
    repo: &Repository,
    specs: &[String],
    f: &Filters,
) -> Result<Vec<(SnapshotId, Snapshot)>> {
    let snaps = all(repo)?;
    Ok(select::many(&snaps, specs, &filter(f))?
        .into_iter()
        .cloned()
        .collect())
}

/// Short local time of a snapshot for tables.
pub fn time_str(s: &Snapshot) -> String {
    s.datetime().format("%Y-%m-%d %H:%M:%S").to_string()
}
