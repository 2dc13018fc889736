//! `check`: every kind of repository file missing, truncated or bit-flipped is reported by
//! its path, and nothing else is.

use std::sync::Arc;

use cairn_core::backend::Backend;
use cairn_core::check::{check, CheckOptions, CheckReport, NoCheckProgress, ProblemKind, Subset};
use cairn_core::pack::PackKind;
use cairn_core::repository::Repository;
use cairn_core::testing::InMemoryBackend;

use crate::support::*;

struct Fixture {
    b: Arc<InMemoryBackend>,
    repo: Repository,
    _src: tempfile::TempDir,
}

/// A repository with one snapshot of a small tree: group data, private data (`*.pem`)
/// and trees, so every pack kind exists.
fn fixture() -> Fixture {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    write(&s.join("a.txt"), b"hello");
    write(&s.join("dir/big.bin"), &noise(7, 3 << 20));
    write(&s.join("dir/secret.pem"), b"-----BEGIN KEY-----");
    let (b, repo) = init();
    backup_of(&repo, vec![s.to_path_buf()]);
    Fixture { b, repo, _src: src }
}

fn run(f: &Fixture, read_data: bool) -> CheckReport {
    let o = CheckOptions {
        read_data: read_data.then_some(Subset::All),
    };
    check(&f.repo, &o, &NoCheckProgress).unwrap()
}

fn paths_under(b: &InMemoryBackend, part: &str) -> Vec<String> {
    b.paths().into_iter().filter(|p| p.contains(part)).collect()
}

fn one_path(b: &InMemoryBackend, part: &str) -> String {
    let v = paths_under(b, part);
    assert!(v.len() == 1, "expected one file under {part}, got {v:?}");
    v[0].clone()
}

/// The path of the largest pack of `kind` (small and large blobs may go to separate packs).
fn pack_of(f: &Fixture, kind: PackKind) -> String {
    let (files, bad) = f.repo.read_index_files().unwrap();
    assert!(bad.is_empty(), "index files damaged: {bad:?}");
    let name = files
        .iter()
        .flat_map(|(_, x)| &x.packs)
        .filter(|p| p.kind == kind)
        .max_by_key(|p| p.len)
        .map(|p| p.name.to_hex())
        .unwrap_or_else(|| panic!("no {kind:?} pack"));
    one_path(&f.b, &format!("packs/{}/{}", &name[..2], name))
}

fn bytes(b: &InMemoryBackend, path: &str) -> Vec<u8> {
    b.read(path, None).unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    Flip(usize),
    Truncate,
    Delete,
}

fn damage(b: &InMemoryBackend, path: &str, d: Damage) {
    let mut v = bytes(b, path);
    match d {
        Damage::Flip(at) => {
            let at = at.min(v.len() - 1);
            v[at] ^= 0x10;
            b.put_raw(path, v);
        }
        Damage::Truncate => {
            v.truncate(v.len() / 2);
            b.put_raw(path, v);
        }
        Damage::Delete => b.remove(path).unwrap(),
    }
}

fn describe(r: &CheckReport) -> String {
    let e: Vec<String> = r
        .errors
        .iter()
        .map(|p| format!("{:?} {p}", p.kind))
        .collect();
    let w: Vec<String> = r
        .warnings
        .iter()
        .map(|p| format!("{:?} {p}", p.kind))
        .collect();
    format!("errors: {e:#?}\nwarnings: {w:#?}")
}

/// Every error names `path`, at least one does, and there are no warnings.
fn assert_only(r: &CheckReport, path: &str, what: &str) {
    assert!(!r.errors.is_empty(), "{what}: nothing reported");
    assert!(
        r.errors.iter().all(|p| p.path == path),
        "{what}: errors other than {path}:\n{}",
        describe(r)
    );
    assert!(r.warnings.is_empty(), "{what}: warnings:\n{}", describe(r));
}

#[test]
fn intact_repository_has_no_problems() {
    let f = fixture();
    let r = run(&f, true);
    assert!(
        r.errors.is_empty() && r.warnings.is_empty(),
        "{}",
        describe(&r)
    );
    assert!(r.snapshots == 1 && r.trees >= 2, "counts {r:?}");
    let packs = paths_under(&f.b, "/packs/").len();
    assert!(
        packs >= 3 && r.packs == packs && r.packs_read == packs,
        "pack counts {r:?}"
    );
    assert!(r.blobs_checked >= 5, "blobs checked {}", r.blobs_checked);
}

