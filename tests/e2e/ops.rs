//! Operating a repository: mirroring, the metrics file, configuration profiles and the
//! bandwidth limit, each through the real binary.

use std::path::Path;

use crate::servers::{runner, Remote};
use crate::support::{assert_same, bytes, packs, s, Cairn, Fixture, TreeSpec};

fn source_tree(root: &Path) {
    TreeSpec::new()
        .file("big.bin", 3 << 20, 11)
        .file("docs/a.txt", 1000, 12)
        .file("docs/b.txt", 70_000, 13)
        .text("etc/fstab", "/dev/sda1 / ext4 defaults 0 1\n")
        .build(root);
}

/// Mirror to a local directory (the offsite disk), then the mirror checks clean, restores
/// the same tree, and a second mirror copies nothing.
fn mirror_to_local_disk(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let src = f.path("src");
    source_tree(&src);
    f.cairn.ok(&["backup", s(&src)]);
    let disk = f.path("external-disk/cairn");
    let first = f.cairn.json(&["mirror", "--to", s(&disk)]);
    assert!(first["copied"].as_u64().unwrap() > 5, "{first}");
    assert_eq!(first["mismatched"].as_array().map(Vec::len), Some(0));

    let mirror = Cairn::new(&disk);
    mirror.ok(&["check", "--read-data"]);
    let target = f.path("restored");
    mirror.ok(&["restore", "latest", "--target", s(&target)]);
    assert_same(&src, &Fixture::restored(&target, &src), false);

    let second = f.cairn.json(&["mirror", "--to", s(&disk)]);
    assert_eq!(second["copied"], 0, "{second}");
    assert_eq!(second["present"], first["copied"], "{second}");

    // A snapshot forgotten at the source goes from the mirror only with --delete.
    std::fs::write(src.join("new.txt"), b"more").unwrap();
    f.cairn.ok(&["backup", s(&src)]);
    let third = f.cairn.json(&["mirror", "--to", s(&disk), "--delete"]);
    assert!(third["copied"].as_u64().unwrap() >= 2, "{third}");
    assert_eq!(third["deleted"], 0, "{third}");
    assert_eq!(
        mirror.json(&["snapshots"]).as_array().map(Vec::len),
        Some(2)
    );
}

/// A source pack whose bytes no longer match its name is reported, not copied, and the
/// exit code says the mirror is incomplete.
fn mirror_skips_damaged_source_file(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let src = f.path("src");
    source_tree(&src);
    f.cairn.ok(&["backup", s(&src)]);
    let victim = packs(&f.repo()).into_iter().next().expect("a pack");
    let mut data = std::fs::read(&victim).unwrap();
    data[100] ^= 0x40;
    std::fs::write(&victim, data).unwrap();
    let disk = f.path("disk");
    let out = f.cairn.run(&["mirror", "--to", s(&disk)]);
    assert_eq!(out.code, 3, "{out:#?}");
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(
        out.stderr.contains(name),
        "names the damaged file: {out:#?}"
    );
    assert!(
        !packs(&disk)
            .iter()
            .any(|p| p.file_name() == victim.file_name()),
        "the damaged pack was copied"
    );
}

/// A local repository mirrored to the S3 server, then used from there.
#[test]
fn mirror_local_to_s3() {
    let dir = tempfile::tempdir().unwrap();
    let Some((s3, _)) = runner(Remote::S3, dir.path()) else {
        return;
    };
    let f = Fixture::on(Remote::Local).expect("local");
    let src = f.path("src");
    source_tree(&src);
    f.cairn.ok(&["backup", s(&src)]);
    let url = s3.repo.clone().unwrap();
    let mut local = f.cairn.clone();
    local.env = s3.env.clone();
    let out = local.json(&["mirror", "--to", url.to_str().unwrap()]);
    assert!(out["copied"].as_u64().unwrap() > 5, "{out}");
    s3.ok(&["check", "--read-data"]);
    let target = f.path("restored");
    s3.ok(&["restore", "latest", "--target", s(&target)]);
    assert_same(&src, &Fixture::restored(&target, &src), false);
}

