//! Keeps `docs/format.md` true to the bytes.
//!
//! Every fenced block opened with ```` ```text vector:NAME ```` in the format document is a test
//! vector. Each non-empty line is `key = value` (text after ` #` is a comment). A vector's
//! handler below reads its inputs, recomputes every output with cairn-core's own encoders, and
//! compares. A key that no handler reads is an error too, so the document cannot carry a value
//! that nothing checks.
//!
//! Values: lowercase hex (bytes), decimal integers, `"quoted strings"`, or comma-separated
//! lists of those. When a vector fails, the message lists every mismatch with the value the
//! encoder produced.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use cairn_core::chunker::{cut_points, ChunkerParams, GearTable};
use cairn_core::compress;
use cairn_core::config::{Config, GroupRef};
use cairn_core::crypto::blob::{self, BlobType};
use cairn_core::crypto::keys::{ctx, dk, kh, AdminSecret};
use cairn_core::crypto::sealed::{self, Expect, FileType, SealedHeader};
use cairn_core::crypto::Key32;
use cairn_core::index::{IndexFile, IndexPack};
use cairn_core::pack::{padme, PackEntry, PackHeader, PackKind};
use cairn_core::prune::plan::{CondemnedPack, Plan, SweepRecord, UnindexedPack};
use cairn_core::session::{SessionMarker, SessionState};
use cairn_core::snapshot::{Snapshot, Summary};
use cairn_core::tree::{ContentRef, Node, NodeKind, Scopes, Slice, Tree};
use cairn_core::{Id, Id16};

/// One vector block: its name, its `key = value` pairs, which keys were used, and mismatches.
struct Vector {
    name: String,
    values: BTreeMap<String, String>,
    used: BTreeSet<String>,
    errors: Vec<String>,
}

impl Vector {
    fn raw(&mut self, key: &str) -> String {
        self.used.insert(key.to_owned());
        match self.values.get(key) {
            Some(v) => v.clone(),
            None => panic!("vector:{} has no `{key}`", self.name),
        }
    }

    fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    fn bytes(&mut self, key: &str) -> Vec<u8> {
        let v = self.raw(key);
        hex::decode(&v).unwrap_or_else(|_| panic!("vector:{} `{key}` is not hex: {v}", self.name))
    }

    fn arr<const N: usize>(&mut self, key: &str) -> [u8; N] {
        let b = self.bytes(key);
        b.try_into()
            .unwrap_or_else(|_| panic!("vector:{} `{key}` must be {N} bytes", self.name))
    }

    fn u64(&mut self, key: &str) -> u64 {
        let v = self.raw(key);
        v.parse()
            .unwrap_or_else(|_| panic!("vector:{} `{key}` is not an integer: {v}", self.name))
    }

    fn i64(&mut self, key: &str) -> i64 {
        let v = self.raw(key);
        v.parse()
            .unwrap_or_else(|_| panic!("vector:{} `{key}` is not an integer: {v}", self.name))
    }

    fn str(&mut self, key: &str) -> String {
        let v = self.raw(key);
        unquote(&v).unwrap_or_else(|| panic!("vector:{} `{key}` must be quoted: {v}", self.name))
    }

    fn list(&mut self, key: &str) -> Vec<String> {
        let v = self.raw(key);
        if v.is_empty() {
            return vec![];
        }
        v.split(',')
            .map(|s| {
                let s = s.trim();
                unquote(s).unwrap_or_else(|| s.to_owned())
            })
            .collect()
    }

    /// Compares a computed output with the document's value.
    fn check(&mut self, key: &str, got: impl Into<String>) {
        let got = got.into();
        let want = self.raw(key);
        if want != got {
            self.errors.push(format!(
                "vector:{} `{key}`\n    document: {want}\n    computed: {got}",
                self.name
            ));
        }
    }

    fn check_hex(&mut self, key: &str, got: &[u8]) {
        self.check(key, hex::encode(got));
    }
}

