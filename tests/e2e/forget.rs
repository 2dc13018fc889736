//! `forget` against restic 0.14 itself: the same 60 snapshot times (two hosts, some tags)
//! made with `backup --time` in both tools, then the same policies, and the same snapshots
//! kept for the same reasons. Both run in one daylight-saving time zone, so local-time
//! buckets around the switch days are exercised too.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{s, Cairn, Fixture, PASSWORD};

/// Both tools read their local time zone from `TZ`.
const TZ: &str = "Europe/Berlin";

/// (host, local time, tags); times avoid 02:xx, which the switch days skip or repeat.
const SNAPSHOTS: [(&str, &str, &str); 60] = [
    ("alpha", "2025-03-31 09:15:00", ""),
    ("alpha", "2025-03-31 08:40:00", ""),
    ("alpha", "2025-03-31 08:05:00", ""), // same hour as the one before
    ("alpha", "2025-03-31 00:10:00", ""),
    ("alpha", "2025-03-30 23:50:00", ""), // 30 March 2025: summer time starts
    ("alpha", "2025-03-30 03:30:00", ""),
    ("alpha", "2025-03-30 01:30:00", ""),
    ("alpha", "2025-03-29 12:00:00", ""),
    ("alpha", "2025-03-24 06:00:00", ""), // Monday
    ("alpha", "2025-03-23 22:00:00", ""), // Sunday, the week before
    ("alpha", "2025-03-16 12:00:00", "report"),
    ("alpha", "2025-03-10 12:00:00", ""),
    ("alpha", "2025-03-03 08:00:00", ""), // a month before 31 March is 3 March (Go's AddDate)
    ("alpha", "2025-03-01 00:30:00", ""),
    ("alpha", "2025-02-28 23:30:00", ""),
    ("alpha", "2025-02-14 18:00:00", "a,b"),
    ("alpha", "2025-01-31 23:59:00", ""),
    ("alpha", "2025-01-01 00:05:00", ""),
    ("alpha", "2024-12-31 23:55:00", ""),
    ("alpha", "2024-12-30 10:00:00", ""), // Monday of ISO week 2025-W01
    ("alpha", "2024-12-29 10:00:00", ""), // Sunday of 2024-W52
    ("alpha", "2024-11-03 07:00:00", ""),
    ("alpha", "2024-10-27 03:30:00", ""), // 27 October 2024: summer time ends
    ("alpha", "2024-10-27 01:30:00", ""),
    ("alpha", "2024-09-30 20:00:00", "report"),
    ("alpha", "2024-08-15 12:00:00", "a"),
    ("alpha", "2024-07-01 00:00:00", ""),
    ("alpha", "2024-06-30 23:00:00", ""),
    ("alpha", "2024-05-01 06:00:00", ""),
    ("alpha", "2024-04-01 06:00:00", ""),
    ("alpha", "2024-03-01 06:00:00", ""),
    ("alpha", "2024-02-29 06:00:00", ""),
    ("alpha", "2024-02-01 06:00:00", ""),
    ("alpha", "2024-01-01 01:00:00", ""),
    ("alpha", "2023-12-31 22:00:00", ""),
    ("alpha", "2023-06-15 12:00:00", "report"),
    ("alpha", "2023-01-01 10:00:00", ""), // ISO week 2022-W52 ...
    ("alpha", "2022-12-26 09:00:00", ""), // ... like this one
    ("alpha", "2022-06-15 12:00:00", ""),
    ("alpha", "2021-01-03 12:00:00", ""), // ISO week 2020-W53 ...
    ("alpha", "2020-12-28 12:00:00", ""), // ... like this one
    ("alpha", "2020-06-01 12:00:00", ""),
    ("alpha", "2019-12-30 12:00:00", ""), // ISO week 2020-W01
    ("alpha", "2019-12-29 12:00:00", ""),
    ("alpha", "2019-06-01 12:00:00", "report"),
    ("alpha", "2018-12-31 12:00:00", ""),
    ("alpha", "2018-01-01 12:00:00", "a,b"),
    ("alpha", "2017-07-07 07:07:07", ""),
    ("beta", "2025-03-31 07:00:00", ""),
    ("beta", "2025-03-28 12:00:00", ""),
    ("beta", "2025-03-20 12:00:00", ""),
    ("beta", "2025-03-02 12:00:00", ""),
    ("beta", "2025-02-01 12:00:00", ""),
    ("beta", "2024-12-31 12:00:00", ""),
    ("beta", "2024-07-15 12:00:00", "report"),
    ("beta", "2024-01-15 12:00:00", ""),
    ("beta", "2023-07-01 12:00:00", ""),
    ("beta", "2022-01-01 00:30:00", ""),
    ("beta", "2021-06-01 12:00:00", ""),
    ("beta", "2020-02-29 12:00:00", ""),
];

