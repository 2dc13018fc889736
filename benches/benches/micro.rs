//! Micro-benchmarks of the per-byte hot paths of a backup, each reported as MB/s (decimal)
//! or lookups/s: chunking, compress+seal, open+decompress, keyed BLAKE3, index lookups.
//!
//! `cargo bench -p cairn-benches` (add `-- --quick` for a short run). Single-threaded: these
//! are per-core numbers; docs/benchmarks.md relates them to the whole-process results.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::io::Cursor;
use std::sync::Arc;

use cairn_core::chunker::{cut_points, Chunker, ChunkerParams, GearTable};
use cairn_core::compress;
use cairn_core::crypto::blob::{self, BlobType};
use cairn_core::crypto::keys::kh;
use cairn_core::crypto::Key32;
use cairn_core::index::{IndexFile, IndexPack, MasterIndex};
use cairn_core::pack::{PackEntry, PackKind};
use cairn_core::{Id, Id16};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const MIB: usize = 1024 * 1024;

/// Deterministic, fast pseudo-random bytes (splitmix64): incompressible, and the same on
/// every run so chunk boundaries (and so timings) are comparable between runs.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&r.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// splitmix64, for the generators below.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Text shaped like source code or documentation: skewed word frequencies and 30% of lines
/// repeating an earlier line. zstd -3 shrinks it about 3.6x at about the speed it manages on
/// cairn's own `core/src` (measured with `zstd -b3` on the same machine).
fn text_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed);
    let vocab: Vec<Vec<u8>> = (0..1024)
        .map(|_| {
            let n = 2 + (r.next() % 8) as usize;
            (0..n).map(|_| b'a' + (r.next() % 26) as u8).collect()
        })
        .collect();
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut out = Vec::with_capacity(len + 128);
    while out.len() < len {
        let line = if !lines.is_empty() && r.unit() < 0.3 {
            let u = r.unit();
            lines[(u * u * lines.len() as f64) as usize].clone()
        } else {
            let words = 4 + (r.next() % 9) as usize;
            let mut l = Vec::new();
            for w in 0..words {
                if w > 0 {
                    l.push(b' ');
                }
                let u = r.unit();
                l.extend_from_slice(&vocab[(u * u * u * 1024.0) as usize]);
            }
            l
        };
        out.extend_from_slice(&line);
        out.push(b'\n');
        lines.push(line);
    }
    out.truncate(len);
    out
}

fn key(b: u8) -> [u8; 32] {
    [b; 32]
}

fn chunker(c: &mut Criterion) {
    let data = random_bytes(64 * MIB, 1);
    let gear = Arc::new(GearTable::from_key(&key(7)));
    let params = ChunkerParams::default();
    let mut g = c.benchmark_group("chunker");
    g.throughput(Throughput::BytesDecimal(data.len() as u64));
    g.sample_size(10);
    // The streaming driver, as the archiver uses it (includes copying each chunk out).
    g.bench_function("stream_64MiB", |b| {
        b.iter(|| {
            let mut ch = Chunker::new(Cursor::new(&data[..]), gear.clone(), &params).unwrap();
            let mut n = 0usize;
            while let Some(chunk) = ch.next_chunk().unwrap() {
                n += chunk.len();
            }
            black_box(n)
        })
    });
    // Cut points over a slice: the Gear scan alone.
    g.bench_function("cut_points_64MiB", |b| {
        b.iter(|| black_box(cut_points(&data, &gear, &params).unwrap()))
    });
    g.finish();
}

