//! Writes the seed corpus of every target from the real encoders, so the fuzzer starts from
//! valid files (a sealed snapshot, a whole pack, a key file...) rather than from nothing.
//!
//! `cargo run --release --example gen_seeds [target...]` (run by hand, not in CI: the key
//! file seed has a fresh creation time, so every run changes the committed corpus; name the
//! targets whose seeds you mean to write, or none for all). It overwrites only the `seed-*`
//! files of `corpus/<target>/`; inputs the fuzzer found stay.

use std::fs;
use std::path::Path;

use cairn_core::cbor::Enc;
use cairn_core::chunker::ChunkerParams;
use cairn_core::compress;
use cairn_core::config::{Config, GroupRef};
use cairn_core::crypto::blob;
use cairn_core::crypto::keyfile::{KdfParams, KeyFile, MIN_M_KIB};
use cairn_core::crypto::keys::AdminSecret;
use cairn_core::crypto::sealed::{self, FileType, SealedHeader};
use cairn_core::crypto::{Key32, Password};
use cairn_core::index::{IndexFile, IndexPack};
use cairn_core::pack::writer::PackWriter;
use cairn_core::pack::{PackEntry, PackHeader, PackKind};
use cairn_core::prune::plan::{CondemnedPack, Plan, SweepRecord, UnindexedPack};
use cairn_core::session::{SessionMarker, SessionState};
use cairn_core::snapshot::{Snapshot, Summary};
use cairn_core::tree::{ContentRef, Node, NodeKind, Scopes, Slice, Tree};
use cairn_core::{Id, Id16};
use cairn_fuzz::{blob_aad, expect, scope_key, CK, GROUP, PASSWORD, REPO, WRITER};

type Res = Result<(), Box<dyn std::error::Error>>;

fn put(target: &str, name: &str, bytes: &[u8]) -> Res {
    let only: Vec<String> = std::env::args().skip(1).collect();
    if !only.is_empty() && !only.iter().any(|t| t == target) {
        return Ok(());
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(format!("seed-{name}")), bytes)?;
    Ok(())
}

fn with_mode(mode: u8, bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(bytes);
    v
}

fn sealed_header(ftype: FileType, writer: Id16) -> SealedHeader {
    SealedHeader {
        ftype: ftype as u8,
        repo_id: REPO,
        writer_id: writer,
        scope_id: WRITER,
        scope_epoch: 1,
        seq: 7,
        salt: [8; 32],
    }
}

fn snapshot(parent: bool) -> Snapshot {
    Snapshot {
        host_id: WRITER,
        time_ns: 1_700_000_000_123_456_789,
        tree: Id([9; 32]),
        paths: vec!["/etc".into(), "/home/simon".into()],
        hostname: "laptop".into(),
        username: "simon".into(),
        tags: vec!["daily".into()],
        parent: parent.then_some(cairn_core::id::SnapshotId(Id([10; 32]))),
        program: "cairn 0.1.0".into(),
        summary: Summary {
            files_new: 5,
            bytes_read: 1 << 20,
            errors: vec![("/x".into(), "permission denied".into())],
            ..Summary::default()
        },
    }
}

fn tree() -> Tree {
    let node = |name: &[u8], kind| Node {
        name: name.to_vec(),
        kind: Some(kind),
        mode: 0o644,
        uid: 1000,
        gid: 1000,
        user: "simon".into(),
        group: "users".into(),
        mtime_ns: 1_700_000_000_000_000_000,
        ctime_ns: 1_700_000_000_000_000_001,
        size: 0,
        nlink: 1,
        inode: 42,
        dev: 2049,
        ..Node::default()
    };
    let mut file = node(b"a.txt", NodeKind::File);
    file.size = 70000;
    file.content = vec![
        ContentRef::whole(0, [11; 32], 65536),
        ContentRef::whole(1, [12; 32], 4000),
        ContentRef {
            scope: 1,
            ck: [14; 32],
            plen: 464,
            slice: Some(Slice {
                off: 1024,
                tag: [15; 16],
            }),
        },
    ];
    file.xattrs = vec![(b"user.x".to_vec(), b"1".to_vec())];
    let mut dir = node(b"dir", NodeKind::Dir);
    dir.subtree = Some(Id([13; 32]));
    let mut link = node(b"link", NodeKind::Symlink);
    link.target = b"a.txt".to_vec();
    let mut dev = node(b"null", NodeKind::CharDev);
    dev.rdev = 0x103;
    let pipe = node(b"pipe", NodeKind::Fifo);
    Tree {
        scopes: Scopes {
            group: (GROUP, 1),
            host: (WRITER, 1),
        },
        nodes: vec![file, dir, link, dev, pipe],
    }
}

