//! `repair index` and `repair snapshots` on the in-memory backend: a lost index file or a
//! lost pack, repaired until `check` passes and the repaired snapshot restores.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_core::backend::layout::{self, HostDir};
use cairn_core::backend::Backend;
use cairn_core::check::{check, CheckOptions, CheckReport, NoCheckProgress, ProblemKind, Subset};
use cairn_core::id::{Id, Id16, SnapshotId};
use cairn_core::pack::PackKind;
use cairn_core::prune::lock::PruneLock;
use cairn_core::prune::plan::{CondemnedPack, Plan};
use cairn_core::prune::LockOwner;
use cairn_core::repair::{
    repair_index, repair_snapshots, IndexRepairOptions, SnapshotRepairOptions, REPAIRED_TAG,
};
use cairn_core::repository::Repository;
use cairn_core::testing::InMemoryBackend;

use crate::support::*;

struct Fixture {
    b: Arc<InMemoryBackend>,
    repo: Repository,
    src: tempfile::TempDir,
    files: BTreeMap<&'static str, Vec<u8>>,
    snapshot: SnapshotId,
}

/// One snapshot with group data (small and chunked), private data and nested trees.
fn fixture() -> Fixture {
    let files: BTreeMap<&str, Vec<u8>> = [
        ("a.txt", b"hello".to_vec()),
        ("dir/big.bin", noise(7, 3 << 20)),
        ("dir/sub/c.txt", b"deep".to_vec()),
        ("dir/secret.pem", b"-----BEGIN KEY-----".to_vec()),
    ]
    .into();
    let src = tempfile::tempdir().unwrap();
    for (n, c) in &files {
        write(&src.path().join(n), c);
    }
    let (b, repo) = init();
    let out = backup_of(&repo, vec![src.path().to_path_buf()]);
    Fixture {
        b,
        repo,
        src,
        files,
        snapshot: out.snapshot_id.unwrap(),
    }
}

fn run_check(repo: &Repository) -> CheckReport {
    let o = CheckOptions {
        read_data: Some(Subset::All),
    };
    check(repo, &o, &NoCheckProgress).unwrap()
}

fn describe(r: &CheckReport) -> String {
    let show = |v: &[cairn_core::check::Problem]| -> Vec<String> {
        v.iter().map(|p| format!("{:?} {p}", p.kind)).collect()
    };
    format!(
        "errors: {:#?}\nwarnings: {:#?}",
        show(&r.errors),
        show(&r.warnings)
    )
}

fn assert_clean(repo: &Repository) {
    let r = run_check(repo);
    assert!(
        r.errors.is_empty() && r.warnings.is_empty(),
        "{}",
        describe(&r)
    );
}

/// Paths of `host`'s packs of `kind` (per the index files), largest first.
fn packs_of(repo: &Repository, kind: PackKind) -> Vec<(Id, String)> {
    let (files, bad) = repo.read_index_files().unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    let mut v: Vec<_> = files
        .iter()
        .flat_map(|(_, f)| &f.packs)
        .filter(|p| p.kind == kind)
        .map(|p| (p.len, p.name))
        .collect();
    v.sort_by(|a, b| b.cmp(a));
    v.into_iter()
        .map(|(_, n)| (n, layout::host_file(&repo.host_id(), HostDir::Packs, &n)))
        .collect()
}

fn under(b: &InMemoryBackend, part: &str) -> Vec<String> {
    b.paths().into_iter().filter(|p| p.contains(part)).collect()
}

fn owner() -> LockOwner {
    LockOwner {
        hostname: "repair-box".into(),
        pid: 7,
        since_ms: 0,
    }
}

fn restored_root(dst: &Path, src: &Path) -> PathBuf {
    dst.join(src.strip_prefix("/").unwrap())
}