fn seal_open(c: &mut Criterion) {
    let ck = key(3);
    let aad = blob::aad(
        &Id16([1; 16]),
        BlobType::GroupData,
        &Id16([2; 16]),
        0,
        &Id([4; 32]),
    );
    for (name, plain) in [
        ("random", random_bytes(MIB, 2)),
        ("text", text_bytes(MIB, 3)),
    ] {
        let mut g = c.benchmark_group(format!("blob_1MiB_{name}"));
        g.throughput(Throughput::BytesDecimal(plain.len() as u64));
        g.bench_function("seal", |b| {
            b.iter(|| {
                let buf = compress::encode(black_box(&plain), 3, 13);
                black_box(blob::seal_in_place(&ck, &aad, buf))
            })
        });
        let stored = blob::seal_in_place(&ck, &aad, compress::encode(&plain, 3, 13));
        eprintln!(
            "blob_1MiB_{name}: {} -> {} bytes stored",
            plain.len(),
            stored.len()
        );
        g.bench_function("open", |b| {
            b.iter(|| {
                let c = blob::open(&ck, &aad, black_box(&stored)).unwrap();
                black_box(compress::decode(&c, plain.len()).unwrap())
            })
        });
        // The parts, to see where seal time goes.
        g.bench_function("zstd3_encode_only", |b| {
            b.iter(|| black_box(compress::encode(black_box(&plain), 3, 13)))
        });
        g.bench_function("seal_only_no_zstd", |b| {
            b.iter_batched(
                || compress::encode(&plain, 0, 13),
                |buf| black_box(blob::seal_in_place(&ck, &aad, buf)),
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

fn blake3_keyed(c: &mut Criterion) {
    let data = random_bytes(MIB, 5);
    let k = Key32::from_bytes(key(9));
    let mut g = c.benchmark_group("blake3_keyed_1MiB");
    g.throughput(Throughput::BytesDecimal(data.len() as u64));
    g.bench_function("kh", |b| b.iter(|| black_box(kh(&k, black_box(&data)))));
    g.finish();
}

/// One million blobs in 1M / 16 packs (16 blobs of ~1 MiB per pack, as the archiver writes).
fn index_file(n: usize) -> (IndexFile, Vec<Id>) {
    let ids: Vec<Id> = random_bytes(n * 32, 6)
        .chunks_exact(32)
        .map(|c| Id::from_slice(c).unwrap())
        .collect();
    let names = random_bytes(n.div_ceil(16) * 32, 8);
    let packs = ids
        .chunks(16)
        .zip(names.chunks_exact(32))
        .map(|(ids, name)| {
            let entries = ids
                .iter()
                .enumerate()
                .map(|(i, id)| PackEntry {
                    id: *id,
                    cid: Some(*id),
                    offset: (i * MIB) as u64,
                    slen: MIB as u32,
                    plen: MIB as u32,
                })
                .collect();
            IndexPack {
                name: Id::from_slice(name).unwrap(),
                len: (16 * MIB) as u64,
                kind: PackKind::Group,
                entries,
            }
        })
        .collect();
    let f = IndexFile {
        writer: Id16([1; 16]),
        created_ms: 0,
        packs,
    };
    (f, ids)
}

fn index(c: &mut Criterion) {
    const N: usize = 1_000_000;
    const BATCH: usize = 1000;
    let (file, ids) = index_file(N);
    let mut g = c.benchmark_group("master_index_1M");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("add_file_finalize", |b| {
        b.iter(|| {
            let mut m = MasterIndex::new();
            m.add_file(&file);
            m.finalize();
            black_box(m.blob_count())
        })
    });
    let mut m = MasterIndex::new();
    m.add_file(&file);
    m.finalize();
    assert_eq!(m.blob_count(), N);
    // Random order, so lookups miss the CPU cache as they would in a real backup.
    let order: Vec<usize> = random_bytes(BATCH * 8, 10)
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()) as usize % N)
        .collect();
    let misses: Vec<Id> = random_bytes(BATCH * 32, 11)
        .chunks_exact(32)
        .map(|c| Id::from_slice(c).unwrap())
        .collect();
    g.sample_size(50);
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("lookup_hit_x1000", |b| {
        b.iter(|| {
            let mut s = 0u64;
            for &i in &order {
                s += m.lookup(&ids[i]).unwrap().offset;
            }
            black_box(s)
        })
    });
    g.bench_function("lookup_miss_x1000", |b| {
        b.iter(|| {
            let mut s = 0usize;
            for id in &misses {
                s += usize::from(m.contains(id));
            }
            black_box(s)
        })
    });
    g.finish();
}

criterion_group!(benches, chunker, seal_open, blake3_keyed, index);
criterion_main!(benches);