fn index_file() -> IndexFile {
    let entry = |i: u8, offset, slen| PackEntry {
        id: Id([i; 32]),
        cid: Some(Id([i + 1; 32])),
        offset,
        slen,
        plen: slen * 2,
    };
    IndexFile {
        writer: WRITER,
        created_ms: 1_700_000_000_000,
        packs: vec![
            IndexPack {
                name: Id([20; 32]),
                len: 1000,
                kind: PackKind::Group,
                entries: vec![entry(30, 0, 400), entry(32, 400, 500)],
            },
            IndexPack {
                name: Id([21; 32]),
                len: 300,
                kind: PackKind::Tree,
                entries: vec![entry(30, 0, 100)],
            },
        ],
    }
}

fn plan() -> Plan {
    Plan {
        gen: 3,
        published_ms: 1_700_000_000_000,
        grace_ms: 86_400_000,
        packs: vec![
            CondemnedPack {
                pack: cairn_core::id::PackId::new(WRITER, Id([20; 32])),
                len: 1000,
                ids: vec![Id([30; 32]), Id([32; 32])],
                unindexed: false,
            },
            CondemnedPack {
                pack: cairn_core::id::PackId::new(WRITER, Id([22; 32])),
                len: 500,
                ids: vec![],
                unindexed: true,
            },
        ],
        unindexed_seen: vec![UnindexedPack {
            pack: cairn_core::id::PackId::new(WRITER, Id([24; 32])),
            len: 300,
            first_seen_ms: 1_699_000_000_000,
        }],
    }
}

fn pack() -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let key = scope_key();
    let dir = std::env::temp_dir();
    let mut w = PackWriter::new(PackKind::Group, &dir)?;
    for (i, plain) in [&b"first blob first blob first blob"[..], b"second"]
        .into_iter()
        .enumerate()
    {
        let c = compress::encode(plain, 3, blob::SEAL_OVERHEAD - 16);
        let s = blob::seal_in_place(&CK, &blob_aad(), c);
        w.add(Id([40 + i as u8; 32]), plain.len() as u32, &s)?;
    }
    let hdr = sealed_header(FileType::GroupPackHeader, WRITER);
    let mut exp = expect(FileType::GroupPackHeader);
    exp.writer_id = None;
    let done = w.finish(
        |plain| sealed::seal(&key, &hdr, plain, 3),
        |s| sealed::open(&key, &exp, s).map(|(_, p)| p),
    )?;
    Ok(fs::read(&done.path)?)
}

