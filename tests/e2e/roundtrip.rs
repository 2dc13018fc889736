//! Backup and restore round trips, incremental backups, restore and backup options, keys and
//! the default repository.

use std::path::Path;

use crate::servers::Remote;
use crate::support::{
    assert_same, assert_sparse, bytes, count_files, full_tree, s, Cairn, Fixture, TreeSpec,
    CHEAP_KDF,
};

fn restore(f: &Fixture, spec: &str, target: &Path, extra: &[&str]) -> serde_json::Value {
    let mut a = vec!["restore", spec, "-t", s(target)];
    a.extend_from_slice(extra);
    f.cairn.json(&a)
}

fn full_tree_roundtrip_and_incremental(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let src = f.path("src");
    let mut spec = full_tree(&src);
    spec.build(&src);
    let files = count_files(&src);

    let first = f.cairn.json(&["backup", s(&src)]);
    assert_eq!(first["errors"], serde_json::json!([]), "{first}");
    assert_eq!(first["files_new"], files, "{first}");

    let r1 = f.path("r1");
    let sum = restore(&f, "latest", &r1, &["--verify"]);
    assert_eq!(
        sum["summary"]["verify_failures"],
        serde_json::json!([]),
        "{sum}"
    );
    assert_eq!(sum["summary"]["errors"], serde_json::json!([]), "{sum}");
    let out = Fixture::restored(&r1, &src);
    assert_same(&src, &out, true);
    // All-zero chunks come back as holes, whether the source had holes or written zeros.
    assert_sparse(&out.join("sparse.img"));
    assert_sparse(&out.join("holey.bin"));

    // Unchanged: every file reused from the parent, none read.
    let again = f.cairn.json(&["backup", s(&src)]);
    assert_eq!(again["files_unmodified"], files, "{again}");
    assert_eq!(again["files_new"], 0, "{again}");
    assert_eq!(again["files_changed"], 0, "{again}");
    assert_eq!(again["bytes_read"], 0, "{again}");

    // One file changed.
    std::fs::write(src.join("sub/deeper/d.txt"), b"changed content, longer").unwrap();
    let third = f.cairn.json(&["backup", s(&src)]);
    assert_eq!(third["files_changed"], 1, "{third}");
    assert_eq!(third["files_new"], 0, "{third}");
    assert_eq!(third["files_unmodified"], files - 1, "{third}");
    assert_eq!(third["bytes_read"], 23, "{third}");

    let r2 = f.path("r2");
    restore(&f, "latest", &r2, &[]);
    assert_same(&src, &Fixture::restored(&r2, &src), true);

    // A sub-path: its contents land directly in the target.
    let r3 = f.path("r3");
    let sub = format!("latest:{}/sub", s(&src));
    restore(&f, &sub, &r3, &[]);
    assert!(
        r3.join("b.bin").is_file(),
        "b.bin not directly in the target"
    );
    assert_same(&src.join("sub"), &r3, false);
}

fn small_tree(f: &Fixture) -> std::path::PathBuf {
    let src = f.path("src");
    TreeSpec::new()
        .file("a.txt", 100, 1)
        .file("b.log", 200, 2)
        .file("sub/c.txt", 300, 3)
        .file("sub/d.log", 400, 4)
        .file("other/e.dat", 500, 5)
        .mtime("a.txt", 1_500_000_000_000_000_000)
        .build(&src);
    src
}

fn restore_include_exclude(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let src = small_tree(&f);
    f.cairn.json(&["backup", s(&src)]);

    let inc = f.path("inc");
    restore(&f, "latest", &inc, &["--include", "*.txt"]);
    let o = Fixture::restored(&inc, &src);
    assert!(o.join("a.txt").is_file());
    assert!(o.join("sub/c.txt").is_file());
    assert!(!o.join("b.log").exists(), "--include *.txt restored b.log");
    assert!(
        !o.join("sub/d.log").exists(),
        "--include *.txt restored sub/d.log"
    );
    assert!(!o.join("other").exists(), "--include *.txt created other/");
    assert_eq!(std::fs::read(o.join("sub/c.txt")).unwrap(), bytes(3, 300));

    let exc = f.path("exc");
    restore(
        &f,
        "latest",
        &exc,
        &["--exclude", "*.log", "--exclude", "other"],
    );
    let o = Fixture::restored(&exc, &src);
    assert!(o.join("a.txt").is_file());
    assert!(o.join("sub/c.txt").is_file());
    assert!(!o.join("b.log").exists(), "--exclude *.log restored b.log");
    assert!(
        !o.join("sub/d.log").exists(),
        "--exclude *.log restored sub/d.log"
    );
    assert!(!o.join("other").exists(), "--exclude other restored other/");
}

