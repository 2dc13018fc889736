//! `--group-by`: the policy is applied to each group of snapshots separately, so that one
//! machine's daily backups do not push another's out of `--keep-daily`.

use std::collections::BTreeMap;
use std::str::FromStr;

use super::PolicyError;
use crate::snapshot::Snapshot;

/// Which snapshot fields make up a group (`host,paths` by default; none = one group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBy {
    /// By host name.
    pub host: bool,
    /// By the set of backed-up paths.
    pub paths: bool,
    /// By the set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl FromStr for GroupBy {
    type Err = PolicyError;

    /// `host,paths,tags` in any order and subset (singular forms too); `''` means none.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut by = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for part in s.split(',') {
            match part {
                "host" | "hosts" => by.host = true,
                "path" | "paths" => by.paths = true,
                "tag" | "tags" => by.tags = true,
                "" => {}
                other => return Err(PolicyError::GroupBy(other.to_owned())),
            }
        }
        Ok(by)
    }
}

/// A group's identity: the fields grouped by, `None` for the others.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupKey {
    /// Host name.
    pub hostname: Option<String>,
    /// Paths, sorted.
    pub paths: Option<Vec<String>>,
    /// Tags, sorted.
    pub tags: Option<Vec<String>>,
}

impl GroupKey {
    /// The key of snapshot `s`.
    pub fn of(s: &Snapshot, by: GroupBy) -> Self {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        GroupKey {
            hostname: by.host.then(|| s.hostname.clone()),
            paths: by.paths.then(|| sorted(&s.paths)),
            tags: by.tags.then(|| sorted(&s.tags)),
        }
    }
}

/// Splits snapshots into groups, ordered by key; each group lists indices into `snaps`
/// in input order.
pub fn group(snaps: &[&Snapshot], by: GroupBy) -> Vec<(GroupKey, Vec<usize>)> {
    let mut groups: BTreeMap<GroupKey, Vec<usize>> = BTreeMap::new();
    for (i, s) in snaps.iter().enumerate() {
        groups.entry(GroupKey::of(s, by)).or_default().push(i);
    }
    groups.into_iter().collect()
}