/// The policies compared (each a `forget` argument list).
const POLICIES: [&[&str]; 11] = [
    &[
        "--keep-last",
        "5",
        "--keep-daily",
        "6",
        "--keep-weekly",
        "3",
    ],
    &["--keep-within", "1y2m3d4h"],
    &["--keep-within", "1m"],
    &[
        "--keep-within-daily",
        "10d",
        "--keep-within-weekly",
        "2m",
        "--keep-within-monthly",
        "1y",
    ],
    &["--keep-monthly", "6", "--keep-yearly", "3"],
    &[
        "--keep-tag",
        "a,b",
        "--keep-tag",
        "report",
        "--keep-last",
        "2",
    ],
    &["--keep-hourly", "8", "--group-by", ""],
    &["--keep-weekly", "100", "--group-by", "host,tags"],
    &[
        "--keep-within-hourly",
        "2d",
        "--keep-within-yearly",
        "5y",
        "--host",
        "alpha",
    ],
    &["--keep-tag", "", "--keep-yearly", "3", "--host", "beta"],
    &["--keep-last", "2", "--tag", "report"],
];

/// The restic binary, if it is restic 0.14 (the semantics cairn matches). Missing or
/// another version fails under CI and skips elsewhere: CI must not pass by testing less.
fn restic() -> Option<()> {
    let version = Command::new("restic").arg("version").output();
    let problem = match &version {
        Ok(out) if String::from_utf8_lossy(&out.stdout).starts_with("restic 0.14.") => {
            return Some(())
        }
        Ok(out) => format!(
            "restic 0.14 is needed, found {}",
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        Err(e) => format!("restic is not installed ({e}); apt-get install -y restic"),
    };
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{problem}");
    eprintln!("skipped: {problem}");
    None
}

/// Runs restic against `repo` and returns its standard output.
fn restic_run(repo: &Path, cache: &Path, args: &[&str]) -> String {
    let out = Command::new("restic")
        .env_remove("RESTIC_PASSWORD_FILE")
        .env_remove("RESTIC_PASSWORD_COMMAND")
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("RESTIC_CACHE_DIR", cache)
        .env("TZ", TZ)
        .args(args)
        .output()
        .expect("running restic");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "restic {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Local "YYYY-MM-DD HH:MM:SS" of a snapshot in either tool's JSON.
fn local_time(snapshot: &Value) -> String {
    let t = snapshot["time"].as_str().expect("snapshot time");
    t.get(..19).expect("RFC 3339 time").replace('T', " ")
}

/// Kept snapshots, each with its reasons (sorted), and removed ones, by (host, time),
/// from either tool's `forget --json` output.
type Outcome = (
    BTreeMap<(String, String), Vec<String>>,
    Vec<(String, String)>,
);

fn outcome(groups: &Value) -> Outcome {
    let mut kept = BTreeMap::new();
    let mut removed = Vec::new();
    let key = |s: &Value| {
        (
            s["hostname"].as_str().unwrap_or("").to_owned(),
            local_time(s),
        )
    };
    for g in groups
        .as_array()
        .expect("forget JSON is an array of groups")
    {
        for r in g["reasons"].as_array().into_iter().flatten() {
            let mut m: Vec<String> = r["matches"]
                .as_array()
                .expect("matches")
                .iter()
                .map(|x| x.as_str().unwrap_or("").to_owned())
                .collect();
            m.sort();
            kept.insert(key(&r["snapshot"]), m);
        }
        let keep_n = g["keep"].as_array().map_or(0, Vec::len);
        assert_eq!(keep_n, g["reasons"].as_array().map_or(0, Vec::len));
        for s in g["remove"].as_array().into_iter().flatten() {
            removed.push(key(s));
        }
    }
    removed.sort();
    (kept, removed)
}

/// `forget --dry-run --json` with a policy.
fn forget_args<'a>(policy: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["forget", "--dry-run", "--json"];
    args.extend(policy);
    args
}

/// `f` over `items`, four at a time, results in order.
fn par_each<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(4) {
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunk.iter().map(|x| scope.spawn(|| f(x))).collect();
            for h in handles {
                out.push(h.join().expect("worker thread"));
            }
        });
    }
    out
}

