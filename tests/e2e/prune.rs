//! `forget` and `prune` through the binary on every kind of repository: generations with
//! churn, the two phases and the instant prune, what survives restores byte for byte, and
//! `check --read-data` passes after each.

use std::path::{Path, PathBuf};

use crate::servers::Remote;
use crate::support::{assert_same, bytes, s, Fixture};

/// Copies a flat directory (the generation's source) with its times, so a restore can be
/// compared with it later.
fn keep_copy(src: &Path, to: &Path) {
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(to)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// Five generations of ten 1 MiB files, one replaced per generation (10% churn).
fn generations(f: &Fixture) -> (PathBuf, Vec<PathBuf>) {
    let src = f.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..10u64 {
        std::fs::write(src.join(format!("f{i}.bin")), bytes(i, 1 << 20)).unwrap();
    }
    let mut copies = Vec::new();
    for g in 0..5u64 {
        if g > 0 {
            let victim = src.join(format!("f{}.bin", g % 10));
            std::fs::write(victim, bytes(100 + g, 1 << 20)).unwrap();
        }
        let t = format!("2026-11-{:02} 03:00:00", 20 + g);
        f.cairn.json(&["backup", s(&src), "--time", &t]);
        let copy = f.path(&format!("gen{g}"));
        keep_copy(&src, &copy);
        copies.push(copy);
    }
    (src, copies)
}

/// A fresh remote repository in `dir` with five generations, the first three forgotten.
fn forgotten(dir: tempfile::TempDir, c: crate::support::Cairn) -> (Fixture, PathBuf, Vec<PathBuf>) {
    c.init();
    let f = Fixture {
        dir,
        cairn: c,
        local_repo: None,
    };
    let (src, copies) = generations(&f);
    f.cairn.json(&["forget", "--keep-last", "2"]);
    (f, src, copies)
}

fn check_read_data(f: &Fixture) {
    let out = f.cairn.run(&["check", "--read-data"]);
    assert_eq!(out.code, 0, "check after prune: {out:#?}");
}

fn restores_latest_two(f: &Fixture, src: &Path, copies: &[PathBuf]) {
    let snaps = f.cairn.json(&["snapshots"]);
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    for (snap, copy) in snaps.iter().zip(&copies[3..]) {
        let id = snap["id"].as_str().unwrap();
        let t = f.path(&format!("restore-{}", &id[..8]));
        f.cairn.json(&["restore", id, "-t", s(&t)]);
        assert_same(copy, &Fixture::restored(&t, src), false);
    }
}

fn forget_then_two_phase_prune(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let (src, copies) = generations(&f);
    let forgot = f.cairn.json(&["forget", "--keep-last", "2"]);
    assert_eq!(forgot[0]["remove"].as_array().unwrap().len(), 3, "{forgot}");

    let dry = f.cairn.json(&["prune", "--dry-run", "--max-unused", "0%"]);
    let est = &dry["estimate"];
    assert!(est["bytes_freed"].as_u64().unwrap() >= 3_000_000, "{dry}");

    // Mark: nothing is deleted yet; the next run inside the grace period waits.
    let mark = f.cairn.json(&["prune", "--max-unused", "0%"]);
    assert_eq!(mark["phases"], serde_json::json!(["mark"]), "{mark}");
    let wait = f.cairn.json(&["prune", "--max-unused", "0%"]);
    assert_eq!(wait["phases"], serde_json::json!(["waiting"]), "{wait}");
    restores_latest_two(&f, &src, &copies);

    // With the grace period over (a zero grace on this run), Sweep frees what Mark found,
    // and the dry run's figures are what the sweep then did.
    let sweep = f
        .cairn
        .json(&["prune", "--grace", "0s", "--max-unused", "0%"]);
    assert_eq!(sweep["phases"][0], "sweep", "{sweep}");
    let freed = sweep["bytes_before"].as_u64().unwrap() - sweep["bytes_after"].as_u64().unwrap();
    // Three 1 MiB files of random bytes went; padding and headers make it a little less.
    assert!(freed >= 3_000_000, "freed only {freed}: {sweep}");
    for k in [
        "packs_deleted",
        "packs_repacked",
        "bytes_down",
        "bytes_freed",
    ] {
        assert_eq!(
            sweep["estimate"][k], est[k],
            "{k}: dry {dry} vs real {sweep}"
        );
    }
    check_read_data(&f);
    restores_latest_two(&f, &src, &copies);
}

fn forget_prune_instant(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let (src, copies) = generations(&f);
    let out = f.cairn.json(&[
        "forget",
        "--keep-last",
        "2",
        "--prune",
        "--instant",
        "--max-unused",
        "0%",
    ]);
    assert_eq!(out["phases"], serde_json::json!(["mark", "sweep"]), "{out}");
    assert!(
        out["measured"]["requests"]["delete"].as_u64().unwrap() > 0,
        "{out}"
    );
    check_read_data(&f);
    restores_latest_two(&f, &src, &copies);
    // Nothing left to do.
    let again = f.cairn.json(&["prune", "--instant", "--max-unused", "0%"]);
    assert_eq!(again["phases"], serde_json::json!(["clean"]), "{again}");
}

crate::on_all_backends!(forget_then_two_phase_prune, forget_prune_instant);

/// The dry run's priced sweep against what the sweep then sent, on the S3 server behind a
/// counting proxy: the dry run's estimate must be within 5% of the real sweep's requests
/// and bytes (its `measured` window), and the real run's reported requests must be exactly
/// what the proxy saw.
#[test]
fn dry_run_estimate_matches_what_the_server_received() {
    let dir = tempfile::tempdir().unwrap();
    let Some((mut c, proxy)) = crate::servers::s3_through_proxy(dir.path(), "prune-bill") else {
        return;
    };
    c.opts = vec!["--no-cache".into()];
    c.init();
    let f = Fixture {
        dir,
        cairn: c,
        local_repo: None,
    };
    let _ = generations(&f);
    f.cairn.json(&["forget", "--keep-last", "2"]);
    let dry = f
        .cairn
        .json(&["prune", "--dry-run", "--instant", "--max-unused", "0%"]);
    let _ = proxy.take();
    let real = f.cairn.json(&["prune", "--instant", "--max-unused", "0%"]);
    let seen = proxy.take();

    // What the run reported is what the server received, class by class.
    for class in ["list", "head", "get", "put", "delete"] {
        let wire = seen.iter().filter(|r| r.s3_class() == class).count() as u64;
        assert_eq!(real["requests"][class], wire, "{class}: {real}");
    }
    // The dry run's price of the sweep against the sweep's own window of that run.
    let est = &dry["estimate"];
    let measured = &real["measured"];
    let total = |v: &serde_json::Value| -> u64 {
        v.as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap_or(0))
            .sum()
    };
    let (e, m) = (total(&est["requests"]), total(&measured["requests"]));
    eprintln!("sweep requests: estimated {e}, sent {m}; {est} vs {measured}");
    let within = |a: u64, b: u64| (a as f64 - b as f64).abs() <= 0.05 * (b.max(1) as f64);
    assert!(
        within(e, m),
        "requests: estimated {e}, sent {m}\n{est}\n{measured}"
    );
    for (ek, mk) in [("bytes_down", "bytes_down"), ("bytes_up", "bytes_up")] {
        let (a, b) = (est[ek].as_u64().unwrap(), measured[mk].as_u64().unwrap());
        assert!(within(a, b), "{ek}: estimated {a}, moved {b}");
    }
    let freed = real["bytes_before"].as_u64().unwrap() - real["bytes_after"].as_u64().unwrap();
    let promised = est["bytes_freed"].as_u64().unwrap();
    assert!(
        within(promised, freed),
        "freed: estimated {promised}, freed {freed}"
    );
}