fn restore_overwrite_policies(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let src = small_tree(&f);
    f.cairn.json(&["backup", s(&src)]);
    let t = f.path("t");
    restore(&f, "latest", &t, &[]);
    let o = Fixture::restored(&t, &src);
    let a = o.join("a.txt");
    let orig = bytes(1, 100);
    let mtime = filetime::FileTime::from_last_modification_time(&std::fs::metadata(&a).unwrap());

    // Same size and mtime, other content: if-changed keeps it, never keeps it.
    let same_size = vec![b'x'; 100];
    std::fs::write(&a, &same_size).unwrap();
    filetime::set_file_mtime(&a, mtime).unwrap();
    let sum = restore(&f, "latest", &t, &["--overwrite", "if-changed"]);
    assert_eq!(
        std::fs::read(&a).unwrap(),
        same_size,
        "if-changed rewrote a same size+mtime file"
    );
    assert_eq!(sum["summary"]["files_skipped"], 5, "{sum}");

    // Different size: if-changed restores it.
    std::fs::write(&a, b"short").unwrap();
    let never = restore(&f, "latest", &t, &["--overwrite", "never"]);
    assert_eq!(
        std::fs::read(&a).unwrap(),
        b"short",
        "--overwrite never replaced a file"
    );
    assert_eq!(never["summary"]["files_restored"], 0, "{never}");
    let sum = restore(&f, "latest", &t, &["--overwrite", "if-changed"]);
    assert_eq!(
        std::fs::read(&a).unwrap(),
        orig,
        "if-changed kept a changed file"
    );
    assert_eq!(sum["summary"]["files_restored"], 1, "{sum}");
    assert_eq!(sum["summary"]["files_skipped"], 4, "{sum}");

    // Default (always): replaced even when size and mtime match.
    std::fs::write(&a, &same_size).unwrap();
    filetime::set_file_mtime(&a, mtime).unwrap();
    restore(&f, "latest", &t, &[]);
    assert_eq!(std::fs::read(&a).unwrap(), orig);
    assert_same(&src, &o, true);
}

fn restore_delete_dry_run_verify(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let src = small_tree(&f);
    f.cairn.json(&["backup", s(&src)]);

    let dry = f.path("dry");
    let sum = restore(&f, "latest", &dry, &["--dry-run"]);
    assert_eq!(sum["dry_run"], true, "{sum}");
    assert!(
        !dry.exists() || std::fs::read_dir(&dry).unwrap().next().is_none(),
        "--dry-run wrote into the target"
    );

    let t = f.path("t");
    restore(&f, "latest", &t, &[]);
    let o = Fixture::restored(&t, &src);
    std::fs::write(o.join("extra.txt"), b"not in the snapshot").unwrap();
    std::fs::create_dir_all(o.join("sub/extra-dir/x")).unwrap();
    std::fs::write(o.join("sub/extra-dir/x/y"), b"y").unwrap();
    // Without --delete, extras stay.
    restore(&f, "latest", &t, &[]);
    assert!(o.join("extra.txt").exists());
    let sum = restore(&f, "latest", &t, &["--delete", "--verify"]);
    assert!(!o.join("extra.txt").exists(), "--delete left extra.txt");
    assert!(
        !o.join("sub/extra-dir").exists(),
        "--delete left sub/extra-dir"
    );
    assert_eq!(sum["summary"]["deleted"], 2, "{sum}");
    assert_eq!(
        sum["summary"]["verify_failures"],
        serde_json::json!([]),
        "{sum}"
    );
    assert_same(&src, &o, true);
}