#[test]
fn damaged_config_key_and_snapshot_are_named() {
    for d in [Damage::Flip(40), Damage::Truncate, Damage::Delete] {
        let f = fixture();
        damage(&f.b, "config", d);
        let r = run(&f, false);
        assert_only(&r, "config", &format!("config {d:?}"));
        assert!(
            r.errors[0].kind == ProblemKind::ConfigInvalid,
            "{}",
            describe(&r)
        );
    }
    for d in [Damage::Flip(200), Damage::Truncate] {
        let f = fixture();
        let key = one_path(&f.b, "keys/admin/");
        damage(&f.b, &key, d);
        let r = run(&f, false);
        assert_only(&r, &key, &format!("key file {d:?}"));
    }
    // A repository may legitimately keep its key outside (init --no-key-in-repo), so a
    // missing key file is a warning.
    let f = fixture();
    let key = one_path(&f.b, "keys/admin/");
    damage(&f.b, &key, Damage::Delete);
    let r = run(&f, false);
    assert!(r.errors.is_empty(), "{}", describe(&r));
    assert!(
        r.warnings.len() == 1 && r.warnings[0].kind == ProblemKind::NoKeyFile,
        "{}",
        describe(&r)
    );
    for d in [Damage::Flip(100), Damage::Truncate] {
        let f = fixture();
        let snap = one_path(&f.b, "/snapshots/");
        damage(&f.b, &snap, d);
        let r = run(&f, false);
        assert_only(&r, &snap, &format!("snapshot {d:?}"));
        assert!(
            r.errors
                .iter()
                .all(|p| p.kind == ProblemKind::SnapshotDamaged),
            "{}",
            describe(&r)
        );
    }
}

#[test]
fn damaged_index_files_are_named_and_their_blobs_traced_to_unindexed_packs() {
    for dir in ["/index/", "/tindex/"] {
        for d in [Damage::Flip(50), Damage::Truncate, Damage::Delete] {
            let f = fixture();
            let idx = one_path(&f.b, dir);
            damage(&f.b, &idx, d);
            let r = run(&f, false);
            let what = format!("{dir} {d:?}");
            // Its packs are now unindexed; the blobs snapshots reach in them are not lost,
            // and the errors say so.
            assert!(
                r.warnings
                    .iter()
                    .all(|p| p.kind == ProblemKind::UnindexedPack),
                "{what}: {}",
                describe(&r)
            );
            assert!(!r.warnings.is_empty(), "{what}: {}", describe(&r));
            for p in &r.errors {
                let named = p.path == idx && p.kind == ProblemKind::IndexFileDamaged;
                let traced = matches!(
                    p.kind,
                    ProblemKind::TreeMissing | ProblemKind::DataBlobMissing
                ) && p.detail.contains("survives in unindexed pack")
                    && p.snapshot.is_some();
                assert!(named || traced, "{what}: unexpected {p}\n{}", describe(&r));
            }
            let named = r.errors.iter().any(|p| p.path == idx);
            // A deleted file leaves no trace to name; its consequences are reported.
            assert!(
                named == !matches!(d, Damage::Delete) && !r.errors.is_empty(),
                "{what}: {}",
                describe(&r)
            );
        }
    }
}

#[test]
fn damaged_packs_are_named() {
    for kind in [PackKind::Group, PackKind::Private, PackKind::Tree] {
        for d in [Damage::Flip(usize::MAX), Damage::Truncate, Damage::Delete] {
            let f = fixture();
            let pack = pack_of(&f, kind);
            // usize::MAX flips the last byte: the trailer magic.
            damage(&f.b, &pack, d);
            let r = run(&f, false);
            assert_only(&r, &pack, &format!("{kind:?} pack {d:?}"));
            // A lost data pack also names the files it takes with it.
            if kind != PackKind::Tree && matches!(d, Damage::Delete) {
                assert!(
                    r.errors.iter().any(|p| p.kind == ProblemKind::DataBlobLost
                        && p.file
                            .as_deref()
                            .is_some_and(|f| f.ends_with(".bin") || f.ends_with(".pem"))),
                    "{kind:?} pack {d:?}: no lost file named\n{}",
                    describe(&r)
                );
            }
        }
    }
}