fn unquote(s: &str) -> Option<String> {
    s.strip_prefix('"')?.strip_suffix('"').map(str::to_owned)
}

fn parse(doc: &str) -> Vec<Vector> {
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.trim().strip_prefix("```text vector:") else {
            continue;
        };
        let mut values = BTreeMap::new();
        for l in lines.by_ref() {
            let l = l.trim();
            if l.starts_with("```") {
                break;
            }
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (k, v) = l
                .split_once(" = ")
                .unwrap_or_else(|| panic!("vector:{name}: line without ` = `: {l}"));
            let v = match v.find(" #") {
                Some(i) if !v.starts_with('"') => &v[..i],
                _ => v,
            };
            let prev = values.insert(k.trim().to_owned(), v.trim().to_owned());
            assert!(prev.is_none(), "vector:{name}: `{k}` given twice");
        }
        out.push(Vector {
            name: name.trim().to_owned(),
            values,
            used: BTreeSet::new(),
            errors: Vec::new(),
        });
    }
    out
}

fn key32(v: &mut Vector, k: &str) -> Key32 {
    Key32::from_bytes(v.arr(k))
}

/// `derive`: the key hierarchy from the admin secret.
fn derive(v: &mut Vector) {
    let a_bytes: [u8; 32] = v.arr("admin_secret");
    let a = AdminSecret::from_key(Key32::from_bytes(a_bytes));
    let gid = Id16(v.arr("group_id"));
    let gep = v.u64("group_epoch") as u32;
    let hid = Id16(v.arr("host_id"));
    let hep = v.u64("host_epoch") as u32;

    // The intermediate secrets, computed here from the documented construction (the library
    // never exposes them), then tied to the library's outputs below.
    let group_root = blake3::derive_key("cairn repo-v1 group root", &a_bytes);
    let mut m = b"group".to_vec();
    m.extend_from_slice(&gid.0);
    m.extend_from_slice(&gep.to_le_bytes());
    let g = *blake3::keyed_hash(&group_root, &m).as_bytes();
    let host_root = blake3::derive_key("cairn repo-v1 host root", &a_bytes);
    let mut m = b"host".to_vec();
    m.extend_from_slice(&hid.0);
    m.extend_from_slice(&hep.to_le_bytes());
    let h = *blake3::keyed_hash(&host_root, &m).as_bytes();
    v.check_hex("group_root", &group_root);
    v.check_hex("group_secret", &g);
    v.check_hex("host_root", &host_root);
    v.check_hex("host_secret", &h);

    let gk = a.group_keys(gid, gep);
    let hk = a.host_keys(hid, hep);
    assert_eq!(dk(ctx::DATA_ID, &g).expose(), gk.k_id.expose());
    assert_eq!(dk(ctx::HOST_SEAL, &h).expose(), hk.k_meta.expose());
    v.check_hex("k_admin_seal", a.seal_key().expose());
    v.check_hex("admin_pub", a.signing_key().verifying_key().as_bytes());
    v.check_hex("k_id", gk.k_id.expose());
    v.check_hex("k_conv", gk.k_conv.expose());
    v.check_hex("k_chunk", gk.k_chunk.expose());
    v.check_hex("k_sidx", gk.k_sidx.expose());
    v.check_hex("k_meta", hk.k_meta.expose());
    v.check_hex("k_tid", hk.k_tid.expose());
    v.check_hex("k_tkey", hk.k_tkey.expose());
    v.check_hex("k_pconv", hk.k_pconv.expose());
    v.check_hex("k_pid", hk.k_pid.expose());
}

