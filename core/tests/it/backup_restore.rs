use std::path::Path;
use std::sync::atomic::AtomicBool;

use cairn_core::archiver::{backup, NoProgress};
use cairn_core::restorer::{restore, NoRestoreProgress};

use crate::support::*;

#[test]
fn round_trip_and_unchanged_rebackup_reads_nothing() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    write(&s.join("small.txt"), b"hello");
    write(&s.join("big.bin"), &noise(1, 5 << 20));
    write(&s.join("dir/zeros"), &vec![0u8; 3 << 20]);
    std::os::unix::fs::symlink("small.txt", s.join("link")).unwrap();
    let (_b, mut repo) = init();
    let stop = AtomicBool::new(false);
    let out = backup_of(&repo, vec![s.to_path_buf()]);
    assert!(out.snapshot.summary.errors.is_empty());
    assert_eq!(out.snapshot.summary.files_new, 3);
    let id = out.snapshot_id.unwrap();

    repo.load_index().unwrap();
    let snap = repo.load_snapshot(&id).unwrap();
    let dst = tempfile::tempdir().unwrap();
    let sum = restore(
        &repo,
        &snap.tree,
        &ropts(dst.path()),
        &NoRestoreProgress,
        &stop,
    )
    .unwrap();
    assert!(
        sum.errors.is_empty() && sum.verify_failures.is_empty(),
        "{sum:?}"
    );
    let r = dst.path().join(s.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(r.join("big.bin")).unwrap(), noise(1, 5 << 20));
    assert_eq!(std::fs::read(r.join("small.txt")).unwrap(), b"hello");
    assert_eq!(
        std::fs::read_link(r.join("link")).unwrap(),
        Path::new("small.txt")
    );

    let mut o = backup_opts(vec![s.to_path_buf()]);
    o.parent = Some((id, snap));
    let again = backup(&repo, &o, None, &NoProgress, &stop).unwrap();
    assert_eq!(
        again.snapshot.summary.bytes_read, 0,
        "unchanged files are not read"
    );
    assert_eq!(again.snapshot.summary.files_unchanged, 3);
    // Only trees on the path to a changed directory (/tmp gained the restore dir) are new.
    assert!(again.packer.blobs <= 2, "{}", again.packer.blobs);
}

#[test]
fn missing_path_nested_in_another_is_reported() {
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("a.txt"), b"a");
    let (_b, repo) = init();
    let missing = src.path().join("not-there");
    let out = backup_of(&repo, vec![src.path().to_path_buf(), missing.clone()]);
    let errs = &out.snapshot.summary.errors;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].0.ends_with("not-there"), "{errs:?}");
}

/// Restores in batches of 1 to 5 entries give the same tree as one batch: hard links whose
/// names fall in different batches stay linked, directories get their times after all
/// their children, `--include` keeps only the directories leading to what it names, and
/// `--delete` removes what the snapshot lacks and nothing it has.
#[test]
fn restores_in_small_batches_match_one_batch() {
    use cairn_core::restorer::restore_batched;
    use cairn_core::source::exclude::{ExcludeOptions, Excluder};
    use std::os::unix::fs::MetadataExt;

    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    for d in ["a", "b/deep", "c", "empty"] {
        std::fs::create_dir_all(s.join(d)).unwrap();
    }
    for i in 0..7u64 {
        write(&s.join(format!("a/f{i}")), &noise(i, 1000 + i as usize));
        write(&s.join(format!("b/deep/g{i}")), &noise(10 + i, 50_000));
    }
    std::fs::hard_link(s.join("a/f1"), s.join("c/link-to-f1")).unwrap();
    std::fs::hard_link(s.join("a/f1"), s.join("z-last-link")).unwrap();
    let t = filetime::FileTime::from_unix_time(1_500_000_000, 0);
    for d in ["a", "b/deep", "b", "c", "empty"] {
        filetime::set_file_mtime(s.join(d), t).unwrap();
    }
    let (_b, mut repo) = init();
    let stop = AtomicBool::new(false);
    let out = backup_of(&repo, vec![s.to_path_buf()]);
    repo.load_index().unwrap();
    let snap = repo.load_snapshot(&out.snapshot_id.unwrap()).unwrap();
    let rel = s.strip_prefix("/").unwrap();

    for batch in 1..=5 {
        let dst = tempfile::tempdir().unwrap();
        let sum = restore_batched(
            &repo,
            &snap.tree,
            &ropts(dst.path()),
            &NoRestoreProgress,
            &stop,
            batch,
        )
        .unwrap();
        assert!(
            sum.errors.is_empty() && sum.verify_failures.is_empty(),
            "{sum:?}"
        );
        let r = dst.path().join(rel);
        for i in 0..7u64 {
            assert_eq!(
                std::fs::read(r.join(format!("a/f{i}"))).unwrap(),
                noise(i, 1000 + i as usize)
            );
            assert_eq!(
                std::fs::read(r.join(format!("b/deep/g{i}"))).unwrap(),
                noise(10 + i, 50_000)
            );
        }
        let ino = |p: &str| std::fs::metadata(r.join(p)).unwrap().ino();
        assert_eq!(ino("a/f1"), ino("c/link-to-f1"), "batch {batch}");
        assert_eq!(ino("a/f1"), ino("z-last-link"), "batch {batch}");
        for d in ["a", "b/deep", "b", "c", "empty"] {
            let m = std::fs::metadata(r.join(d)).unwrap();
            assert_eq!(m.mtime(), 1_500_000_000, "batch {batch}: mtime of {d}");
        }
    }

    // --include across batches: only b/deep/g3 and the directories leading to it.
    let ex = |pats: &[&str]| {
        Excluder::new(&ExcludeOptions {
            patterns: pats.iter().map(|p| (*p).to_owned()).collect(),
            ..Default::default()
        })
        .unwrap()
    };
    let dst = tempfile::tempdir().unwrap();
    let mut o = ropts(dst.path());
    o.include = Some(ex(&["**/g3"]));
    restore_batched(&repo, &snap.tree, &o, &NoRestoreProgress, &stop, 2).unwrap();
    let r = dst.path().join(rel);
    assert!(r.join("b/deep/g3").is_file());
    assert!(!r.join("a").exists() && !r.join("empty").exists() && !r.join("b/deep/g2").exists());

    // --delete across batches: extraneous entries go, restored ones stay.
    let dst = tempfile::tempdir().unwrap();
    let r = dst.path().join(rel);
    write(&r.join("a/extra"), b"not in the snapshot");
    write(&r.join("gone/x"), b"a whole directory not in the snapshot");
    let mut o = ropts(dst.path());
    o.delete = true;
    let sum = restore_batched(&repo, &snap.tree, &o, &NoRestoreProgress, &stop, 3).unwrap();
    assert_eq!(sum.deleted, 2, "{sum:?}");
    assert!(!r.join("a/extra").exists() && !r.join("gone").exists());
    assert!(r.join("a/f6").is_file() && r.join("z-last-link").is_file());
}