#[test]
fn lost_index_files_are_rebuilt_from_pack_headers() {
    let mut f = fixture();
    let before: Vec<String> = under(&f.b, "/index/")
        .into_iter()
        .chain(under(&f.b, "/tindex/"))
        .collect();
    // One index file gone, one damaged: their packs are unindexed now.
    f.b.remove(&under(&f.b, "/index/")[0]).unwrap();
    let tidx = under(&f.b, "/tindex/")[0].clone();
    f.b.put_raw(&tidx, b"garbage".to_vec());
    assert!(!run_check(&f.repo).is_ok());

    let dry = repair_index(
        &f.repo,
        &IndexRepairOptions {
            dry_run: true,
            owner: Some(owner()),
        },
        &|_| false,
    )
    .unwrap();
    assert!(dry.dry_run && dry.damaged_index_files == [tidx.clone()]);
    assert!(dry.index_files_written >= 2 && !dry.packs_added.is_empty());
    assert!(under(&f.b, "/tindex/") == [tidx.clone()], "dry run wrote");

    let o = IndexRepairOptions {
        dry_run: false,
        owner: Some(owner()),
    };
    let r = repair_index(&f.repo, &o, &|_| false).unwrap();
    assert!(
        f.b.read(layout::PRUNE_LOCK, None).is_err(),
        "prune lock not released"
    );
    assert!(
        r.unreadable.is_empty() && r.packs_dropped.is_empty() && r.left_out.is_empty(),
        "{r:?}"
    );
    assert!(r.packs_indexed == under(&f.b, "/packs/").len(), "{r:?}");
    let after: Vec<String> = under(&f.b, "/index/")
        .into_iter()
        .chain(under(&f.b, "/tindex/"))
        .collect();
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "old index files left: {after:?}"
    );
    assert_eq!(after.len(), r.index_files_written);
    assert_clean(&f.repo);
    f.repo.load_index().unwrap();
    let s = f.repo.load_snapshot(&f.snapshot).unwrap();
    let dst = restore_into(&f.repo, &s);
    let root = restored_root(dst.path(), f.src.path());
    for (n, c) in &f.files {
        assert_eq!(&std::fs::read(root.join(n)).unwrap(), c, "{n}");
    }
}

#[test]
fn repair_index_is_refused_while_a_prune_holds_the_lock_but_a_dry_run_is_not() {
    let f = fixture();
    let prune = LockOwner {
        hostname: "admin-box".into(),
        pid: 1,
        since_ms: 0,
    };
    let lock = PruneLock::acquire(&f.repo, &prune, &|_| false).unwrap();
    let before = f.b.paths();
    let mut o = IndexRepairOptions {
        dry_run: false,
        owner: Some(owner()),
    };
    let e = repair_index(&f.repo, &o, &|_| false).unwrap_err();
    assert!(matches!(e, cairn_core::Error::Locked { .. }), "{e}");
    assert_eq!(f.b.paths(), before, "a refused repair wrote");
    o.dry_run = true;
    repair_index(&f.repo, &o, &|_| false).unwrap();
    // A prune of this machine that died is taken over, as prune itself does.
    o.dry_run = false;
    repair_index(&f.repo, &o, &|h| h.hostname == "admin-box").unwrap();
    assert!(f.b.read(layout::PRUNE_LOCK, None).is_err());
    drop(lock);
}