/// `detseal`: ids, AAD, synthetic nonce and stored bytes of one group data blob.
fn detseal(v: &mut Vector) {
    let k_conv = key32(v, "k_conv");
    let k_id = key32(v, "k_id");
    let repo_id = Id16(v.arr("repo_id"));
    let btype = BlobType::from_u8(v.u64("btype") as u8).expect("btype");
    let scope_id = Id16(v.arr("scope_id"));
    let scope_epoch = v.u64("scope_epoch") as u32;
    let level = v.i64("zstd_level") as i32;
    let plain = v.str("plaintext").into_bytes();

    let (ck, id) = blob::content_key_and_id(&k_conv, &k_id, &plain);
    v.check_hex("ck", &ck);
    v.check_hex("id", &id.0);
    let aad = blob::aad(&repo_id, btype, &scope_id, scope_epoch, &id);
    v.check_hex("aad", &aad);
    v.check_hex("k_enc", dk(ctx::BLOB_ENC, &ck).expose());
    let k_siv = dk(ctx::BLOB_SIV, &ck);
    v.check_hex("k_siv", k_siv.expose());
    let c = compress::encode(&plain, level, 0);
    v.check_hex("c", &c);
    let mut siv_input = aad.to_vec();
    siv_input.extend_from_slice(&c);
    v.check_hex("nonce", &kh(&k_siv, &siv_input)[..12]);
    let stored = blob::seal_in_place(&ck, &aad, compress::encode(&plain, level, 13));
    v.check_hex("stored", &stored);
    v.check("stored_len", stored.len().to_string());
    v.check_hex("cid", blake3::hash(&stored).as_bytes());
    // And it opens again, passing the content check.
    let opened = blob::open(&ck, &aad, &stored).expect("opens");
    let back = compress::decode(&opened, plain.len()).expect("decodes");
    assert_eq!(kh(&k_conv, &back), ck);
}

fn node_kind(n: u64) -> NodeKind {
    match n {
        1 => NodeKind::File,
        2 => NodeKind::Dir,
        3 => NodeKind::Symlink,
        4 => NodeKind::CharDev,
        5 => NodeKind::BlockDev,
        6 => NodeKind::Fifo,
        _ => panic!("node kind {n}"),
    }
}

/// `tree`: the canonical encoding of a small tree, its id and its content key.
fn tree(v: &mut Vector) {
    let scopes = Scopes {
        group: (Id16(v.arr("group_id")), v.u64("group_epoch") as u32),
        host: (Id16(v.arr("host_id")), v.u64("host_epoch") as u32),
    };
    let mut nodes = Vec::new();
    for i in 0.. {
        let p = format!("node{i}.");
        if !v.has(&format!("{p}name")) {
            break;
        }
        let mut n = Node {
            name: v.str(&format!("{p}name")).into_bytes(),
            kind: Some(node_kind(v.u64(&format!("{p}kind")))),
            mode: v.u64(&format!("{p}mode")) as u32,
            uid: v.u64(&format!("{p}uid")) as u32,
            gid: v.u64(&format!("{p}gid")) as u32,
            mtime_ns: v.i64(&format!("{p}mtime_ns")),
            ctime_ns: v.i64(&format!("{p}ctime_ns")),
            size: v.u64(&format!("{p}size")),
            nlink: v.u64(&format!("{p}nlink")),
            inode: v.u64(&format!("{p}inode")),
            dev: v.u64(&format!("{p}dev")),
            ..Node::default()
        };
        for (field, slot) in [("user", &mut n.user), ("group", &mut n.group)] {
            if v.has(&format!("{p}{field}")) {
                *slot = v.str(&format!("{p}{field}"));
            }
        }
        if v.has(&format!("{p}target")) {
            n.target = v.str(&format!("{p}target")).into_bytes();
        }
        if v.has(&format!("{p}subtree")) {
            n.subtree = Some(Id(v.arr(&format!("{p}subtree"))));
        }
        if v.has(&format!("{p}content")) {
            for item in v.list(&format!("{p}content")) {
                let parts: Vec<&str> = item.split(':').collect();
                let ck: [u8; 32] = hex::decode(parts[1]).unwrap().try_into().unwrap();
                let slice = (parts.len() == 5).then(|| Slice {
                    off: parts[3].parse().unwrap(),
                    tag: hex::decode(parts[4]).unwrap().try_into().unwrap(),
                });
                n.content.push(ContentRef {
                    scope: parts[0].parse().unwrap(),
                    ck,
                    plen: parts[2].parse().unwrap(),
                    slice,
                });
            }
        }
        nodes.push(n);
    }
    let t = Tree { scopes, nodes };
    let enc = t.encode();
    v.check_hex("cbor", &enc);
    assert_eq!(Tree::decode(&enc).expect("decodes"), t);
    let k_tid = key32(v, "k_tid");
    let k_tkey = key32(v, "k_tkey");
    let tid = kh(&k_tid, &enc);
    v.check_hex("tid", &tid);
    v.check_hex("ck", &kh(&k_tkey, &tid));
}