/// Rewrites the committed seed corpus from the real encoders.
fn main() -> Res {
    // keyfile: the minimum KDF cost, so the target's full unwrap path runs on it.
    let kdf = KdfParams {
        salt: "AwMDAwMDAwMDAwMDAwMDAw==".into(),
        ..KdfParams::with_cost(MIN_M_KIB, 1)
    };
    let kf = KeyFile::wrap(
        "admin",
        REPO,
        Id16([14; 16]),
        "simon@laptop".into(),
        kdf,
        &Password::new(PASSWORD.into()),
        &[15; 32],
    )?;
    put("keyfile", "admin", &kf.to_json()?)?;

    // config: signed by a fixed admin key.
    let admin = AdminSecret::from_key(Key32::from_bytes([16; 32]));
    let signer = admin.signing_key();
    let cfg = Config {
        version: 1,
        repo_id: REPO,
        admin_pub: signer.verifying_key().to_bytes(),
        groups: vec![GroupRef {
            id: GROUP,
            epoch: 1,
        }],
        chunker: ChunkerParams::default(),
        zstd_level: 3,
        pack_target: 16 << 20,
        private_globs: vec!["/etc/**".into(), "**/.ssh/**".into()],
        private_small_file_max: 65536,
    };
    put("config", "signed", &cfg.to_file(&signer))?;

    // sealed: a real sealed snapshot, zstd and raw.
    let key = scope_key();
    let snap = snapshot(true).encode();
    let hdr = sealed_header(FileType::Snapshot, WRITER);
    put(
        "sealed",
        "snapshot-zstd",
        &sealed::seal(&key, &hdr, &snap, 3),
    )?;
    put(
        "sealed",
        "snapshot-raw",
        &sealed::seal(&key, &hdr, &snap, 0),
    )?;

    // blob: sealed blobs (mode 0) and bare `codec || body` (mode 1, bound 1 MiB).
    let text = b"hello hello hello hello hello hello hello hello hello hello".repeat(20);
    for (name, level) in [("zstd", 3), ("raw", 0)] {
        let c = compress::encode(&text, level, blob::SEAL_OVERHEAD - 16);
        let s = blob::seal_in_place(&CK, &blob_aad(), c);
        put("blob", &format!("sealed-{name}"), &with_mode(0b110, &s))?;
        put(
            "blob",
            &format!("codec-{name}"),
            &with_mode(0b111, &compress::encode(&text, level, 0)),
        )?;
    }

    // pack_header: a whole pack (mode 0) and a bare header plaintext (mode 1).
    put("pack_header", "pack", &with_mode(0, &pack()?))?;
    let ph = PackHeader {
        kind: PackKind::Tree,
        pad_len: 24,
        entries: vec![
            PackEntry {
                id: Id([50; 32]),
                cid: Some(Id([51; 32])),
                offset: 0,
                slen: 100,
                plen: 300,
            },
            PackEntry {
                id: Id([52; 32]),
                cid: Some(Id([53; 32])),
                offset: 100,
                slen: 60,
                plen: 60,
            },
        ],
    };
    let mut plain = 184u64.to_le_bytes().to_vec();
    plain.extend_from_slice(&ph.encode());
    put("pack_header", "plain", &with_mode(1, &plain))?;

    // index_file, tree, snapshot: canonical payloads.
    put("index_file", "two-packs", &index_file().encode())?;
    put("tree", "mixed", &tree().encode())?;
    let mut empty = tree();
    empty.nodes.clear();
    put("tree", "empty", &empty.encode())?;
    put("snapshot", "with-parent", &snapshot(true).encode())?;
    put("snapshot", "no-parent", &snapshot(false).encode())?;

    // cbor: a map of every kind of item, with ops that read it in order.
    let mut e = Enc::new();
    e.map(6);
    e.key(0).u64(300);
    e.key(1).i64(-70000);
    e.key(2).bytes(&[1; 16]);
    e.key(3).text("héllo");
    e.key(4).array(2).bool(true).bool(false);
    e.key(5).u64(1 << 40);
    let ops = [10u8, 11, 0, 11, 3, 11, 5, 11, 7, 11, 9, 8, 8, 11, 0, 14];
    let mut seed = vec![(ops.len() - 1) as u8];
    seed.extend_from_slice(&ops);
    seed.extend_from_slice(&e.buf);
    put("cbor", "map", &seed)?;
    let mut seed = vec![2u8, 12, 10, 15];
    seed.extend_from_slice(&snapshot(true).encode());
    put("cbor", "snapshot", &seed)?;

    // plan, sweep_record, session_marker: canonical payloads (the admin signature and the
    // seal around them are checked before decode, so the fuzzer starts at the payload).
    put("plan", "two-packs", &plan().encode())?;
    let mut empty = plan();
    empty.packs.clear();
    put("plan", "empty", &empty.encode())?;
    let record = SweepRecord {
        gen: 3,
        plan: Id([60; 32]),
        finished_ms: 1_700_000_100_000,
        deleted: vec![
            cairn_core::id::PackId::new(WRITER, Id([20; 32])),
            cairn_core::id::PackId::new(GROUP, Id([21; 32])),
        ],
        rescued: 2,
        month: 202311,
        month_egress: 1 << 20,
    };
    put("sweep_record", "two-deleted", &record.encode())?;
    let marker = |state, snapshot| SessionMarker {
        sid: Id16([61; 16]),
        started_ms: 1_700_000_000_000,
        at_ms: 1_700_000_060_000,
        gen_seen: 2,
        state,
        snapshot,
    };
    put(
        "session_marker",
        "running",
        &marker(SessionState::Running, None).encode(),
    )?;
    put(
        "session_marker",
        "committed",
        &marker(
            SessionState::Committed,
            Some(cairn_core::id::SnapshotId(Id([62; 32]))),
        )
        .encode(),
    )?;
    Ok(())
}
