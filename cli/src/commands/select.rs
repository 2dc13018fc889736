//! Choosing snapshots: `latest`, unique id prefixes, and host/tag/path filters.

use anyhow::{anyhow, bail, Result};
use cairn_core::repository::Repository;
use cairn_core::snapshot::Snapshot;
use cairn_core::Id;

use crate::args::Filters;

/// Whether a snapshot passes the filters.
pub fn matches(s: &Snapshot, f: &Filters) -> bool {
    (f.hosts.is_empty() || f.hosts.contains(&s.hostname))
        && (f.tags.is_empty()
            || f.tags
                .iter()
                .any(|group| group.split(',').all(|t| s.tags.iter().any(|x| x == t))))
        && (f.paths.is_empty()
            || f.paths
                .iter()
                .all(|p| s.paths.iter().any(|x| std::path::Path::new(x) == p)))
}

/// Every snapshot, oldest first; damaged snapshot files are reported as warnings.
pub fn all(repo: &Repository) -> Result<Vec<(Id, Snapshot)>> {
    let (ok, bad) = repo.load_snapshots()?;
    for e in bad {
        eprintln!("warning: {e}");
    }
    Ok(ok)
}

/// Resolves `latest` or an id prefix to one snapshot.
pub fn one(repo: &Repository, spec: &str, f: &Filters) -> Result<(Id, Snapshot)> {
    let snaps = all(repo)?;
    if spec == "latest" {
        return snaps
            .into_iter()
            .rfind(|(_, s)| matches(s, f))
            .ok_or_else(|| anyhow!("no snapshot found (latest, with the given filters)"));
    }
    let spec_l = spec.to_ascii_lowercase();
    if spec_l.is_empty() || !spec_l.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{spec:?} is neither \"latest\" nor a snapshot id (hex)");
    }
    let mut found: Vec<(Id, Snapshot)> = snaps
        .into_iter()
        .filter(|(id, _)| id.to_hex().starts_with(&spec_l))
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!("no snapshot with id {spec}"),
        n => bail!("snapshot id prefix {spec} is ambiguous ({n} snapshots)"),
    }
}

/// Splits `snapshot:path`.
pub fn split_subpath(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((s, p)) if !p.is_empty() => (s, Some(p)),
        Some((s, _)) => (s, None),
        None => (spec, None),
    }
}

/// Short local time of a snapshot for tables.
pub fn time_str(s: &Snapshot) -> String {
    s.datetime().format("%Y-%m-%d %H:%M:%S").to_string()
}