fn sealed_header(v: &mut Vector) -> SealedHeader {
    SealedHeader {
        ftype: v.u64("ftype") as u8,
        repo_id: Id16(v.arr("repo_id")),
        writer_id: Id16(v.arr("writer_id")),
        scope_id: Id16(v.arr("scope_id")),
        scope_epoch: v.u64("scope_epoch") as u32,
        seq: v.u64("seq"),
        salt: v.arr("salt"),
    }
}

/// `sealed`: a sealed file (a snapshot) with a fixed salt.
fn sealed_file(v: &mut Vector) {
    let k_scope = key32(v, "k_scope");
    let hdr = sealed_header(v);
    let payload = v.bytes("payload");
    let level = v.i64("zstd_level") as i32;
    v.check_hex("header", &hdr.encode());
    let mut m = b"SEF1-key".to_vec();
    m.push(hdr.ftype);
    m.extend_from_slice(&hdr.salt);
    v.check_hex("k_file", &kh(&k_scope, &m));
    let file = sealed::seal(&k_scope, &hdr, &payload, level);
    v.check_hex("file", &file);
    v.check_hex("name", blake3::hash(&file).as_bytes());
    let expect = Expect {
        ftype: FileType::Snapshot,
        repo_id: hdr.repo_id,
        writer_id: Some(hdr.writer_id),
    };
    let (h, p) = sealed::open(&k_scope, &expect, &file).expect("opens");
    assert_eq!((h, p), (hdr, payload));
}

/// `snapshot`: the canonical encoding of a snapshot.
fn snapshot(v: &mut Vector) {
    let mut summary = Summary::default();
    for (k, slot) in [
        ("summary.files_new", &mut summary.files_new),
        ("summary.bytes_read", &mut summary.bytes_read),
        ("summary.total_files", &mut summary.total_files),
        ("summary.total_bytes", &mut summary.total_bytes),
    ] {
        *slot = v.u64(k);
    }
    let s = Snapshot {
        host_id: Id16(v.arr("host_id")),
        time_ns: v.i64("time_ns"),
        tree: Id(v.arr("tree")),
        paths: v.list("paths"),
        hostname: v.str("hostname"),
        username: v.str("username"),
        tags: v.list("tags"),
        parent: None,
        program: v.str("program"),
        summary,
    };
    let enc = s.encode();
    v.check_hex("cbor", &enc);
    assert_eq!(Snapshot::decode(&enc).expect("decodes"), s);
}

/// `plan`: a prune plan body with one condemned pack.
fn plan(v: &mut Vector) {
    let p = Plan {
        gen: v.u64("gen"),
        published_ms: v.i64("published_ms"),
        grace_ms: v.u64("grace_ms"),
        packs: vec![CondemnedPack {
            pack: cairn_core::id::PackId::new(Id16(v.arr("pack.host")), Id(v.arr("pack.name"))),
            len: v.u64("pack.len"),
            ids: vec![Id(v.arr("pack.id"))],
            unindexed: false,
        }],
        unindexed_seen: vec![UnindexedPack {
            pack: cairn_core::id::PackId::new(Id16(v.arr("seen.host")), Id(v.arr("seen.name"))),
            len: v.u64("seen.len"),
            first_seen_ms: v.i64("seen.first_seen_ms"),
        }],
    };
    let enc = p.encode();
    v.check_hex("cbor", &enc);
    assert_eq!(Plan::decode(&enc).expect("decodes"), p);
}

