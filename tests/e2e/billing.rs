//! What a run says it cost against what the S3 server received: the real binary backs up
//! and restores through a counting HTTP proxy in front of the real SeaweedFS server, and the
//! `requests` of each `--json` summary must equal the proxy's count in every billing class.
//! Small parts and listing pages make multipart uploads and paged listings happen; one run
//! has an answer swallowed, so the CLI's retries are on the bill too.

use std::ffi::OsString;

use crate::counting_proxy::Seen;
use crate::servers::s3_through_proxy;
use crate::support::{assert_same, bytes, s, Fixture};

const CLASSES: [&str; 5] = ["list", "head", "get", "put", "delete"];

/// Asserts the summary's request counts equal what the proxy saw since the last check.
fn check(scenario: &str, summary: &serde_json::Value, seen: &[Seen]) -> Vec<u64> {
    let wire: Vec<u64> = CLASSES
        .iter()
        .map(|c| seen.iter().filter(|r| r.s3_class() == *c).count() as u64)
        .collect();
    let reported: Vec<u64> = CLASSES
        .iter()
        .map(|c| summary["requests"][c].as_u64().unwrap_or(u64::MAX))
        .collect();
    eprintln!("{scenario:<28} proxy {wire:?}  --json {reported:?}  ({CLASSES:?})");
    let listing: Vec<String> = seen
        .iter()
        .map(|r| {
            format!(
                "{} {}{}",
                r.method,
                r.target,
                if r.cut { " (cut)" } else { "" }
            )
        })
        .collect();
    assert_eq!(
        reported,
        wire,
        "{scenario}: --json requests differ from what the server received ({CLASSES:?}):\n{}",
        listing.join("\n")
    );
    wire
}

#[test]
fn reported_requests_match_what_the_server_received() {
    let dir = tempfile::tempdir().unwrap();
    let Some((mut c, proxy)) = s3_through_proxy(dir.path(), "billing") else {
        return;
    };
    for o in [
        "s3.list-page-size=2",
        "s3.multipart-threshold=5M",
        "s3.part-size=5M",
        "retry.max-wait=0.2",
    ] {
        c.opts.push(OsString::from("-o"));
        c.opts.push(o.into());
    }
    c.init();
    let _ = proxy.take();

    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    // 12 MiB of incompressible bytes: a data pack above the 5 MiB multipart threshold.
    std::fs::write(src.join("big"), bytes(1, 12 << 20)).unwrap();
    for i in 0..6 {
        std::fs::write(src.join(format!("d/f{i}")), bytes(10 + i, 3000)).unwrap();
    }
    let out = c.json(&["backup", s(&src)]);
    let wire = check("first backup", &out, &proxy.take());
    assert!(wire[3] >= 5, "a multipart upload at least: {wire:?}");

    std::fs::write(src.join("d/new"), bytes(99, 5000)).unwrap();
    let out = c.json(&["backup", s(&src)]);
    let wire = check("second backup", &out, &proxy.take());
    assert!(wire[0] >= 2, "listings happened: {wire:?}");

    let target = dir.path().join("restored");
    let out = c.json(&["restore", "latest", "--target", s(&target)]);
    let wire = check("restore", &out, &proxy.take());
    assert!(wire[2] >= 2, "downloads happened: {wire:?}");
    assert_same(&src, &Fixture::restored(&target, &src), false);

    // The server stores the first pack part sent, but its answer is lost: the upload is
    // aborted and retried, and all of it is on the bill.
    proxy.cut_answer(1, |m, t| m == "PUT" && t.contains("partNumber=1"));
    // (Seeds close to the first file's give a shifted copy of it, which deduplicates.)
    std::fs::write(src.join("big2"), bytes(0x5eed_0fb1, 11 << 20)).unwrap();
    let out = c.json(&["backup", s(&src)]);
    let seen = proxy.take();
    assert!(!proxy.cut_pending(), "the cut did not happen: {seen:#?}");
    let wire = check("backup, one answer lost", &out, &seen);
    assert!(wire[4] >= 1, "the failed upload was aborted: {wire:?}");
    assert!(out["requests"]["errors"].as_u64().unwrap() >= 1, "{out}");
}

/// `check` on S3 reads each tree pack whole once, not each directory with its own GET
/// (it was 4,199 GETs for a 26-pack repository; restic's check made 30).
#[test]
fn check_reads_each_tree_pack_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some((c, proxy)) = s3_through_proxy(dir.path(), "check-gets") else {
        return;
    };
    c.init();
    let src = dir.path().join("src");
    for i in 0..300 {
        let d = src.join(format!("d{i:03}/sub"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("f"), bytes(i, 200)).unwrap();
    }
    c.json(&["backup", s(&src)]);
    let _ = proxy.take();

    let out = c.run(&["check"]);
    assert_eq!(out.code, 0, "{out:#?}");
    let seen = proxy.take();
    let range_gets: Vec<&Seen> = seen.iter().filter(|r| r.s3_class() == "get").collect();
    // 601 trees (root, 300 directories and their subdirectories) in one or two tree packs;
    // the rest are index files, snapshots, key and config, and pack headers.
    eprintln!("check of 601 trees: {} GETs", range_gets.len());
    let listing: Vec<String> = range_gets.iter().map(|r| r.target.clone()).collect();
    assert!(
        range_gets.len() < 40,
        "{} GETs for a check of 601 trees:\n{}",
        range_gets.len(),
        listing.join("\n")
    );
}
