//! Nothing here: the crate exists for `benches/micro.rs` (criterion) and sits next to
//! `compare.sh`, the whole-process comparison with restic and borg. See docs/benchmarks.md.