/// `sweep_record`: a sweep record body with one deleted pack.
fn sweep_record(v: &mut Vector) {
    let r = SweepRecord {
        gen: v.u64("gen"),
        plan: Id(v.arr("plan")),
        finished_ms: v.i64("finished_ms"),
        deleted: vec![cairn_core::id::PackId::new(
            Id16(v.arr("deleted.host")),
            Id(v.arr("deleted.name")),
        )],
        rescued: v.u64("rescued"),
        month: v.u64("month") as u32,
        month_egress: v.u64("month_egress"),
    };
    let enc = r.encode();
    v.check_hex("cbor", &enc);
    assert_eq!(SweepRecord::decode(&enc).expect("decodes"), r);
}

/// `session_marker`: a committed session's last marker.
fn session_marker(v: &mut Vector) {
    let m = SessionMarker {
        sid: Id16(v.arr("sid")),
        started_ms: v.i64("started_ms"),
        at_ms: v.i64("at_ms"),
        gen_seen: v.u64("gen_seen"),
        state: match v.u64("state") {
            0 => SessionState::Running,
            1 => SessionState::Committed,
            _ => SessionState::Aborted,
        },
        snapshot: Some(cairn_core::id::SnapshotId(Id(v.arr("snapshot")))),
    };
    let enc = m.encode();
    v.check_hex("cbor", &enc);
    assert_eq!(SessionMarker::decode(&enc).expect("decodes"), m);
}

/// `config`: the signed config file.
fn config(v: &mut Vector) {
    let a = AdminSecret::from_key(key32(v, "admin_secret"));
    let sk = a.signing_key();
    let cfg = Config {
        version: 1,
        repo_id: Id16(v.arr("repo_id")),
        admin_pub: sk.verifying_key().to_bytes(),
        groups: vec![GroupRef {
            id: Id16(v.arr("group_id")),
            epoch: v.u64("group_epoch") as u32,
        }],
        chunker: ChunkerParams {
            min: v.u64("chunker_min") as u32,
            avg: v.u64("chunker_avg") as u32,
            max: v.u64("chunker_max") as u32,
            level: v.u64("chunker_level") as u8,
        },
        zstd_level: v.i64("zstd_level") as i32,
        pack_target: v.u64("pack_target"),
        private_globs: v.list("private_globs"),
        private_small_file_max: v.u64("private_small_file_max"),
    };
    let body = cfg.encode_body();
    v.check_hex("cbor", &body);
    let file = cfg.to_file(&sk);
    v.check_hex("signature", &file[8 + body.len()..8 + body.len() + 64]);
    v.check_hex("file", &file);
    v.check_hex("name_b3", blake3::hash(&file).as_bytes());
    assert_eq!(Config::from_file(&file).expect("verifies"), cfg);
}

/// `chunker`: cut points for a fixed key and small parameters.
fn chunker(v: &mut Vector) {
    let gear = GearTable::from_key(&v.arr("k_chunk"));
    let params = ChunkerParams {
        min: v.u64("min") as u32,
        avg: v.u64("avg") as u32,
        max: v.u64("max") as u32,
        level: v.u64("level") as u8,
    };
    let seed = v.str("input_xof_seed");
    let mut data = vec![0u8; v.u64("input_len") as usize];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut data);
    let cuts = cut_points(&data, &gear, &params).expect("valid params");
    let cuts: Vec<String> = cuts.iter().map(ToString::to_string).collect();
    v.check("cut_ends", cuts.join(", "));
}