#[test]
fn unreadable_header_keeps_its_old_entry_and_missing_pack_is_dropped() {
    let f = fixture();
    let trees = packs_of(&f.repo, PackKind::Tree);
    let group = packs_of(&f.repo, PackKind::Group);
    // The tree pack's trailer byte flipped: header unreadable, blobs intact.
    let mut v = f.b.read(&trees[0].1, None).unwrap();
    let last = v.len() - 1;
    v[last] ^= 0x10;
    f.b.put_raw(&trees[0].1, v);
    f.b.remove(&group[0].1).unwrap();
    let r = repair_index(&f.repo, &IndexRepairOptions::default(), &|_| false).unwrap();
    assert!(
        r.unreadable.len() == 1 && r.unreadable[0].path == trees[0].1,
        "{r:?}"
    );
    assert!(r.unreadable[0].kept_old_entry, "{r:?}");
    assert!(r.packs_dropped == [group[0].1.clone()], "{r:?}");
    // The structure check: reading the damaged pack whole would add its hash mismatch.
    let c = check(&f.repo, &CheckOptions::default(), &NoCheckProgress).unwrap();
    // The tree pack is still indexed (its header is what is damaged), the group pack no
    // longer is: nothing names it as missing, its blobs are.
    assert!(
        c.errors.iter().all(
            |p| p.kind == ProblemKind::PackHeaderDamaged && p.path == trees[0].1
                || p.kind == ProblemKind::DataBlobMissing
        ),
        "{}",
        describe(&c)
    );
}

#[test]
fn unindexed_pack_an_open_plan_names_is_not_adopted() {
    let f = fixture();
    let group = packs_of(&f.repo, PackKind::Group);
    let (name, path) = group[0].clone();
    let len = f.b.read(&path, None).unwrap().len() as u64;
    // The pack as an interrupted backup leaves it: in no index, condemned by Mark.
    for idx in under(&f.b, "/index/") {
        f.b.remove(&idx).unwrap();
    }
    f.repo
        .save_plan(&Plan {
            gen: 1,
            published_ms: 0,
            grace_ms: 0,
            packs: vec![CondemnedPack {
                pack: cairn_core::id::PackId::new(f.repo.host_id(), name),
                len,
                ids: vec![],
                unindexed: true,
            }],
            unindexed_seen: vec![],
        })
        .unwrap();
    let r = repair_index(&f.repo, &IndexRepairOptions::default(), &|_| false).unwrap();
    assert!(r.left_out == [path.clone()], "{r:?}");
    assert!(
        !r.packs_added.contains(&path) && r.packs_added.len() == group.len() - 1,
        "{r:?}"
    );
    let (files, _) = f.repo.read_index_files().unwrap();
    assert!(
        files
            .iter()
            .flat_map(|(_, x)| &x.packs)
            .all(|p| p.name != name),
        "condemned pack adopted"
    );
}

#[test]
fn every_hosts_index_is_rebuilt_with_its_own_keys() {
    let f = fixture();
    let host = Id16([9; 16]);
    let other = f.repo.as_host(host);
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("x.bin"), &noise(3, 1 << 20));
    backup_of(&other, vec![src.path().to_path_buf()]);
    let theirs = format!("hosts/{host}/");
    for p in f.b.paths() {
        if p.starts_with(&theirs) && (p.contains("/index/") || p.contains("/tindex/")) {
            f.b.remove(&p).unwrap();
        }
    }
    let r = repair_index(&f.repo, &IndexRepairOptions::default(), &|_| false).unwrap();
    assert!(r.unreadable.is_empty(), "{r:?}");
    let listed =
        f.b.paths()
            .into_iter()
            .filter(|p| p.starts_with(&theirs) && p.contains("/packs/"))
            .count();
    let (files, bad) = other.read_index_files().unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    let indexed: usize = files.iter().map(|(_, x)| x.packs.len()).sum();
    assert!(listed > 0 && indexed == listed, "{listed} vs {indexed}");
    // Check reads this host only (the other's files are warnings, not errors).
    let c = run_check(&f.repo);
    assert!(c.errors.is_empty(), "{}", describe(&c));
}

