//! Interrupted backups: SIGKILL leaves uploaded packs that the next backup reuses; SIGINT
//! stops cleanly with exit code 130 and no temporary files.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::servers::Remote;
use crate::support::{assert_same, bytes, files_under, packs, s, Fixture};

const FILES: u64 = 25;
const FILE_SIZE: usize = 8 << 20;
const TOTAL: u64 = FILES * FILE_SIZE as u64;

/// ~200 MiB of incompressible, seeded data.
fn make_source(f: &Fixture, seed: u64) -> PathBuf {
    let src = f.path("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    for i in 0..FILES {
        let dir = if i % 2 == 0 {
            src.clone()
        } else {
            src.join("d")
        };
        std::fs::write(dir.join(format!("f{i:02}")), bytes(seed + i, FILE_SIZE)).unwrap();
    }
    src
}

/// Starts a backup and returns once at least one pack is in the repository; fails the test
/// if the backup ended first (then nothing was interrupted).
fn start_backup_until_first_pack(f: &Fixture, src: &Path) -> Child {
    let mut child = f
        .cairn
        .command(&["backup", s(src)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if !packs(&f.repo()).is_empty() {
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("backup ended ({st}) before any pack was seen");
        }
        assert!(Instant::now() < deadline, "no pack after 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "backup finished before it could be interrupted"
    );
    child
}

fn no_snapshots(f: &Fixture) {
    let snaps = f.cairn.json(&["snapshots"]);
    assert_eq!(
        snaps.as_array().unwrap().len(),
        0,
        "interrupted backup wrote a snapshot"
    );
}

fn temp_files(repo: &Path) -> Vec<PathBuf> {
    files_under(repo)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
        })
        .collect()
}

fn sigkill_mid_backup_then_resume(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let src = make_source(&f, 1000);
    let mut child = start_backup_until_first_pack(&f, &src);
    child.kill().unwrap();
    child.wait().unwrap();
    let left = packs(&f.repo()).len();
    assert!(left >= 1);
    no_snapshots(&f);

    let out = f.cairn.run(&["--json", "backup", s(&src)]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr.contains("indexed") && out.stderr.contains("packs"),
        "no 'indexed N packs' message: {out:#?}"
    );
    let sum = out.json();
    let added = sum["data_added"].as_u64().unwrap();
    assert!(
        added < TOTAL,
        "nothing was reused: data_added {added} of {TOTAL}: {sum}"
    );
    assert_eq!(sum["files_new"], FILES, "{sum}");

    let t = f.path("t");
    f.cairn.json(&["restore", "latest", "-t", s(&t)]);
    assert_same(&src, &Fixture::restored(&t, &src), true);
}

fn sigint_mid_backup_exits_130_cleanly(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let src = make_source(&f, 2000);
    let child = start_backup_until_first_pack(&f, &src);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    let tmp = temp_files(&f.repo());
    assert!(tmp.is_empty(), "temporary files left after Ctrl-C: {tmp:?}");
    no_snapshots(&f);

    let out = f.cairn.run(&["--json", "backup", s(&src)]);
    assert_eq!(out.code, 0, "{out:#?}");
    let t = f.path("t");
    f.cairn.json(&["restore", "latest", "-t", s(&t)]);
    assert_same(&src, &Fixture::restored(&t, &src), true);
}

crate::on_file_backends!(
    sigkill_mid_backup_then_resume,
    sigint_mid_backup_exits_130_cleanly,
);