/// A mirror onto a disk that fills up stops with a clear error, leaves nothing partial
/// under a final name, and carries on once there is room. Needs root to mount a tmpfs.
#[test]
fn mirror_onto_full_disk_resumes() {
    if !crate::support::can_mount() {
        return;
    }
    let f = Fixture::on(Remote::Local).expect("local");
    let src = f.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..4u64 {
        std::fs::write(src.join(format!("f{i}.bin")), bytes(300 + i, 3 << 20)).unwrap();
    }
    f.cairn.ok(&["backup", s(&src)]);
    let disk = f.path("small-disk");
    std::fs::create_dir_all(&disk).unwrap();
    let mount = |opts: &str| {
        std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(&disk)
            .status()
            .unwrap()
    };
    assert!(mount("size=4m").success(), "mount a 4 MiB tmpfs");
    let out = f.cairn.run(&["mirror", "--to", s(&disk.join("cairn"))]);
    let listing = crate::support::files_under(&disk);
    let remounted = std::process::Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&disk)
        .status()
        .unwrap();
    let resumed = f
        .cairn
        .run(&["mirror", "--to", s(&disk.join("cairn")), "--json"]);
    let check = Cairn::new(disk.join("cairn")).run(&["check", "--read-data"]);
    let _ = std::process::Command::new("umount").arg(&disk).status();
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("no space left"), "{out:#?}");
    for p in &listing {
        let name = p.file_name().unwrap().to_string_lossy();
        assert!(!name.starts_with(".tmp-"), "temp file left behind: {p:?}");
    }
    assert!(
        !listing.iter().any(|p| p.ends_with("config")),
        "config written before the packs: {listing:?}"
    );
    assert!(remounted.success());
    assert_eq!(resumed.code, 0, "{resumed:#?}");
    let r = resumed.json();
    assert_eq!(
        r["present"].as_u64().unwrap() + r["copied"].as_u64().unwrap(),
        r["source_files"].as_u64().unwrap(),
        "{r}"
    );
    assert_eq!(check.code, 0, "{check:#?}");
}

fn metric(text: &str, name: &str, command: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{command=\"{command}\"")))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

/// The metrics file says what the last run did, and a failed run keeps the time of the
/// last success.
#[test]
fn metrics_file_tracks_runs() {
    let f = Fixture::on(Remote::Local).expect("local");
    let src = f.path("src");
    source_tree(&src);
    let prom = f.path("textfile/cairn.prom");
    std::fs::create_dir_all(prom.parent().unwrap()).unwrap();
    f.cairn.ok(&["backup", s(&src), "--metrics-file", s(&prom)]);
    let text = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(
        metric(&text, "cairn_last_run_success", "backup"),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric(&text, "cairn_backup_bytes_added", "backup").unwrap() > 3e6,
        "{text}"
    );
    assert_eq!(
        metric(&text, "cairn_snapshots", "backup"),
        Some(1.0),
        "{text}"
    );
    assert!(text.contains("cairn_requests{command=\"backup\""), "{text}");
    let ok_at = metric(&text, "cairn_last_success_timestamp_seconds", "backup").unwrap();

    let out = f
        .cairn
        .with_password("wrong")
        .run(&["backup", s(&src), "--metrics-file", s(&prom)]);
    assert_eq!(out.code, 12, "{out:#?}");
    let text = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(
        metric(&text, "cairn_last_run_success", "backup"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "cairn_last_run_exit_code", "backup"),
        Some(12.0)
    );
    assert_eq!(
        metric(&text, "cairn_last_success_timestamp_seconds", "backup"),
        Some(ok_at),
        "a failed run must not move the last success: {text}"
    );
    f.cairn.ok(&["check", "--metrics-file", s(&prom)]);
    let text = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(
        metric(&text, "cairn_last_run_success", "check"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "cairn_last_run_exit_code", "backup"),
        Some(12.0)
    );
}

/// `-P NAME` takes the repository, excludes, paths and tags from the configuration file.
#[test]
fn profile_supplies_repository_and_backup_options() {
    let f = Fixture::on(Remote::Local).expect("local");
    let src = f.path("src");
    source_tree(&src);
    std::fs::create_dir_all(src.join(".cache")).unwrap();
    std::fs::write(src.join(".cache/junk"), bytes(1, 100)).unwrap();
    let cfg = f.path("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[profiles.home]\nrepository = {:?}\nlimit-upload = 100000\n\n[profiles.home.backup]\npaths = [{:?}]\nexclude = [\".cache\"]\ntag = [\"daily\"]\n",
            s(&f.repo()),
            s(&src)
        ),
    )
    .unwrap();
    let mut c = f.cairn.clone();
    c.repo = None;
    c.env.push(("CAIRN_CONFIG".into(), cfg.into()));
    c.env.push(("HOME".into(), f.path("home").into()));
    c.ok(&["-P", "home", "backup"]);
    let snaps = c.json(&["-P", "home", "snapshots"]);
    assert_eq!(snaps[0]["tags"][0], "daily", "{snaps}");
    let ls = c.ok(&["-P", "home", "ls", "latest"]).stdout;
    assert!(ls.contains("fstab"), "{ls}");
    assert!(!ls.contains("junk"), "excluded file backed up: {ls}");
}

/// `--limit-upload` paces uploads and the summary counts the bytes sent.
fn limited_backup_reports_requests(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let src = f.path("src");
    source_tree(&src);
    let out = f
        .cairn
        .json(&["backup", s(&src), "--limit-upload", "50000"]);
    let up = out["requests"]["bytes_up"].as_u64().unwrap();
    assert!(up >= 3 << 20, "{out}");
    assert!(out["requests"]["put"].as_u64().unwrap() >= 3, "{out}");
}

crate::on_all_backends!(mirror_to_local_disk, limited_backup_reports_requests);
crate::on_backend!(Local => local_files; mirror_skips_damaged_source_file);
crate::on_backend!(Sftp => sftp_files; mirror_skips_damaged_source_file);

