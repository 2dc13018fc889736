//! Removing snapshots: the file goes, the others stay, a second removal is an error.

use cairn_core::forget::{apply, Count, Policy};
use cairn_core::snapshot::{Snapshot, Summary};
use cairn_core::Id;

use crate::support::init;

fn snapshot(repo: &cairn_core::repository::Repository, time_ns: i64) -> Snapshot {
    Snapshot {
        host_id: repo.host_id(),
        time_ns,
        tree: Id::default(),
        paths: vec!["/data".into()],
        hostname: "h".into(),
        username: "u".into(),
        tags: vec![],
        parent: None,
        program: "test".into(),
        summary: Summary::default(),
    }
}

#[test]
fn forget_removes_what_the_policy_removes() {
    let (_b, repo) = init();
    for t in [1_000, 2_000, 3_000] {
        repo.save_snapshot(&snapshot(&repo, t)).unwrap();
    }
    let (snaps, bad) = repo.load_snapshots().unwrap();
    assert!(bad.is_empty());
    let refs: Vec<&Snapshot> = snaps.iter().map(|(_, s)| s).collect();
    let policy = Policy {
        last: Count::N(1),
        ..Policy::default()
    };
    let d = apply(&refs, &policy, &chrono::Local::now()).unwrap();
    assert_eq!(d.remove.len(), 2);
    for &i in &d.remove {
        repo.remove_snapshot(&snaps[i].0).unwrap();
    }
    let (left, _) = repo.load_snapshots().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].1.time_ns, 3_000);
    let gone = &snaps[d.remove[0]].0;
    assert!(repo.remove_snapshot(gone).is_err());
}