/// A backup that started before a plan keeps that plan's sweep waiting, and the waiting prune
/// names its host in the output, in `--json` and in the metrics file; once the backup has
/// committed, the sweep runs and the backup's snapshot restores.
#[test]
fn a_running_backup_blocks_the_sweep_and_is_named() {
    let f = Fixture::new();
    let src = f.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("old.bin"), bytes(1, 1 << 20)).unwrap();
    f.cairn.json(&["backup", s(&src), "--host", "slowpoke"]);
    f.cairn.json(&["forget", "--keep-last", "1"]); // nothing to forget yet
                                                   // A second snapshot replaces old.bin; forgetting the first condemns it.
    std::fs::write(src.join("old.bin"), bytes(2, 1 << 20)).unwrap();
    f.cairn.json(&["backup", s(&src), "--host", "slowpoke"]);
    f.cairn.json(&["forget", "--keep-last", "1"]);

    // A slow backup (4 MiB at 256 KiB/s) starts before the plan.
    let slow_src = f.path("slow");
    std::fs::create_dir_all(&slow_src).unwrap();
    std::fs::write(slow_src.join("big.bin"), bytes(3, 4 << 20)).unwrap();
    let mut child = f
        .cairn
        .command(&[
            "backup",
            s(&slow_src),
            "--host",
            "slowpoke",
            "--limit-upload",
            "256",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sessions = f.repo().join("hosts");
    let started = std::time::Instant::now();
    let has_marker = || {
        std::fs::read_dir(&sessions).unwrap().any(|h| {
            let d = h.unwrap().path().join("sessions");
            d.is_dir() && std::fs::read_dir(d).unwrap().count() > 4
        })
    };
    // Two finished backups left 2 markers each; the slow one's first makes it 5.
    while !has_marker() {
        assert!(
            started.elapsed().as_secs() < 30,
            "the slow backup never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mark = f.cairn.json(&["prune", "--grace", "0s"]);
    assert_eq!(mark["phases"], serde_json::json!(["mark"]), "{mark}");
    let metrics = f.path("cairn.prom");
    let blocked = f
        .cairn
        .ok(&["prune", "--grace", "0s", "--metrics-file", s(&metrics)]);
    assert!(
        blocked.stdout.contains("host slowpoke session"),
        "{blocked:#?}"
    );
    let json = f.cairn.json(&["prune", "--grace", "0s"]);
    assert_eq!(json["phases"], serde_json::json!(["blocked"]), "{json}");
    assert_eq!(json["blocked_by"][0]["host"], "slowpoke", "{json}");
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        prom.contains("cairn_prune_blocked_session{command=\"prune\"")
            && prom.contains("host=\"slowpoke\""),
        "{prom}"
    );
    assert!(child.wait().unwrap().success(), "the slow backup failed");
    let sweep = f.cairn.json(&["prune", "--grace", "0s"]);
    assert_eq!(sweep["phases"][0], "sweep", "{sweep}");
    assert!(
        sweep["estimate"]["packs_deleted"].as_u64().unwrap() >= 1,
        "{sweep}"
    );
    check_read_data(&f);
    let t = f.path("restored");
    f.cairn.json(&["restore", "latest", "-t", s(&t)]);
    assert_same(&slow_src, &Fixture::restored(&t, &slow_src), true);
}

/// `prune --instant` killed with SIGKILL at points spread over its run: each time `check`
/// passes, the next prune (which takes over the dead prune's lock) finishes, `check
/// --read-data` passes and the kept snapshots restore.
#[test]
fn prune_killed_at_random_points_is_finished_by_the_next() {
    let f = Fixture::new();
    let (src, copies) = generations(&f);
    f.cairn.json(&["forget", "--keep-last", "2"]);
    let pristine = f.path("pristine");
    keep_copy(&f.repo(), &pristine);
    let args = ["prune", "--instant", "--max-unused", "0%"];
    let t0 = std::time::Instant::now();
    f.cairn.json(&args);
    let full = t0.elapsed();
    let points = 12u32;
    let mut killed = 0;
    for i in 0..points {
        std::fs::remove_dir_all(f.repo()).unwrap();
        keep_copy(&pristine, &f.repo());
        let mut child = f
            .cairn
            .command(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full * i / points);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        killed += u32::from(!status.success());
        let out = f.cairn.run(&["check"]);
        assert_eq!(out.code, 0, "point {i}: check after the kill: {out:#?}");
        let again = f.cairn.run(&["prune", "--instant", "--max-unused", "0%"]);
        assert_eq!(again.code, 0, "point {i}: the next prune: {again:#?}");
        check_read_data(&f);
        restores_latest_two(&f, &src, &copies);
    }
    assert!(
        killed >= points / 2,
        "only {killed} of {points} runs were killed mid-way"
    );
}

/// The disk that spools repacked packs fills up mid-repack: prune stops with the cause, the
/// repository still checks and restores, and the next prune with room finishes. Needs root
/// to mount a tiny tmpfs; CI runs as root.
#[test]
fn prune_on_a_full_spool_disk_stops_cleanly_and_the_next_finishes() {
    if !crate::support::can_mount() {
        return;
    }
    let f = Fixture::new();
    let (src, copies) = generations(&f);
    f.cairn.json(&["forget", "--keep-last", "2"]);
    let small = f.path("small-disk");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a 1 MiB tmpfs");
    let mut full = f.cairn.clone();
    full.env.push(("TMPDIR".into(), small.clone().into()));
    let out = full.run(&["prune", "--instant", "--max-unused", "0%"]);
    let _ = std::process::Command::new("umount").arg(&small).status();
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("No space left on device"), "{out:#?}");
    let check = f.cairn.run(&["check"]);
    assert_eq!(check.code, 0, "{check:#?}");
    restores_latest_two(&f, &src, &copies);
    let again = f.cairn.json(&["prune", "--instant", "--max-unused", "0%"]);
    assert!(
        again["phases"]
            .as_array()
            .unwrap()
            .contains(&"sweep".into()),
        "{again}"
    );
    check_read_data(&f);
    restores_latest_two(&f, &src, &copies);
}

/// The network to the real server drops while prune repacks: a long outage makes it give up
/// after its retries with the repository intact, the next prune finishes, and a short
/// outage is ridden out.
fn network_drops_mid_repack(remote: Remote) {
    use crate::faults::{via_proxy, with_retries};
    use std::process::Stdio;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let Some((c, proxy)) = via_proxy(remote, dir.path()) else {
        return;
    };
    let (f, src, copies) = forgotten(dir, c);
    let prune = ["prune", "--instant", "--max-unused", "0%"];

    // A long outage once the new packs start going up: retries give up, nothing is lost.
    let before = proxy.upstream_bytes();
    let child = with_retries(&f.cairn, 3, 0.2)
        .command(&prune)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    proxy.wait_upstream(before + (2 << 20), Duration::from_secs(120));
    proxy.set_down(true);
    let out = child.wait_with_output().unwrap();
    proxy.set_down(false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("retrying"),
        "no retry was reported: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let check = f.cairn.run(&["check"]);
    assert_eq!(check.code, 0, "{check:#?}");
    restores_latest_two(&f, &src, &copies);

    // The next prune, with a short outage mid-upload, rides it out and finishes.
    let before = proxy.upstream_bytes();
    let child = with_retries(&f.cairn, 20, 0.5)
        .command(&prune)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    proxy.wait_upstream(before + (2 << 20), Duration::from_secs(120));
    proxy.set_down(true);
    std::thread::sleep(Duration::from_millis(800));
    proxy.set_down(false);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    check_read_data(&f);
    restores_latest_two(&f, &src, &copies);
    let again = f.cairn.json(&prune);
    assert_eq!(again["phases"], serde_json::json!(["clean"]), "{again}");
}

crate::on_backend!(Sftp => sftp_network; network_drops_mid_repack);
crate::on_backend!(S3 => s3_network; network_drops_mid_repack);

/// What the versioned bucket holds under `prefix`: (current objects, stored versions,
/// delete markers), as the server lists them.
fn versions_under(prefix: &str) -> (usize, usize, usize) {
    let bucket = std::env::var("CAIRN_TEST_S3_VERSIONED_BUCKET").unwrap();
    let v = crate::servers::s3_admin_get(&format!("{bucket}?prefix={prefix}%2F&versions="));
    assert!(!v.contains("<IsTruncated>true"), "more than one page: {v}");
    let l = crate::servers::s3_admin_get(&format!("{bucket}?list-type=2&prefix={prefix}%2F"));
    assert!(!l.contains("<IsTruncated>true"), "more than one page: {l}");
    (
        l.matches("<Contents>").count(),
        v.matches("<Version>").count(),
        v.matches("<DeleteMarker>").count(),
    )
}

/// On a bucket that keeps deleted files as hidden versions (as B2 does), prune with
/// `s3.delete-versions` leaves no hidden version behind, its estimate counts the listing
/// each delete takes, and what remains checks and restores; without the option the same
/// prune leaves delete markers and every old version (the bucket does keep them).
#[test]
fn versioned_bucket_prune_deletes_every_version() {
    for delete_versions in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let Some((mut c, prefix)) = crate::servers::s3_versioned(dir.path(), "versions") else {
            return;
        };
        c.opts.push("-o".into());
        c.opts
            .push(format!("s3.delete-versions={delete_versions}").into());
        let (f, src, copies) = forgotten(dir, c);
        let prune = ["prune", "--instant", "--max-unused", "0%"];
        let mut dry_args = prune.to_vec();
        dry_args.push("--dry-run");
        let dry = f.cairn.json(&dry_args);
        let out = f.cairn.json(&prune);
        let est = &dry["estimate"]["requests"];
        let got = &out["measured"]["requests"];
        assert!(got["delete"].as_u64().unwrap() > 0, "{out}");
        let (current, versions, markers) = versions_under(&prefix);
        if delete_versions {
            assert_eq!(got["list"], got["delete"], "one listing per delete: {out}");
            assert_eq!(
                est["list"], est["delete"],
                "the estimate counts them: {dry}"
            );
            assert_eq!(est["delete"], got["delete"], "{dry}\n{out}");
            assert_eq!(markers, 0, "hidden files left behind");
            assert_eq!(versions, current, "old versions left behind");
        } else {
            assert_eq!(got["list"], 0, "{out}");
            assert!(
                markers > 0,
                "the bucket did not keep deleted files: {markers}"
            );
            assert!(versions > current, "{versions} versions, {current} current");
        }
        check_read_data(&f);
        restores_latest_two(&f, &src, &copies);
    }
}
