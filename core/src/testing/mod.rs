//! Test support shared by the engine's unit tests and every backend crate's tests.
//!
//! - [`memory::InMemoryBackend`]: a complete backend in a map, for engine tests that do
//!   not care about disks.
//! - [`faulty::FaultyBackend`]: a decorator that injects failures, transient errors and
//!   corrupted reads, for retry, check/repair and "killed mid-backup" tests.
//! - [`conformance::backend_conformance`]: the contract every backend must pass, run by
//!   each backend's own tests against a fresh instance per check.
//!
//! Compiled only for tests and with the `test-util` feature, so none of it ships.

pub mod conformance;
pub mod faulty;
pub mod memory;

pub use conformance::backend_conformance;
pub use faulty::{Corruption, FaultyBackend, Op};
pub use memory::InMemoryBackend;