/// A key restricted to `backups/hosta/*` (like a B2 application key with a namePrefix)
/// runs every command a host needs, and the request log shows no request outside its
/// prefix. Then the same through the `b2:` form of the location.
#[test]
fn prefix_restricted_key_stays_in_its_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let Some((admin, _)) = runner(Remote::S3, dir.path()) else {
        return;
    };
    let endpoint = std::env::var("CAIRN_TEST_S3_ENDPOINT").unwrap();
    let bucket = std::env::var("CAIRN_TEST_S3_BUCKET").unwrap();
    let key = std::env::var("CAIRN_TEST_S3_HOSTA_KEY").unwrap();
    let secret = std::env::var("CAIRN_TEST_S3_HOSTA_SECRET").unwrap();
    let name = crate::servers::unique("restricted");
    let log = dir.path().join("requests.log");
    let src = dir.path().join("src");
    source_tree(&src);

    let mut hosta = Cairn::new(format!("s3:{endpoint}/{bucket}/hosta/{name}"));
    hosta.env = vec![
        ("AWS_ACCESS_KEY_ID".into(), key.clone().into()),
        ("AWS_SECRET_ACCESS_KEY".into(), secret.clone().into()),
        ("CAIRN_REQUEST_LOG".into(), log.clone().into()),
    ];
    hosta.init();
    hosta.ok(&["backup", s(&src)]);
    hosta.ok(&["snapshots"]);
    hosta.ok(&["check", "--read-data"]);
    let target = dir.path().join("restored");
    hosta.ok(&["restore", "latest", "--target", s(&target)]);
    assert_same(&src, &Fixture::restored(&target, &src), false);

    // The b2: form with B2's own variable names, pointed at the same server.
    let mut b2 = Cairn::new(format!("b2:{bucket}:/hosta/{name}"));
    b2.env = vec![
        ("B2_ACCOUNT_ID".into(), key.into()),
        ("B2_ACCOUNT_KEY".into(), secret.into()),
        ("B2_ENDPOINT".into(), endpoint.clone().into()),
        ("CAIRN_REQUEST_LOG".into(), log.clone().into()),
    ];
    b2.ok(&["backup", s(&src)]);
    assert_eq!(b2.json(&["snapshots"]).as_array().map(Vec::len), Some(2));

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 20, "{text}");
    let s3_prefix = format!("s3:{endpoint}/{bucket}/hosta/{name}/");
    let b2_prefix = format!("b2:{bucket}:/hosta/{name}/");
    for l in &lines {
        let target = l.split(' ').nth(2).unwrap_or("");
        assert!(
            target.starts_with(&s3_prefix) || target.starts_with(&b2_prefix),
            "a request outside the key's prefix: {l}"
        );
        assert!(l.ends_with(" ok") || l.contains(" NotFound"), "{l}");
    }

    // And the key really is restricted: another host's prefix is refused, clearly.
    let mut other = hosta.clone();
    other.repo = Some(format!("s3:{endpoint}/{bucket}/hostb/{name}").into());
    let out = other.run(&["init", "--kdf-memory-mib", "19", "--kdf-iterations", "1"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("access denied") && out.stderr.contains("hostb/"),
        "{out:#?}"
    );
    drop(admin);
}

/// Every listing command piped into `head -c 1` ends quietly: a closed pipe is a normal
/// end (exit 0, nothing on stderr but progress), never a panic with a backtrace.
#[test]
fn a_closed_pipe_ends_every_listing_quietly() {
    use std::io::Read;
    use std::process::Stdio;

    let f = Fixture::new();
    let src = f.path("src");
    for d in 0..20 {
        let dir = src.join(format!("directory-with-a-long-name-{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..50 {
            std::fs::write(dir.join(format!("file-{i:03}.txt")), format!("{d} {i}")).unwrap();
        }
    }
    // Enough snapshots and files that every listing outgrows the pipe's 64 KiB buffer.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let out = f.cairn.json(&["backup", s(&src)]);
        ids.push(out["snapshot_id"].as_str().unwrap().to_owned());
    }
    for _ in 0..200 {
        f.cairn
            .json(&["backup", s(&src.join("directory-with-a-long-name-00"))]);
    }
    let (a, b) = (&ids[0][..8], &ids[2][..8]);
    let listings: Vec<Vec<&str>> = vec![
        vec!["snapshots"],
        vec!["--json", "snapshots"],
        vec!["ls", "latest"],
        vec!["--json", "ls", "latest"],
        vec!["find", "*"],
        vec!["diff", a, b],
        vec!["key", "list"],
        vec!["--json", "key", "list"],
        vec!["check"],
        vec!["stats"],
        vec!["forget", "--keep-last", "1", "--dry-run"],
    ];
    for args in listings {
        let mut child = f
            .cairn
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 1];
        let mut stdout = child.stdout.take().unwrap();
        stdout.read_exact(&mut first).unwrap();
        drop(stdout); // what `head -c 1` does
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}
