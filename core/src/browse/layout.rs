//! The directory layout a mounted repository shows, as restic's mount shows it, so muscle
//! memory and scripts carry over:
//!
//! ```text
//! snapshots/<time>/...          one directory per snapshot, latest -> <time>
//! hosts/<host>/<time>/...       the same, per host, with its own latest
//! tags/<tag>/<time>/...         the same, per tag
//! ids/<short id>/...            by id
//! ```
//!
//! `<time>` is the snapshot's local time with its offset (`2026-11-30T17:39:38+01:00`);
//! two snapshots taken in the same second get `-1`, `-2`, ... after the later ones. This
//! module is only names: what a snapshot directory holds is its root tree.

use std::collections::BTreeMap;

use crate::id::SnapshotId;
use crate::snapshot::Snapshot;

/// One entry of a layout directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Another layout directory (an index into [`Layout::dirs`]).
    Dir(usize),
    /// A snapshot's root (an index into the snapshot list the layout was built from).
    Snapshot(usize),
    /// A relative symbolic link (`latest`).
    Link(String),
}

/// A layout directory: entries sorted by name, names unique.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dir {
    /// Name and entry, sorted by name.
    pub entries: Vec<(String, Entry)>,
}

impl Dir {
    /// The entry called `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Entry> {
        self.entries
            .binary_search_by(|(n, _)| n.as_bytes().cmp(name))
            .ok()
            .map(|i| &self.entries[i].1)
    }
}

/// The whole layout; `dirs[0]` is the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Layout directories, the root first.
    pub dirs: Vec<Dir>,
}

/// `<time>` of a snapshot as restic names it (RFC 3339 in local time, whole seconds).
pub fn time_name(s: &Snapshot) -> String {
    s.datetime()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A name usable as one path component: `/` and NUL cannot appear in one, and `.`/`..`
/// would mean something else. Host names and tags are free text.
fn component(s: &str) -> String {
    let c: String = s
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    match c.as_str() {
        "" | "." | ".." => format!("_{c}"),
        _ => c,
    }
}

/// Snapshot directories named by time, oldest first, with `latest`.
fn by_time(snaps: &[(SnapshotId, Snapshot)], members: &[usize]) -> Dir {
    let mut order = members.to_vec();
    order.sort_by_key(|&i| (snaps[i].1.time_ns, snaps[i].0 .0));
    let mut named: BTreeMap<String, Entry> = BTreeMap::new();
    let mut latest = None;
    for i in order {
        let base = time_name(&snaps[i].1);
        let mut name = base.clone();
        let mut n = 0;
        while named.contains_key(&name) {
            n += 1;
            name = format!("{base}-{n}");
        }
        named.insert(name.clone(), Entry::Snapshot(i));
        latest = Some(name);
    }
    if let Some(l) = latest {
        named.insert("latest".into(), Entry::Link(l));
    }
    Dir {
        entries: named.into_iter().collect(),
    }
}

impl Layout {
    /// The layout of `snaps` (in any order).
    pub fn new(snaps: &[(SnapshotId, Snapshot)]) -> Self {
        let all: Vec<usize> = (0..snaps.len()).collect();
        let mut hosts: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut tags: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, (_, s)) in snaps.iter().enumerate() {
            hosts.entry(component(&s.hostname)).or_default().push(i);
            for t in &s.tags {
                let v = tags.entry(component(t)).or_default();
                if v.last() != Some(&i) {
                    v.push(i);
                }
            }
        }
        let mut dirs = vec![Dir::default(), by_time(snaps, &all)];
        let group = |dirs: &mut Vec<Dir>, groups: BTreeMap<String, Vec<usize>>| {
            let parent = dirs.len();
            dirs.push(Dir::default());
            for (name, members) in groups {
                dirs.push(by_time(snaps, &members));
                let i = dirs.len() - 1;
                dirs[parent].entries.push((name, Entry::Dir(i)));
            }
            parent
        };
        let hosts_dir = group(&mut dirs, hosts);
        let tags_dir = group(&mut dirs, tags);
        let mut ids: BTreeMap<String, Entry> = BTreeMap::new();
        for (i, (id, _)) in snaps.iter().enumerate() {
            ids.insert(id.short(), Entry::Snapshot(i));
        }
        dirs.push(Dir {
            entries: ids.into_iter().collect(),
        });
        let ids_dir = dirs.len() - 1;
        dirs[0].entries = vec![
            ("hosts".into(), Entry::Dir(hosts_dir)),
            ("ids".into(), Entry::Dir(ids_dir)),
            ("snapshots".into(), Entry::Dir(1)),
            ("tags".into(), Entry::Dir(tags_dir)),
        ];
        Layout { dirs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{Id, Id16};

    fn snap(n: u8, secs: i64, host: &str, tags: &[&str]) -> (SnapshotId, Snapshot) {
        let s = Snapshot {
            host_id: Id16([0; 16]),
            time_ns: secs * 1_000_000_000,
            tree: Id([n; 32]),
            paths: vec!["/etc".into()],
            hostname: host.into(),
            username: "root".into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            parent: None,
            program: String::new(),
            summary: Default::default(),
        };
        (SnapshotId(Id([n; 32])), s)
    }

    fn names(d: &Dir) -> Vec<&str> {
        d.entries.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn restic_layout_with_latest_and_same_second_suffixes() {
        let snaps = vec![
            snap(3, 2_000, "laptop", &["daily"]),
            snap(1, 1_000, "laptop", &[]),
            snap(2, 1_000, "vps/a", &["daily", "daily"]),
        ];
        let l = Layout::new(&snaps);
        assert_eq!(names(&l.dirs[0]), ["hosts", "ids", "snapshots", "tags"]);
        let s = &l.dirs[1];
        let t1 = time_name(&snaps[1].1);
        let t3 = time_name(&snaps[0].1);
        assert_eq!(s.entries.len(), 4, "{s:?}");
        // Same second: the snapshot with the smaller id keeps the plain name.
        assert_eq!(s.get(t1.as_bytes()), Some(&Entry::Snapshot(1)));
        assert_eq!(
            s.get(format!("{t1}-1").as_bytes()),
            Some(&Entry::Snapshot(2))
        );
        assert_eq!(s.get(b"latest"), Some(&Entry::Link(t3.clone())));

        let Some(Entry::Dir(hosts)) = l.dirs[0].get(b"hosts") else {
            panic!("no hosts")
        };
        assert_eq!(names(&l.dirs[*hosts]), ["laptop", "vps_a"]);
        let Some(Entry::Dir(tags)) = l.dirs[0].get(b"tags") else {
            panic!("no tags")
        };
        let Some(Entry::Dir(daily)) = l.dirs[*tags].get(b"daily") else {
            panic!("no daily")
        };
        // A tag given twice lists its snapshot once.
        assert_eq!(l.dirs[*daily].entries.len(), 3);
        let Some(Entry::Dir(ids)) = l.dirs[0].get(b"ids") else {
            panic!("no ids")
        };
        assert_eq!(
            l.dirs[*ids].get(snaps[2].0.short().as_bytes()),
            Some(&Entry::Snapshot(2))
        );
    }

    #[test]
    fn hostile_names_become_single_components() {
        assert_eq!(component(".."), "_..");
        assert_eq!(component(""), "_");
        assert_eq!(component("a/b\0c"), "a_b_c");
    }

    #[test]
    fn an_empty_repository_has_empty_directories() {
        let l = Layout::new(&[]);
        assert!(l.dirs[1].entries.is_empty());
    }
}