#[test]
fn forget_keeps_what_restic_keeps() {
    if restic().is_none() {
        return;
    }
    let mut fx = Fixture::new();
    fx.cairn.env.push(("TZ".into(), TZ.into()));
    let data = fx.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("file"), b"tiny").unwrap();
    let rrepo = fx.path("restic-repo");
    let rcache = fx.path("restic-cache");
    restic_run(&rrepo, &rcache, &["init"]);

    // Oldest first, as the backups would have happened. restic spends most of a second
    // per run deriving its key, so its runs go four at a time beside cairn's.
    let backup_args = |(host, time, tags): &(&'static str, &'static str, &'static str)| {
        let mut args = vec!["backup", "--quiet", "--host", host, "--time", time];
        if !tags.is_empty() {
            args.extend(["--tag", tags]);
        }
        args
    };
    let theirs: Vec<Value> = std::thread::scope(|scope| {
        let restic_backups = scope.spawn(|| {
            let runs: Vec<Vec<&str>> = SNAPSHOTS
                .iter()
                .rev()
                .map(|x| {
                    let mut a = backup_args(x);
                    a.push(s(&data));
                    a
                })
                .collect();
            par_each(&runs, |a| {
                restic_run(&rrepo, &rcache, a);
            });
            // A dry run without --no-lock takes restic's exclusive lock, so that four at a
            // time would fail.
            let forgets: Vec<Vec<&str>> = POLICIES
                .iter()
                .map(|p| {
                    let mut a = forget_args(p);
                    a.push("--no-lock");
                    a
                })
                .collect();
            let mut out = Vec::new();
            par_each(&forgets, |a| {
                let text = restic_run(&rrepo, &rcache, a);
                serde_json::from_str::<Value>(text.trim())
                    .unwrap_or_else(|e| panic!("restic {a:?}: bad JSON ({e}): {text}"))
            })
            .into_iter()
            .for_each(|v| out.push(v));
            out
        });
        for x in SNAPSHOTS.iter().rev() {
            let mut a = backup_args(x);
            a.push(s(&data));
            fx.cairn.ok(&a);
        }
        restic_backups.join().expect("restic thread")
    });

    for (policy, theirs) in POLICIES.iter().zip(&theirs) {
        let ours = outcome(&fx.cairn.ok(&forget_args(policy)).json());
        let theirs = outcome(theirs);
        assert_eq!(
            ours, theirs,
            "policy {policy:?}: cairn (left) and restic (right) differ"
        );
        assert!(
            !ours.0.is_empty() && !ours.1.is_empty(),
            "policy {policy:?} decides nothing"
        );
        eprintln!(
            "policy {policy:?}: both keep {} and remove {}",
            ours.0.len(),
            ours.1.len()
        );
    }

    // The first policy for real: exactly the snapshots it kept are left.
    let mut args = vec!["forget", "--json"];
    args.extend(POLICIES[0]);
    let (kept, _) = outcome(&fx.cairn.ok(&args).json());
    let left = fx.cairn.json(&["snapshots"]);
    let mut left: Vec<(String, String)> = left
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["hostname"].as_str().unwrap().to_owned(), local_time(s)))
        .collect();
    left.sort();
    assert_eq!(left, kept.into_keys().collect::<Vec<_>>());
}

#[test]
fn forget_by_id_and_refusals() {
    let fx = Fixture::new();
    let data = fx.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("file"), b"tiny").unwrap();
    let mut ids = Vec::new();
    for time in [
        "2024-01-01 10:00:00",
        "2024-01-02 10:00:00",
        "2024-01-03 10:00:00",
    ] {
        let out = fx.cairn.json(&["backup", "--time", time, s(&data)]);
        ids.push(out["snapshot_id"].as_str().unwrap().to_owned());
    }
    let refuse = |c: &Cairn, args: &[&str], why: &str| {
        let out = c.run(args);
        // 2 is clap's code for a value it could not parse.
        assert!(matches!(out.code, 1 | 2), "{args:?}: {out:#?}");
        assert!(out.stderr.contains(why), "{args:?}: {out:#?}");
    };
    refuse(&fx.cairn, &["forget"], "no policy");
    refuse(&fx.cairn, &["forget", "--keep-last", "-2"], "invalid count");
    refuse(&fx.cairn, &["forget", "--keep-within=-1d"], "negative");
    refuse(
        &fx.cairn,
        &["forget", "--group-by", "colour", "-l", "1"],
        "grouping",
    );
    refuse(&fx.cairn, &["forget", "-l", "1", &ids[0]], "not both");
    refuse(
        &fx.cairn,
        &["backup", "--time", "yesterday", s(&data)],
        "--time",
    );

    // A dry run changes nothing; the human output names the policy and what goes.
    let out = fx.cairn.ok(&["forget", "--dry-run", "--keep-last", "1"]);
    assert!(
        out.stdout
            .contains("Applying policy: keep 1 latest snapshots"),
        "{out:#?}"
    );
    assert!(out.stdout.contains("keep 1 snapshots:"), "{out:#?}");
    assert!(out.stdout.contains("last snapshot"), "{out:#?}");
    assert!(out.stdout.contains("remove 2 snapshots:"), "{out:#?}");
    assert_eq!(fx.cairn.json(&["snapshots"]).as_array().unwrap().len(), 3);

    // Ids (or prefixes) forget exactly those.
    fx.cairn.ok(&["forget", &ids[0][..10], &ids[2]]);
    let left = fx.cairn.json(&["snapshots"]);
    let left: Vec<&str> = left
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(left, [ids[1].as_str()]);
}
