//! Choosing snapshots: `latest`, unique id prefixes, host/tag/path filters, and the parent
//! a backup reuses unchanged files from. Commands pass user input straight here.

use std::path::{Path, PathBuf};

use super::Snapshot;
use crate::error::{Error, Result};
use crate::id::SnapshotId;

/// Which snapshots a command considers (restic's `--host`, `--tag`, `--path`).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Any of these host names (none: every host).
    pub hosts: Vec<String>,
    /// Any of these tag lists; each a comma-separated list of tags that must all be present.
    pub tags: Vec<String>,
    /// Every one of these paths must be among the snapshot's paths.
    pub paths: Vec<PathBuf>,
}

impl Filter {
    /// Whether `s` passes.
    pub fn matches(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.hostname))
            && (self.tags.is_empty()
                || self
                    .tags
                    .iter()
                    .any(|group| group.split(',').all(|t| s.tags.iter().any(|x| x == t))))
            && (self.paths.is_empty()
                || self
                    .paths
                    .iter()
                    .all(|p| s.paths.iter().any(|x| Path::new(x) == p)))
    }

    /// Whether no filter is set.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.tags.is_empty() && self.paths.is_empty()
    }
}

/// The one of `items` whose id's hex starts with `prefix` (any case): the single id-prefix
/// resolver every command uses. `what` names the kind for errors ("snapshot", "key").
pub fn by_prefix<'a, T>(
    what: &'static str,
    prefix: &str,
    items: impl IntoIterator<Item = (String, &'a T)>,
) -> Result<&'a T> {
    let p = prefix.to_ascii_lowercase();
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidInput(format!(
            "{prefix:?} is not a {what} id (hex) or a prefix of one"
        )));
    }
    let mut found = items.into_iter().filter(|(hex, _)| hex.starts_with(&p));
    match (found.next(), found.count()) {
        (Some((_, x)), 0) => Ok(x),
        (None, _) => Err(Error::NotFound {
            what,
            name: format!("with id {prefix}"),
        }),
        (Some(_), n) => Err(Error::InvalidInput(format!(
            "{what} id prefix {prefix} is ambiguous ({} match)",
            n + 1
        ))),
    }
}

/// Resolves `latest` (the newest snapshot passing `f`) or an id prefix among `snaps`
/// (oldest first).
pub fn resolve<'a>(
    snaps: &'a [(SnapshotId, Snapshot)],
    spec: &str,
    f: &Filter,
) -> Result<&'a (SnapshotId, Snapshot)> {
    if spec == "latest" {
        return snaps
            .iter()
            .rfind(|(_, s)| f.matches(s))
            .ok_or_else(|| Error::NotFound {
                what: "snapshot",
                name: "(latest, with the given filters)".into(),
            });
    }
    by_prefix("snapshot", spec, snaps.iter().map(|x| (x.0.to_hex(), x)))
}

/// The snapshots named by `specs` (in the order given, duplicates dropped), or every
/// snapshot passing `f` when there is none.
pub fn many<'a>(
    snaps: &'a [(SnapshotId, Snapshot)],
    specs: &[String],
    f: &Filter,
) -> Result<Vec<&'a (SnapshotId, Snapshot)>> {
    if specs.is_empty() {
        return Ok(snaps.iter().filter(|(_, s)| f.matches(s)).collect());
    }
    let mut out: Vec<&(SnapshotId, Snapshot)> = Vec::with_capacity(specs.len());
    for spec in specs {
        let x = resolve(snaps, spec, f)?;
        if !out.iter().any(|(id, _)| *id == x.0) {
            out.push(x);
        }
    }
    Ok(out)
}

/// The parent a backup of `paths` as `host` reuses unchanged files from: the newest
/// snapshot of the same host with the same set of paths, as restic chooses.
pub fn parent<'a>(
    snaps: &'a [(SnapshotId, Snapshot)],
    host: &str,
    paths: &[PathBuf],
) -> Option<&'a (SnapshotId, Snapshot)> {
    let mut want: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    want.sort();
    snaps.iter().rev().find(|(_, s)| {
        let mut have = s.paths.clone();
        have.sort();
        s.hostname == host && have == want
    })
}

/// Splits `snapshot:path`.
pub fn split_subpath(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((s, p)) if !p.is_empty() => (s, Some(p)),
        Some((s, _)) => (s, None),
        None => (spec, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{Id, Id16};
    use crate::snapshot::Summary;

    fn snap(n: u8, host: &str, paths: &[&str], tags: &[&str]) -> (SnapshotId, Snapshot) {
        (
            SnapshotId(Id([n; 32])),
            Snapshot {
                host_id: Id16([1; 16]),
                time_ns: i64::from(n),
                tree: Id([0; 32]),
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                hostname: host.into(),
                username: "u".into(),
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
                parent: None,
                program: "t".into(),
                summary: Summary::default(),
            },
        )
    }

    #[test]
    fn latest_prefixes_filters_and_parent() {
        let snaps = vec![
            snap(0x11, "a", &["/etc"], &["daily"]),
            snap(0x12, "b", &["/etc"], &[]),
            snap(0x21, "a", &["/home", "/etc"], &["daily", "x"]),
        ];
        let none = Filter::default();
        assert_eq!(
            resolve(&snaps, "latest", &none).map(|x| x.0).ok(),
            Some(SnapshotId(Id([0x21; 32])))
        );
        let a = Filter {
            hosts: vec!["b".into()],
            ..Filter::default()
        };
        assert_eq!(
            resolve(&snaps, "latest", &a).map(|x| x.0).ok(),
            Some(SnapshotId(Id([0x12; 32])))
        );
        assert_eq!(
            resolve(&snaps, "2121", &none).map(|x| x.0).ok(),
            Some(SnapshotId(Id([0x21; 32])))
        );
        assert!(
            matches!(resolve(&snaps, "1", &none), Err(Error::InvalidInput(m)) if m.contains("ambiguous (2 match)"))
        );
        assert!(matches!(
            resolve(&snaps, "33", &none),
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            resolve(&snaps, "xyz", &none),
            Err(Error::InvalidInput(_))
        ));
        let tags = Filter {
            tags: vec!["daily,x".into()],
            ..Filter::default()
        };
        assert_eq!(many(&snaps, &[], &tags).map(|v| v.len()).ok(), Some(1));
        let p = parent(
            &snaps,
            "a",
            &[PathBuf::from("/etc"), PathBuf::from("/home")],
        );
        assert_eq!(p.map(|x| x.0), Some(SnapshotId(Id([0x21; 32]))));
        assert_eq!(
            parent(&snaps, "a", &[PathBuf::from("/etc")]).map(|x| x.0),
            Some(SnapshotId(Id([0x11; 32])))
        );
        assert_eq!(split_subpath("latest:/etc"), ("latest", Some("/etc")));
    }
}