#[test]
fn flipped_tree_blob_is_found_by_the_structure_check() {
    let f = fixture();
    let pack = pack_of(&f, PackKind::Tree);
    damage(&f.b, &pack, Damage::Flip(10));
    let r = run(&f, false);
    assert_only(&r, &pack, "tree blob flip");
    assert!(
        r.errors
            .iter()
            .all(|p| p.kind == ProblemKind::TreeDamaged && p.snapshot.is_some()),
        "{}",
        describe(&r)
    );
}

#[test]
fn read_data_finds_a_flipped_data_byte_and_names_pack_offset_and_blob() {
    let f = fixture();
    let pack = pack_of(&f, PackKind::Group);
    let (files, _) = f.repo.read_index_files().unwrap();
    let entry = files
        .iter()
        .flat_map(|(_, x)| &x.packs)
        // The blob must be in the pack that is damaged: group blobs are spread at random
        // over two packs.
        .filter(|p| p.kind == PackKind::Group && pack.ends_with(&p.name.to_hex()))
        .flat_map(|p| &p.entries)
        .max_by_key(|e| e.slen)
        .copied()
        .unwrap();
    damage(
        &f.b,
        &pack,
        Damage::Flip((entry.offset + u64::from(entry.slen) / 2) as usize),
    );
    let r = run(&f, false);
    assert!(
        r.errors.is_empty() && r.warnings.is_empty(),
        "structure check cannot see data bytes: {}",
        describe(&r)
    );
    let r = run(&f, true);
    assert_only(&r, &pack, "data byte flip");
    let blob = r
        .errors
        .iter()
        .find(|p| p.kind == ProblemKind::BlobDamaged)
        .unwrap_or_else(|| panic!("no BlobDamaged: {}", describe(&r)));
    assert!(
        blob.blob == Some(entry.id) && blob.offset == Some(entry.offset),
        "wrong blob named: {blob}"
    );
    assert!(
        r.errors
            .iter()
            .any(|p| p.kind == ProblemKind::PackHashMismatch),
        "{}",
        describe(&r)
    );
    // The subset that excludes the pack reads nothing of it.
    let first = u32::from(u8::from_str_radix(&pack.rsplit('/').next().unwrap()[..2], 16).unwrap());
    let other = 2 - (first % 2); // the pack is in part (first % 2) + 1
    let o = CheckOptions {
        read_data: Some(Subset::Part { n: other, m: 2 }),
    };
    let r = check(&f.repo, &o, &NoCheckProgress).unwrap();
    assert!(r.errors.is_empty(), "{}", describe(&r));
}

#[test]
fn unindexed_pack_is_only_a_warning() {
    let mut f = fixture();
    let before = f.b.paths();
    let src2 = tempfile::tempdir().unwrap();
    write(&src2.path().join("other.bin"), &noise(9, 1 << 20));
    f.repo.load_index().unwrap();
    backup_of(&f.repo, vec![src2.path().to_path_buf()]);
    // What an interrupted backup leaves: its packs, without the index files or snapshot.
    for p in f.b.paths() {
        if !before.contains(&p) && !p.contains("/packs/") {
            f.b.remove(&p).unwrap();
        }
    }
    let r = run(&f, true);
    assert!(r.errors.is_empty(), "{}", describe(&r));
    assert!(
        !r.warnings.is_empty()
            && r.warnings
                .iter()
                .all(|p| p.kind == ProblemKind::UnindexedPack && !before.contains(&p.path)),
        "{}",
        describe(&r)
    );
}

#[test]
fn junk_is_a_warning_and_subsets_parse() {
    let f = fixture();
    f.b.put_raw("hosts/tmp-upload", vec![1, 2, 3]);
    let r = run(&f, false);
    assert!(r.errors.is_empty(), "{}", describe(&r));
    assert!(
        r.warnings.len() == 1
            && r.warnings[0].kind == ProblemKind::UnknownFile
            && r.warnings[0].path == "hosts/tmp-upload",
        "{}",
        describe(&r)
    );
    assert!("1/3".parse::<Subset>().unwrap() == Subset::Part { n: 1, m: 3 });
    assert!("10%".parse::<Subset>().unwrap() == Subset::Percent(10.0));
    for bad in ["0/3", "4/3", "0%", "101%", "x", "1/0"] {
        assert!(bad.parse::<Subset>().is_err(), "{bad} parsed");
    }
}
