//! Error paths: passwords, damaged key files, missing repositories, unreadable sources,
//! damaged packs, lost index and snapshot files.

use std::path::{Path, PathBuf};

use crate::servers::Remote;
use crate::support::{
    assert_same, bytes, files_under, host_files, packs, s, Cairn, Fixture, TreeSpec,
};

fn key_file(f: &Fixture) -> PathBuf {
    let keys = files_under(&f.repo().join("keys"));
    assert_eq!(keys.len(), 1, "{keys:?}");
    keys.into_iter().next().unwrap()
}

fn edit_key(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

fn wrong_password_exit_12(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let out = f
        .cairn
        .with_password("not the password")
        .run(&["snapshots"]);
    assert_eq!(out.code, 12, "{out:#?}");
    assert!(out.stderr.contains("wrong password"), "{out:#?}");
}

fn corrupted_key_file_is_not_a_wrong_password(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let key = key_file(&f);
    edit_key(&key, |v| {
        let ct = v["ct"].as_str().unwrap().to_owned();
        let mut chars: Vec<char> = ct.chars().collect();
        // A character in the middle carries 6 full bits: the result is still valid base64.
        let i = chars.len() / 2;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        v["ct"] = chars.into_iter().collect::<String>().into();
    });
    let out = f.cairn.run(&["snapshots"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("corrupted"), "{out:#?}");
    assert!(!out.stderr.contains("wrong password"), "{out:#?}");
}

/// The checksum covers the KDF parameters, so a key file edited to a too small memory cost
/// is reported as corrupted (before any bounds check or Argon2 run). A key file with
/// out-of-bounds parameters *and* a matching checksum cannot be made without the crate's
/// internals; that path is covered by core's unit tests.
#[test]
fn key_file_with_edited_kdf_is_corrupted() {
    let f = Fixture::new();
    let key = key_file(&f);
    edit_key(&key, |v| v["kdf"]["m_kib"] = 8192.into());
    let out = f.cairn.run(&["snapshots"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("corrupted"), "{out:#?}");
}

#[test]
fn missing_repository_exit_10() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t");
    for repo in [dir.path().join("nope"), dir.path().to_path_buf()] {
        let c = Cairn::new(&repo);
        for args in [
            vec!["snapshots"],
            vec!["restore", "latest", "-t", s(&t)],
            vec!["key", "list"],
        ] {
            let out = c.run(&args);
            assert_eq!(out.code, 10, "{} {args:?}: {out:#?}", repo.display());
        }
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let out = c.run(&["backup", s(&src)]);
        assert_eq!(
            out.code, 10,
            "backup to a missing explicit repository: {out:#?}"
        );
    }
}

#[test]
fn missing_source_path_gives_incomplete_snapshot() {
    let f = Fixture::new();
    let src = f.path("src");
    TreeSpec::new()
        .file("a", 100, 1)
        .file("d/b", 200, 2)
        .build(&src);
    let missing = f.path("does-not-exist");
    let out = f.cairn.run(&["--json", "backup", s(&src), s(&missing)]);
    assert_eq!(out.code, 3, "{out:#?}");
    let sum = out.json();
    let errs = sum["errors"].as_array().unwrap();
    assert_eq!(errs.len(), 1, "{sum}");
    assert_eq!(errs[0]["path"], s(&missing), "{sum}");
    assert!(sum["snapshot_id"].is_string(), "{sum}");

    let snaps = f.cairn.json(&["snapshots"]);
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 1);
    let recorded = snaps[0]["summary"]["errors"].to_string();
    assert!(
        recorded.contains(s(&missing)),
        "summary.errors lacks the path: {recorded}"
    );
    let t = f.path("t");
    f.cairn.json(&["restore", "latest", "-t", s(&t)]);
    assert_same(&src, &Fixture::restored(&t, &src), true);
    assert!(!Fixture::restored(&t, &missing).exists());
}

/// An entry that cannot be read is recorded as an error (exit 3) while the rest is saved.
/// As root every file is readable, so the unreadable entry is a backup path whose parent is
/// a symlink loop (it cannot be reached); without root, also a file with mode 000.
#[test]
fn unreachable_entry_gives_incomplete_snapshot() {
    let f = Fixture::new();
    let src = f.path("src");
    let mut spec = TreeSpec::new().file("ok", 100, 1);
    if !crate::support::is_root() {
        spec = spec.file("secret", 10, 2).mode("secret", 0o000);
    }
    spec.build(&src);
    let other = f.path("other");
    TreeSpec::new()
        .symlink("loop1", "loop2")
        .symlink("loop2", "loop1")
        .build(&other);
    let looped = other.join("loop1/x");
    let out = f.cairn.run(&["--json", "backup", s(&src), s(&looped)]);
    assert_eq!(out.code, 3, "{out:#?}");
    let snaps = f.cairn.json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    let errors = snaps[0]["summary"]["errors"].to_string();
    assert!(errors.contains("loop1"), "{snaps}");
    if !crate::support::is_root() {
        assert!(errors.contains("secret"), "{snaps}");
    }
    let t = f.path("t");
    f.cairn.json(&["restore", "latest", "-t", s(&t)]);
    let o = Fixture::restored(&t, &src);
    assert_eq!(std::fs::read(o.join("ok")).unwrap(), bytes(1, 100));
}

fn corrupted_pack_damages_only_its_files(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let a = f.path("a");
    let b = f.path("b");
    let mut sa = TreeSpec::new();
    for i in 0..6u64 {
        sa = sa.file(format!("f{i}"), 300_000, 100 + i);
    }
    sa.build(&a);
    TreeSpec::new()
        .file("x", 700_000, 200)
        .file("y/z", 400_000, 201)
        .build(&b);

    let snap_a = f.cairn.json(&["backup", s(&a)])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let packs_a = packs(&f.repo());
    let snap_b = f.cairn.json(&["backup", s(&b)])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let packs_b: Vec<PathBuf> = packs(&f.repo())
        .into_iter()
        .filter(|p| !packs_a.contains(p))
        .collect();
    assert!(!packs_b.is_empty());

    // The largest pack of A holds data blobs; flip a byte inside its first blob.
    let victim = packs_a
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut data = std::fs::read(victim).unwrap();
    data[200] ^= 0x55;
    std::fs::write(victim, data).unwrap();

    let tb = f.path("tb");
    f.cairn.json(&["restore", &snap_b, "-t", s(&tb)]);
    assert_same(&b, &Fixture::restored(&tb, &b), true);

    let ta = f.path("ta");
    let out = f.cairn.run(&["restore", &snap_a, "-t", s(&ta)]);
    assert_ne!(
        out.code, 0,
        "restore of a damaged snapshot succeeded: {out:#?}"
    );
    let damaged: Vec<String> = (0..6)
        .map(|i| format!("f{i}"))
        .filter(|n| out.stderr.contains(&format!("{}/{n}", s(&a))))
        .collect();
    assert!(!damaged.is_empty(), "no damaged file named: {out:#?}");
    assert!(
        damaged.len() < 6,
        "one flipped byte damaged every file: {out:#?}"
    );
    let oa = Fixture::restored(&ta, &a);
    for i in 0..6u64 {
        let n = format!("f{i}");
        // A damaged file is still made, at its full size (the bad chunk a hole).
        let len = std::fs::metadata(oa.join(&n)).map(|m| m.len());
        assert_eq!(len.ok(), Some(300_000), "{n} not made at its full size");
        if !damaged.contains(&n) {
            assert_eq!(
                std::fs::read(oa.join(&n)).unwrap(),
                bytes(100 + i, 300_000),
                "{n} was not named as damaged but differs"
            );
        }
    }
}

fn deleted_index_file_is_recovered(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let src = f.path("src");
    TreeSpec::new()
        .file("a", 600_000, 1)
        .file("d/b", 900_000, 2)
        .build(&src);
    f.cairn.json(&["backup", s(&src)]);
    let index = host_files(&f.repo(), "index");
    assert!(!index.is_empty());
    for p in &index {
        std::fs::remove_file(p).unwrap();
    }
    std::fs::write(src.join("c"), bytes(3, 1000)).unwrap();
    let out = f.cairn.run(&["--json", "backup", s(&src)]);
    assert_eq!(out.code, 0, "{out:#?}");
    let t = f.path("t");
    let r = f
        .cairn
        .json(&["restore", "latest", "-t", s(&t), "--verify"]);
    assert_eq!(r["summary"]["errors"], serde_json::json!([]), "{r}");
    assert_same(&src, &Fixture::restored(&t, &src), true);
}

fn missing_or_damaged_snapshot_file_does_not_hide_others(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let src = f.path("src");
    TreeSpec::new().file("a", 100, 1).build(&src);
    let mut ids = Vec::new();
    for i in 0..3 {
        std::fs::write(src.join("a"), format!("version {i}")).unwrap();
        ids.push(
            f.cairn.json(&["backup", s(&src)])["snapshot_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let files = host_files(&f.repo(), "snapshots");
    let find = |id: &str| files.iter().find(|p| p.ends_with(id)).unwrap().clone();
    std::fs::remove_file(find(&ids[0])).unwrap();
    let damaged = find(&ids[1]);
    let mut data = std::fs::read(&damaged).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 1;
    std::fs::write(&damaged, data).unwrap();

    let out = f.cairn.run(&["--json", "snapshots"]);
    assert_eq!(out.code, 0, "{out:#?}");
    let list = out.json();
    let listed: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![ids[2].as_str()], "{out:#?}");
    assert!(
        out.stderr.contains("warning"),
        "damaged snapshot not reported: {out:#?}"
    );
    let t = f.path("t");
    f.cairn.json(&["restore", "latest", "-t", s(&t)]);
    assert_eq!(
        std::fs::read(Fixture::restored(&t, &src).join("a")).unwrap(),
        b"version 2"
    );
}

/// Restoring onto a file system that fills up stops with an error naming the file and the
/// cause, and the repository is untouched (check passes). Needs root to mount a tiny tmpfs;
/// CI runs as root, and there a missing mount is a failure, not a skip.
#[test]
fn restore_onto_full_disk_fails_cleanly() {
    if !crate::support::can_mount() {
        return;
    }
    let f = Fixture::new();
    let src = f.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big.bin"), bytes(99, 4 << 20)).unwrap();
    f.cairn.ok(&["backup".as_ref(), src.as_os_str()]);
    let target = f.path("small-disk");
    std::fs::create_dir_all(&target).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&target)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a 1 MiB tmpfs");
    let out = f.cairn.run(&[
        "restore".as_ref(),
        "latest".as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ]);
    let _ = std::process::Command::new("umount").arg(&target).status();
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("No space left on device"), "{out:#?}");
    assert!(
        out.stderr.contains("big.bin"),
        "the error names the file: {out:#?}"
    );
    f.cairn.ok(&["check", "--read-data"]);
}

/// A location with no repository says so (exit 10) on every backend, and `backup` does not
/// create one there.
fn missing_remote_repository_exit_10(remote: Remote) {
    let dir = tempfile::tempdir().unwrap();
    let Some((c, _)) = crate::servers::runner(remote, dir.path()) else {
        return;
    };
    let out = c.run(&["snapshots"]);
    assert_eq!(out.code, 10, "{out:#?}");
    assert!(out.stderr.contains("no repository"), "{out:#?}");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    assert_eq!(c.run(&["backup", s(&src)]).code, 10);
    assert_eq!(
        c.run(&["snapshots"]).code,
        10,
        "backup created a repository"
    );
}

mod every_backend {
    use super::*;
    crate::on_all_backends!(wrong_password_exit_12, missing_remote_repository_exit_10);
}

crate::on_file_backends!(
    corrupted_key_file_is_not_a_wrong_password,
    corrupted_pack_damages_only_its_files,
    deleted_index_file_is_recovered,
    missing_or_damaged_snapshot_file_does_not_hide_others,
);
