//! cairn-backends: implementations of `cairn_core::backend::Backend`, and the decorators
//! every repository is opened through.
//!
//! - [`LocalBackend`]: a repository in a local directory, with durable atomic writes.
//! - [`SftpBackend`]: a repository on an SFTP server, written through temp files and rename.
//! - [`S3Backend`]: a repository under a prefix of an S3 or B2 bucket.
//! - Decorators, outermost first: [`RetryBackend`] (transient failures) →
//!   [`LimitBackend`] (connections, bandwidth) → [`AccountingBackend`] (requests and
//!   bytes by billing class) → the real backend.
//! - [`Location`]: parses a repository URL and opens its backend.

pub mod accounting;
pub mod limit;
pub mod local;
pub mod retry;
pub mod s3;
pub mod sftp;
pub mod url;

pub use accounting::AccountingBackend;
pub use limit::{LimitBackend, Limits};
pub use local::LocalBackend;
pub use retry::{RetryBackend, RetryPolicy};
pub use s3::S3Backend;
pub use sftp::SftpBackend;
pub use url::{BackendOptions, Location, UrlError};
