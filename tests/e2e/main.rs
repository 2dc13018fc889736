//! End-to-end tests: the real `cairn` binary, run as a subprocess against temporary
//! repositories. Build it first: `cargo build -p cairn && cargo test -p cairn-e2e`
//! (or point `CAIRN_BIN` at a binary).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod billing;
mod compare;
#[path = "../../backends/tests/support/counting_proxy.rs"]
mod counting_proxy;
mod errors;
mod faults;
mod forget;
mod interrupt;
mod mount;
mod ops;
mod proxy;
mod prune;
mod repair;
mod roundtrip;
mod servers;
mod support;
mod terminal;