/// A sub-path naming a file restores that file under its own name; a sub-path that runs on
/// through a file is not found (it used to restore the file it ran through).
#[test]
fn sub_paths_resolve_like_browse_lookup() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    write(&s.join("dir/a.txt"), b"the file");
    let (_b, mut repo) = init();
    let out = backup_of(&repo, vec![s.to_path_buf()]);
    repo.load_index().unwrap();
    let snap = repo.load_snapshot(&out.snapshot_id.unwrap()).unwrap();
    let stop = AtomicBool::new(false);

    let dst = tempfile::tempdir().unwrap();
    let mut o = ropts(dst.path());
    o.subpath = Some(s.join("dir/a.txt"));
    restore(&repo, &snap.tree, &o, &NoRestoreProgress, &stop).unwrap();
    assert_eq!(
        std::fs::read(dst.path().join("a.txt")).unwrap(),
        b"the file"
    );

    let dst = tempfile::tempdir().unwrap();
    let mut o = ropts(dst.path());
    o.subpath = Some(s.join("dir/a.txt/beyond"));
    let err = restore(&repo, &snap.tree, &o, &NoRestoreProgress, &stop).unwrap_err();
    assert!(matches!(err, cairn_core::Error::NotFound { .. }), "{err:?}");
    assert!(!dst.path().join("a.txt").exists());
}

/// A panic inside a backup (a bug, but one the caller must see) used to leave the packer's
/// uploaders waiting for packs forever, and the backup hung instead of failing.
#[test]
fn a_panic_inside_the_packer_reaches_the_caller() {
    let (_b, repo) = init();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            repo.with_packer(|_| -> cairn_core::error::Result<()> { panic!("a bug") })
        }));
        let _ = tx.send(r.is_err());
    });
    let panicked = rx.recv_timeout(std::time::Duration::from_secs(60));
    assert_eq!(
        panicked,
        Ok(true),
        "with_packer hung or swallowed the panic"
    );
}

