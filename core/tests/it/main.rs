//! Integration tests of the engine against the in-memory backend: one binary, one module
//! per concern.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backup_restore;
mod browse;
mod bundle;
mod cache;
mod check;
mod check_prune;
mod forget;
mod prune;
mod repair;
mod support;
