//! cairn-backends: implementations of `cairn_core::backend::Backend`.
//!
//! - [`LocalBackend`]: a repository in a local directory, with durable atomic writes.

pub mod local;

pub use local::LocalBackend;
pub mod url;

pub use url::{BackendOptions, Location, UrlError};
