//! cairn-backends: implementations of `cairn_core::backend::Backend`.
//!
//! - [`LocalBackend`]: a repository in a local directory, with durable atomic writes.
//! - [`S3Backend`]: a repository under a prefix of an S3 or B2 bucket.

pub mod local;

pub use local::LocalBackend;
pub mod s3;

pub use s3::S3Backend;
pub mod url;

pub use url::{BackendOptions, Location, UrlError};