fn backup_excludes(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let src = f.path("src");
    TreeSpec::new()
        .file("keep.txt", 10, 1)
        .file("skip.tmp", 10, 2)
        .file("dir/skip.tmp", 10, 3)
        .file("dir/keep.dat", 10, 4)
        .file("old.bak", 10, 5)
        .file("notes.orig", 10, 6)
        .file("LOUD.IGN", 10, 7)
        .file("quiet.ign", 10, 8)
        .text(
            "cache/CACHEDIR.TAG",
            b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n",
        )
        .file("cache/blob", 10, 9)
        .text("notcache/CACHEDIR.TAG", b"Signature: wrong\n")
        .file("notcache/blob", 10, 10)
        .text("marked/.nobackup", "")
        .file("marked/data", 10, 11)
        .file("marked/sub/data", 10, 12)
        .file("big.bin", 2 << 20, 13)
        .file("small.bin", 512 << 10, 14)
        .build(&src);
    let exfile = f.path("excludes.txt");
    std::fs::write(
        &exfile,
        "# comment line\n\n   \n*.bak\n  *.orig  \n# *.txt\n",
    )
    .unwrap();
    let out = f.cairn.json(&[
        "backup",
        s(&src),
        "--exclude",
        "*.tmp",
        "--exclude-file",
        s(&exfile),
        "--iexclude",
        "*.ign",
        "--exclude-caches",
        "--exclude-if-present",
        ".nobackup",
        "--exclude-larger-than",
        "1M",
    ]);
    assert_eq!(out["errors"], serde_json::json!([]), "{out}");
    let t = f.path("t");
    restore(&f, "latest", &t, &[]);
    let o = Fixture::restored(&t, &src);
    for kept in [
        "keep.txt",
        "dir/keep.dat",
        "cache/CACHEDIR.TAG",
        "notcache/CACHEDIR.TAG",
        "notcache/blob",
        "marked/.nobackup",
        "small.bin",
    ] {
        assert!(o.join(kept).is_file(), "{kept} should have been backed up");
    }
    for (gone, why) in [
        ("skip.tmp", "--exclude"),
        ("dir/skip.tmp", "--exclude"),
        ("old.bak", "--exclude-file"),
        ("notes.orig", "--exclude-file (trimmed line)"),
        ("LOUD.IGN", "--iexclude"),
        ("quiet.ign", "--iexclude"),
        ("cache/blob", "--exclude-caches"),
        ("marked/data", "--exclude-if-present"),
        ("marked/sub", "--exclude-if-present"),
        ("big.bin", "--exclude-larger-than"),
    ] {
        assert!(
            !o.join(gone).exists(),
            "{gone} should have been excluded by {why}"
        );
    }
    assert!(o.join("cache").is_dir() && o.join("marked").is_dir());
}

fn host_and_tags_filter_snapshots(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let src = small_tree(&f);
    f.cairn
        .json(&["backup", s(&src), "--host", "alpha", "--tag", "x,y"]);
    f.cairn.json(&[
        "backup",
        s(&src),
        "--host",
        "beta",
        "--tag",
        "y",
        "--tag",
        "z",
    ]);
    let all = f.cairn.json(&["snapshots"]);
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    assert_eq!(all[0]["hostname"], "alpha");
    assert_eq!(all[0]["tags"], serde_json::json!(["x", "y"]));
    assert_eq!(all[1]["tags"], serde_json::json!(["y", "z"]));
    let n = |args: &[&str]| {
        let mut a = vec!["snapshots"];
        a.extend_from_slice(args);
        f.cairn.json(&a).as_array().unwrap().len()
    };
    assert_eq!(n(&["--host", "alpha"]), 1);
    assert_eq!(n(&["--host", "beta"]), 1);
    assert_eq!(n(&["--host", "gamma"]), 0);
    assert_eq!(n(&["--tag", "y"]), 2);
    assert_eq!(n(&["--tag", "x"]), 1);
    assert_eq!(n(&["--tag", "x,z"]), 0);
    assert_eq!(n(&["--host", "alpha", "--tag", "y"]), 1);
    assert_eq!(n(&["--host", "beta", "--tag", "x"]), 0);
    let beta = f.cairn.json(&["snapshots", "--host", "beta", "--tag", "z"]);
    assert_eq!(beta[0]["hostname"], "beta", "{beta}");
}

fn stdin_backup_restores_same_bytes(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let mut data = b"-- dump\nCREATE TABLE t (x int);\n".to_vec();
    data.extend(bytes(77, 3 << 20));
    let mut args = vec!["--json", "backup", "--stdin", "--stdin-filename", "db.sql"];
    let out = f.cairn.run_input(&args, &data);
    assert_eq!(out.code, 0, "{out:#?}");
    let snaps = f.cairn.json(&["snapshots"]);
    assert_eq!(snaps[0]["paths"], serde_json::json!(["/db.sql"]), "{snaps}");
    let t = f.path("t");
    restore(&f, "latest", &t, &[]);
    assert_eq!(std::fs::read(t.join("db.sql")).unwrap(), data);
    // --stdin with paths is refused.
    args.push("/etc");
    assert_ne!(f.cairn.run(&args).code, 0);
}

