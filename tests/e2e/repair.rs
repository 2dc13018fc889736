//! `check` of the prune state, and `repair index` and `repair snapshots` through the
//! binary: a lost pack, repaired until `check` passes and the repaired snapshot restores
//! what survived.

use crate::support::{bytes, files_under, host_files, packs, s, Fixture, TreeSpec};

#[test]
fn check_names_a_damaged_plan_and_warns_of_a_left_lock() {
    let f = Fixture::new();
    let src = f.path("src");
    TreeSpec::new().file("a", 300_000, 1).build(&src);
    f.cairn.json(&["backup", s(&src)]);
    std::fs::write(src.join("a"), bytes(2, 300_000)).unwrap();
    f.cairn.json(&["backup", s(&src)]);
    f.cairn.json(&["forget", "--keep-last", "1"]);
    let mark = f.cairn.json(&["prune", "--max-unused", "0%"]);
    assert_eq!(mark["phases"], serde_json::json!(["mark"]), "{mark}");
    assert_eq!(f.cairn.run(&["check"]).code, 0, "a pending plan is fine");

    // A lock a prune left behind: a warning naming it, not a failure.
    std::fs::write(f.repo().join("admin/lock"), b"not cbor").unwrap();
    let out = f.cairn.run(&["check"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stdout
            .contains("warning: admin/lock: a prune holds the prune lock"),
        "{out:#?}"
    );
    std::fs::remove_file(f.repo().join("admin/lock")).unwrap();

    let plans = files_under(&f.repo().join("admin/plans"));
    assert_eq!(plans.len(), 1, "{plans:?}");
    let mut data = std::fs::read(&plans[0]).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 1;
    std::fs::write(&plans[0], data).unwrap();
    let out = f.cairn.run(&["check"]);
    assert_eq!(out.code, 1, "{out:#?}");
    let name = plans[0].file_name().unwrap().to_str().unwrap();
    assert!(
        out.stdout.contains(&format!("error: admin/plans/{name}")),
        "{out:#?}"
    );
}

#[test]
fn lost_pack_is_repaired_by_index_then_snapshots() {
    let f = Fixture::new();
    let src = f.path("src");
    TreeSpec::new()
        .file("a", 600_000, 1)
        .file("d/b", 2_000_000, 2)
        .text("d/small", "small file")
        .build(&src);
    let snap = f.cairn.json(&["backup", s(&src)])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The largest pack holds file data (trees are small).
    let lost = packs(&f.repo())
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    std::fs::remove_file(&lost).unwrap();
    assert_eq!(f.cairn.run(&["check"]).code, 1);

    let index_before = host_files(&f.repo(), "index");
    let dry = f.cairn.json(&["repair", "index", "--dry-run"]);
    assert_eq!(dry["message_type"], "summary", "{dry}");
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(
        host_files(&f.repo(), "index"),
        index_before,
        "dry run wrote"
    );

    let r = f.cairn.json(&["repair", "index"]);
    let dropped = r["packs_dropped"].as_array().unwrap();
    assert!(
        dropped.len() == 1 && lost.ends_with(dropped[0].as_str().unwrap()),
        "{r}"
    );
    assert!(r["unreadable"].as_array().unwrap().is_empty(), "{r}");

    // Without --forget the damaged original stays beside its repaired copy.
    let human = f.cairn.ok(&["repair", "snapshots", "--dry-run"]);
    assert!(
        human.stdout.contains("would be repaired") && human.stdout.contains("lost: blob"),
        "{human:#?}"
    );
    let r = f.cairn.json(&["repair", "snapshots", "--forget"]);
    let repaired = r["repaired"].as_array().unwrap();
    assert!(
        repaired.len() == 1 && repaired[0]["original"] == snap.as_str(),
        "{r}"
    );
    assert_eq!(repaired[0]["forgotten"], true, "{r}");
    let lost_paths: Vec<String> = repaired[0]["lost"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l[0].as_str().unwrap().to_owned())
        .collect();
    assert!(!lost_paths.is_empty(), "{r}");

    let out = f.cairn.run(&["check", "--read-data"]);
    assert_eq!(out.code, 0, "{out:#?}");
    let list = f.cairn.json(&["snapshots"]);
    let list = list.as_array().unwrap();
    assert!(
        list.len() == 1 && list[0]["tags"] == serde_json::json!(["repaired"]),
        "{list:?}"
    );
    assert_eq!(list[0]["parent"], snap.as_str());

    let t = f.path("t");
    let r = f
        .cairn
        .json(&["restore", "latest", "-t", s(&t), "--verify"]);
    assert_eq!(r["summary"]["errors"], serde_json::json!([]), "{r}");
    let root = Fixture::restored(&t, &src);
    for (rel, want) in [
        ("a", bytes(1, 600_000)),
        ("d/b", bytes(2, 2_000_000)),
        ("d/small", b"small file".to_vec()),
    ] {
        let p = format!("{}/{rel}", src.display());
        if lost_paths.contains(&p) {
            assert!(!root.join(rel).exists(), "{rel} restored though lost");
        } else {
            assert_eq!(std::fs::read(root.join(rel)).unwrap(), want, "{rel}");
        }
    }
}