#[test]
fn snapshot_with_a_lost_pack_is_repaired_and_restores() {
    let mut f = fixture();
    let group = packs_of(&f.repo, PackKind::Group);
    f.b.remove(&group[0].1).unwrap();
    repair_index(&f.repo, &IndexRepairOptions::default(), &|_| false).unwrap();
    f.repo.load_index().unwrap();
    let before = f.b.paths();

    let dry = repair_snapshots(
        &f.repo,
        &SnapshotRepairOptions {
            dry_run: true,
            forget: true,
        },
    )
    .unwrap();
    assert!(dry.repaired.len() == 1 && dry.repaired[0].repaired.is_none());
    assert_eq!(f.b.paths(), before, "dry run wrote");

    let r = repair_snapshots(
        &f.repo,
        &SnapshotRepairOptions {
            dry_run: false,
            forget: false,
        },
    )
    .unwrap();
    assert!(r.snapshots_checked == 1 && r.repaired.len() == 1, "{r:?}");
    let fixed = &r.repaired[0];
    // The big file is chunked over both group packs at random, so it is always lost.
    let big = format!("{}/dir/big.bin", f.src.path().display());
    assert!(
        fixed
            .lost
            .iter()
            .any(|(p, why)| *p == big && why.starts_with("lost: blob ")),
        "{r:?}"
    );
    assert!(fixed.original == f.snapshot && !fixed.forgotten);
    let new_id = fixed.repaired.unwrap();
    let s = f.repo.load_snapshot(&new_id).unwrap();
    assert!(s.parent == Some(f.snapshot) && s.tags.iter().any(|t| t == REPAIRED_TAG));
    assert!(
        fixed.lost.iter().all(|l| s.summary.errors.contains(l)),
        "losses not on record"
    );
    // The original is kept by default, and still damaged.
    assert!(f.repo.load_snapshot(&f.snapshot).is_ok());

    f.repo.load_index().unwrap();
    let dst = restore_into(&f.repo, &s);
    let root = restored_root(dst.path(), f.src.path());
    let lost: Vec<String> = fixed.lost.iter().map(|(p, _)| p.clone()).collect();
    for (n, c) in &f.files {
        let p = format!("{}/{n}", f.src.path().display());
        if lost.contains(&p) {
            assert!(!root.join(n).exists(), "{n} restored though lost");
        } else {
            assert_eq!(&std::fs::read(root.join(n)).unwrap(), c, "{n}");
        }
    }

    // Once the original goes, check passes.
    let r = repair_snapshots(
        &f.repo,
        &SnapshotRepairOptions {
            dry_run: false,
            forget: true,
        },
    )
    .unwrap();
    assert!(
        r.repaired.len() == 1 && r.repaired[0].original == f.snapshot && r.repaired[0].forgotten,
        "{r:?}"
    );
    // The copy the first run wrote is reused, not written again.
    assert_eq!(r.repaired[0].repaired, Some(new_id), "{r:?}");
    let (all, _) = f.repo.load_snapshots().unwrap();
    assert!(all.len() == 1 && all[0].0 == new_id, "{all:?}");
    assert!(f.repo.load_snapshot(&f.snapshot).is_err());
    assert_clean(&f.repo);
}

#[test]
fn unreadable_trees_become_empty_directories() {
    let mut f = fixture();
    for (_, path) in packs_of(&f.repo, PackKind::Tree) {
        f.b.remove(&path).unwrap();
    }
    repair_index(&f.repo, &IndexRepairOptions::default(), &|_| false).unwrap();
    f.repo.load_index().unwrap();
    let r = repair_snapshots(
        &f.repo,
        &SnapshotRepairOptions {
            dry_run: false,
            forget: true,
        },
    )
    .unwrap();
    assert!(r.repaired.len() == 1, "{r:?}");
    let lost = &r.repaired[0].lost;
    assert!(
        lost.len() == 1 && lost[0].0 == "/" && lost[0].1.contains("unreadable"),
        "{lost:?}"
    );
    f.repo.load_index().unwrap();
    let s = f
        .repo
        .load_snapshot(&r.repaired[0].repaired.unwrap())
        .unwrap();
    assert!(f.repo.load_tree(&s.tree).unwrap().nodes.is_empty());
    // The data packs nothing references any more are only unused, which check accepts.
    let c = run_check(&f.repo);
    assert!(c.errors.is_empty(), "{}", describe(&c));
}
