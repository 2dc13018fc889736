//! cairn-backends: implementations of `cairn_core::backend::Backend`.
//!
//! - [`LocalBackend`]: a repository in a local directory, with durable atomic writes.
//! - [`SftpBackend`]: a repository on an SFTP server, written through temp files and rename.

pub mod local;
pub mod sftp;

pub use local::LocalBackend;
pub use sftp::SftpBackend;
pub mod url;

pub use url::{BackendOptions, Location, UrlError};