/// A target that holds something already: what lies in a directory the restore did not
/// make is checked and replaced (a symlink where a file goes, a longer file), what lies
/// in the directories it makes is created without asking, and what is unrelated stays.
#[test]
fn restoring_over_a_partly_filled_target_replaces_what_is_in_the_way() {
    use std::os::unix::fs::PermissionsExt;
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    write(&s.join("a/x"), b"snapshot x");
    write(&s.join("a/link-target-was-here"), b"a file, not a link");
    write(&s.join("a/new/y"), &noise(3, 300_000));
    write(&s.join("a/new/empty"), b"");
    std::fs::set_permissions(s.join("a/x"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let (_b, mut repo) = init();
    let out = backup_of(&repo, vec![s.to_path_buf()]);
    repo.load_index().unwrap();
    let snap = repo.load_snapshot(&out.snapshot_id.unwrap()).unwrap();

    let dst = tempfile::tempdir().unwrap();
    std::fs::create_dir(dst.path().join("lost+found")).unwrap();
    let r = dst.path().join(s.strip_prefix("/").unwrap());
    write(&r.join("a/x"), &noise(9, 100_000));
    std::fs::set_permissions(r.join("a/x"), std::fs::Permissions::from_mode(0o400)).unwrap();
    std::os::unix::fs::symlink("/nonexistent", r.join("a/link-target-was-here")).unwrap();
    let sum = restore(
        &repo,
        &snap.tree,
        &ropts(dst.path()),
        &NoRestoreProgress,
        &AtomicBool::new(false),
    )
    .unwrap();
    assert!(
        sum.errors.is_empty() && sum.verify_failures.is_empty(),
        "{sum:?}"
    );
    assert_eq!(std::fs::read(r.join("a/x")).unwrap(), b"snapshot x");
    let mode = std::fs::metadata(r.join("a/x"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    let m = std::fs::symlink_metadata(r.join("a/link-target-was-here")).unwrap();
    assert!(m.is_file(), "the symlink in the way was not replaced");
    assert_eq!(std::fs::read(r.join("a/new/y")).unwrap(), noise(3, 300_000));
    assert_eq!(std::fs::read(r.join("a/new/empty")).unwrap(), b"");
    assert!(dst.path().join("lost+found").is_dir());
}

/// A pack gone from the repository (and a blob in it that its files wait for): the files
/// that needed it are reported, yet made at their full size with their mode and times
/// (their other chunks written, the lost ones holes); every other file restores whole.
#[test]
fn a_lost_pack_fails_only_its_files_which_still_get_made() {
    use cairn_core::backend::layout::{self, HostDir};
    use cairn_core::backend::Backend;
    use std::os::unix::fs::PermissionsExt;

    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    let mut files = Vec::new();
    for i in 0..40u64 {
        let name = format!("d{}/f{i}", i % 4);
        let data = noise(i, 20_000 + 5_000 * i as usize);
        write(&s.join(&name), &data);
        std::fs::set_permissions(s.join(&name), std::fs::Permissions::from_mode(0o604)).unwrap();
        files.push((name, data));
    }
    files.push(("big".into(), noise(99, 6 << 20)));
    write(&s.join("big"), &files[40].1);
    let mtime = filetime::FileTime::from_unix_time(1_600_000_000, 0);
    for (n, _) in &files {
        filetime::set_file_mtime(s.join(n), mtime).unwrap();
    }
    let (b, mut repo) = init();
    let out = backup_of(&repo, vec![s.to_path_buf()]);
    let (index, bad) = repo.read_index_files().unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    let mut group: Vec<(u64, cairn_core::id::Id)> = index
        .iter()
        .flat_map(|(_, f)| &f.packs)
        .filter(|p| p.kind == cairn_core::pack::PackKind::Group)
        .map(|p| (p.len, p.name))
        .collect();
    group.sort();
    assert!(
        group.len() >= 2,
        "want a pack to lose and one to keep: {group:?}"
    );
    let lost = group[group.len() - 1].1;
    b.remove(&layout::host_file(&repo.host_id(), HostDir::Packs, &lost))
        .unwrap();
    repo.load_index().unwrap();
    let snap = repo.load_snapshot(&out.snapshot_id.unwrap()).unwrap();

    let dst = tempfile::tempdir().unwrap();
    let mut opts = ropts(dst.path());
    opts.verify = false;
    let sum = restore(
        &repo,
        &snap.tree,
        &opts,
        &NoRestoreProgress,
        &AtomicBool::new(false),
    )
    .unwrap();
    assert!(
        !sum.errors.is_empty(),
        "a lost pack went unnoticed: {sum:?}"
    );
    let r = dst.path().join(s.strip_prefix("/").unwrap());
    let mut whole = 0;
    for (n, data) in &files {
        let p = r.join(n);
        let m = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{n} not made: {e}"));
        assert_eq!(m.len(), data.len() as u64, "{n}: not at its full size");
        if n != "big" {
            assert_eq!(m.permissions().mode() & 0o777, 0o604, "{n}: mode not set");
        }
        let t = filetime::FileTime::from_last_modification_time(&m);
        assert_eq!(t, mtime, "{n}: mtime not set");
        let named = sum
            .errors
            .iter()
            .any(|e| e.contains(&format!("/{n}:")) || e.contains(&format!("/{n} ")));
        if std::fs::read(&p).unwrap() == *data {
            whole += 1;
        } else {
            assert!(named, "{n} differs but is not reported: {:?}", sum.errors);
        }
    }
    assert!(whole > 0, "no file survived the loss of one pack");
}