/// `padme`: padded pack lengths.
fn padme_vector(v: &mut Vector) {
    let keys: Vec<String> = v.values.keys().cloned().collect();
    for k in keys {
        let len: u64 = k
            .strip_prefix("padme(")
            .and_then(|s| s.strip_suffix(')'))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("vector:padme: bad key {k}"));
        v.check(&k, padme(len).to_string());
    }
}

fn entries(v: &mut Vector, prefix: &str) -> Vec<PackEntry> {
    let mut out = Vec::new();
    for i in 0.. {
        let k = format!("{prefix}{i}");
        if !v.has(&k) {
            break;
        }
        let raw = v.raw(&k);
        let f: Vec<&str> = raw.split(':').collect();
        out.push(PackEntry {
            id: Id(hex::decode(f[0]).unwrap().try_into().unwrap()),
            cid: Some(Id(hex::decode(f[1]).unwrap().try_into().unwrap())),
            offset: f[2].parse().unwrap(),
            slen: f[3].parse().unwrap(),
            plen: f[4].parse().unwrap(),
        });
    }
    out
}

fn pack_kind(n: u64) -> PackKind {
    PackKind::from_u8(n as u8).expect("pack kind")
}

/// `pack_header`: the plaintext of a pack header.
fn pack_header(v: &mut Vector) {
    let h = PackHeader {
        kind: pack_kind(v.u64("kind")),
        pad_len: v.u64("pad_len"),
        entries: entries(v, "entry"),
    };
    let enc = h.encode();
    v.check_hex("cbor", &enc);
    let data_len = h.entries.iter().map(|e| u64::from(e.slen)).sum::<u64>() + h.pad_len;
    assert_eq!(PackHeader::decode(&enc, data_len).expect("decodes"), h);
}

/// `index`: the plaintext of an index file listing one pack.
fn index(v: &mut Vector) {
    let f = IndexFile {
        writer: Id16(v.arr("writer")),
        created_ms: v.i64("created_ms"),
        packs: vec![IndexPack {
            name: Id(v.arr("pack.name")),
            len: v.u64("pack.len"),
            kind: pack_kind(v.u64("pack.kind")),
            entries: entries(v, "pack.entry"),
        }],
    };
    let enc = f.encode();
    v.check_hex("cbor", &enc);
    assert_eq!(IndexFile::decode(&enc).expect("decodes"), f);
}

#[test]
fn format_md_vectors_match_the_encoders() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/format.md");
    let doc = std::fs::read_to_string(path).expect("docs/format.md is readable");
    let mut vectors = parse(&doc);
    let mut seen = BTreeSet::new();
    let mut errors = Vec::new();
    for v in &mut vectors {
        match v.name.as_str() {
            "derive" => derive(v),
            "detseal" => detseal(v),
            "tree" | "tree_bundle" => tree(v),
            "sealed" => sealed_file(v),
            "snapshot" => snapshot(v),
            "config" => config(v),
            "chunker" => chunker(v),
            "padme" => padme_vector(v),
            "pack_header" => pack_header(v),
            "index" => index(v),
            "plan" => plan(v),
            "sweep_record" => sweep_record(v),
            "session_marker" => session_marker(v),
            other => panic!("unknown vector:{other}"),
        }
        assert!(
            seen.insert(v.name.clone()),
            "vector:{} appears twice",
            v.name
        );
        for k in v.values.keys() {
            if !v.used.contains(k) {
                errors.push(format!(
                    "vector:{} `{k}` is not checked by anything",
                    v.name
                ));
            }
        }
        errors.append(&mut v.errors);
    }
    for required in [
        "derive",
        "detseal",
        "tree",
        "tree_bundle",
        "sealed",
        "snapshot",
        "config",
        "chunker",
        "padme",
        "pack_header",
        "index",
        "plan",
        "sweep_record",
        "session_marker",
    ] {
        if !seen.contains(required) {
            errors.push(format!("docs/format.md lost vector:{required}"));
        }
    }
    assert!(errors.is_empty(), "\n{}\n", errors.join("\n"));
}
