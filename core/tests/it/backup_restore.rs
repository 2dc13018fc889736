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
    let out = backup(
        &repo,
        &backup_opts(vec![s.to_path_buf()]),
        None,
        &NoProgress,
        &stop,
    )
    .unwrap();
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
    let stop = AtomicBool::new(false);
    let missing = src.path().join("not-there");
    let out = backup(
        &repo,
        &backup_opts(vec![src.path().to_path_buf(), missing.clone()]),
        None,
        &NoProgress,
        &stop,
    )
    .unwrap();
    let errs = &out.snapshot.summary.errors;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].0.ends_with("not-there"), "{errs:?}");
}
