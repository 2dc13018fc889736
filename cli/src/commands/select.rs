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
    resolve(&all(repo)?, spec, f)
}

/// The snapshots named by `specs` (in the order given, duplicates dropped), or every
/// snapshot passing the filters when there is none.
pub fn many(repo: &Repository, specs: &[String], f: &Filters) -> Result<Vec<(Id, Snapshot)>> {
    let snaps = all(repo)?;
    if specs.is_empty() {
        return Ok(snaps.into_iter().filter(|(_, s)| matches(s, f)).collect());
    }
    let mut out: Vec<(Id, Snapshot)> = Vec::with_capacity(specs.len());
    for spec in specs {
        let x = resolve(&snaps, spec, f)?;
        if !out.iter().any(|(id, _)| *id == x.0) {
            out.push(x);
        }
    }
    Ok(out)
}

/// Resolves `latest` or an id prefix among `snaps` (oldest first).
fn resolve(snaps: &[(Id, Snapshot)], spec: &str, f: &Filters) -> Result<(Id, Snapshot)> {
    if spec == "latest" {
        return snaps
            .iter()
            .rfind(|(_, s)| matches(s, f))
            .cloned()
            .ok_or_else(|| anyhow!("no snapshot found (latest, with the given filters)"));
    }
    let spec_l = spec.to_ascii_lowercase();
    if spec_l.is_empty() || !spec_l.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{spec:?} is neither \"latest\" nor a snapshot id (hex)");
    }
    let mut found: Vec<&(Id, Snapshot)> = snaps
        .iter()
        .filter(|(id, _)| id.to_hex().starts_with(&spec_l))
        .collect();
    match found.len() {
        1 => Ok(found.remove(0).clone()),
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