fn snapshot_id_prefix(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let src = small_tree(&f);
    let first = f.cairn.json(&["backup", s(&src)]);
    std::fs::write(src.join("a.txt"), b"second version").unwrap();
    f.cairn.json(&["backup", s(&src)]);
    let id = first["snapshot_id"].as_str().unwrap();
    let prefix = &id[..8];
    let listed = f.cairn.json(&["snapshots", prefix]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], id);
    let t = f.path("t");
    restore(&f, prefix, &t, &[]);
    let o = Fixture::restored(&t, &src);
    assert_eq!(std::fs::read(o.join("a.txt")).unwrap(), bytes(1, 100));
    // Upper case prefixes and a sub-path with a prefix work too.
    let t2 = f.path("t2");
    restore(
        &f,
        &format!("{}:{}/sub", prefix.to_uppercase(), s(&src)),
        &t2,
        &[],
    );
    assert_eq!(std::fs::read(t2.join("c.txt")).unwrap(), bytes(3, 300));
    let bad = f
        .cairn
        .run(&["restore", "ffffffffffff", "-t", s(&f.path("t3"))]);
    assert_ne!(bad.code, 0);
}

fn key_add_list_remove_passwd(remote: Remote) {
    let Some(f) = Fixture::on(remote) else {
        return;
    };
    let src = small_tree(&f);
    f.cairn.json(&["backup", s(&src)]);
    let pwfile = f.path("pw2");
    std::fs::write(&pwfile, "second-password\nignored second line\n").unwrap();
    let mut add = vec!["key", "add", "--new-password-file", s(&pwfile)];
    add.extend(CHEAP_KDF);
    let added = f.cairn.json(&add);
    let new_id = added["added"].as_str().unwrap().to_owned();

    let c2 = f.cairn.with_password("second-password");
    assert_eq!(c2.json(&["snapshots"]).as_array().unwrap().len(), 1);
    let keys = c2.json(&["key", "list"]);
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let other = keys
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .find(|id| *id != new_id)
        .unwrap();

    c2.json(&["key", "remove", &other]);
    let old = f.cairn.run(&["snapshots"]);
    assert_eq!(old.code, 12, "removed key still opens: {old:#?}");
    assert_eq!(c2.json(&["key", "list"]).as_array().unwrap().len(), 1);

    let pw3 = f.path("pw3");
    std::fs::write(&pw3, "third-password").unwrap();
    let mut passwd = vec!["key", "passwd", "--new-password-file", s(&pw3)];
    passwd.extend(CHEAP_KDF);
    c2.json(&passwd);
    let c3 = f.cairn.with_password("third-password");
    assert_eq!(c3.json(&["snapshots"]).as_array().unwrap().len(), 1);
    assert_eq!(
        c2.run(&["snapshots"]).code,
        12,
        "old password still opens after passwd"
    );
    assert_eq!(c3.json(&["key", "list"]).as_array().unwrap().len(), 1);
    let t = f.path("t");
    c3.json(&["restore", "latest", "-t", s(&t)]);
    assert_same(&src, &Fixture::restored(&t, &src), true);
}

#[test]
fn default_repository_under_xdg_data_home() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let xdg = dir.path().join("xdg");
    std::fs::create_dir_all(&home).unwrap();
    let mut c = Cairn::new("unused");
    c.repo = None;
    c.env.push(("HOME".into(), home.clone().into()));
    c.env.push(("XDG_DATA_HOME".into(), xdg.clone().into()));

    // No repository yet: commands other than backup say so with exit code 10.
    let t = dir.path().join("t");
    for args in [
        vec!["snapshots"],
        vec!["restore", "latest", "-t", s(&t)],
        vec!["key", "list"],
    ] {
        let out = c.run(&args);
        assert_eq!(out.code, 10, "{args:?}: {out:#?}");
    }
    assert!(
        !xdg.join("cairn/repo").exists(),
        "a read command created the repository"
    );

    let src = dir.path().join("src");
    TreeSpec::new()
        .file("a", 1000, 1)
        .file("b/c", 2000, 2)
        .build(&src);
    let out = c.run(&["backup", s(&src)]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        xdg.join("cairn/repo/config").is_file(),
        "default repository not at $XDG_DATA_HOME/cairn/repo"
    );
    std::fs::write(src.join("a"), b"changed").unwrap();
    let out = c.run(&["backup", s(&src)]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        !out.stderr.contains("created"),
        "second backup created a repository again: {out:#?}"
    );
    assert_eq!(c.json(&["snapshots"]).as_array().unwrap().len(), 2);
    c.json(&["restore", "latest", "-t", s(&t)]);
    assert_same(&src, &Fixture::restored(&t, &src), true);
    assert!(
        !home.join(".local").exists(),
        "used $HOME although XDG_DATA_HOME is set"
    );
}

crate::on_all_backends!(
    full_tree_roundtrip_and_incremental,
    restore_include_exclude,
    restore_overwrite_policies,
    restore_delete_dry_run_verify,
    backup_excludes,
    host_and_tags_filter_snapshots,
    stdin_backup_restores_same_bytes,
    snapshot_id_prefix,
    key_add_list_remove_passwd,
);
