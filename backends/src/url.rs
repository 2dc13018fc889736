//! Repository locations: parsing a URL into a backend, with credentials redacted in every
//! display.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use cairn_core::backend::Backend;

use crate::local::LocalBackend;
use crate::s3::S3Backend;
use crate::sftp::SftpBackend;

/// A parsed repository location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A local directory.
    Local(PathBuf),
    /// An SFTP location (user, host, port, path).
    Sftp {
        /// User name.
        user: Option<String>,
        /// Host name.
        host: String,
        /// Port.
        port: Option<u16>,
        /// Path on the server.
        path: String,
    },
    /// An S3 endpoint, bucket and prefix.
    S3 {
        /// Endpoint URL.
        endpoint: String,
        /// Bucket.
        bucket: String,
        /// Prefix inside the bucket.
        prefix: String,
    },
    /// A B2 bucket and prefix (through B2's S3-compatible API).
    B2 {
        /// Bucket.
        bucket: String,
        /// Prefix.
        prefix: String,
    },
}

/// A location that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// The text is not a location cairn understands.
    #[error("cannot parse repository location {0:?}: expected /path, local:/path, sftp:user@host:/path, sftp://user@host:port/path, s3:https://host/bucket/prefix or b2:bucket:/prefix")]
    Invalid(String),
    /// The location is understood but its backend is not built in yet.
    #[error("{0} repositories are not supported by this build of cairn yet")]
    Unsupported(&'static str),
    /// A `-o KEY=VALUE` option is malformed or unknown.
    #[error("backend option {0}")]
    Option(String),
    /// The backend could not be set up (credentials, connection, host key...).
    #[error("{0}")]
    Open(String),
}

/// Backend options from `-o KEY=VALUE` (restic's general backend-option flag), e.g.
/// `sftp.identity=/root/.ssh/id_ed25519`, `s3.region=eu-central-1`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendOptions {
    values: BTreeMap<String, String>,
}

impl BackendOptions {
    /// Parses `KEY=VALUE` strings.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, UrlError> {
        let mut values = BTreeMap::new();
        for item in items {
            let (k, v) = item
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| UrlError::Option(format!("{item:?} is not KEY=VALUE")))?;
            values.insert(k.trim().to_owned(), v.to_owned());
        }
        Ok(Self { values })
    }

    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Sets `key` (used by config-file profiles and tests).
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.values.insert(key.into(), value.into());
    }

    /// Every key, for rejecting unknown ones.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// Every key and value.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl Location {
    /// Parses a location.
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let invalid = || UrlError::Invalid(redact(s));
        if let Some(rest) = s.strip_prefix("local:") {
            return Ok(Self::Local(PathBuf::from(rest)));
        }
        if let Some(rest) = s.strip_prefix("sftp://") {
            let (auth, path) = rest.split_once('/').ok_or_else(invalid)?;
            let (user, hostport) = match auth.rsplit_once('@') {
                Some((u, h)) => (Some(u.to_owned()), h),
                None => (None, auth),
            };
            let (host, port) = match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p.parse().map_err(|_| invalid())?)),
                None => (hostport.to_owned(), None),
            };
            return Ok(Self::Sftp {
                user,
                host,
                port,
                path: format!("/{path}"),
            });
        }
        if let Some(rest) = s.strip_prefix("sftp:") {
            let (auth, path) = rest.split_once(':').ok_or_else(invalid)?;
            let (user, host) = match auth.rsplit_once('@') {
                Some((u, h)) => (Some(u.to_owned()), h.to_owned()),
                None => (None, auth.to_owned()),
            };
            return Ok(Self::Sftp {
                user,
                host,
                port: None,
                path: path.to_owned(),
            });
        }
        if let Some(rest) = s.strip_prefix("s3:") {
            let (scheme, rest) = rest.split_once("://").ok_or_else(invalid)?;
            let mut parts = rest.splitn(3, '/');
            let host = parts.next().filter(|h| !h.is_empty()).ok_or_else(invalid)?;
            let bucket = parts.next().filter(|b| !b.is_empty()).ok_or_else(invalid)?;
            return Ok(Self::S3 {
                endpoint: format!("{scheme}://{host}"),
                bucket: bucket.to_owned(),
                prefix: parts.next().unwrap_or("").trim_matches('/').to_owned(),
            });
        }
        if let Some(rest) = s.strip_prefix("b2:") {
            let (bucket, prefix) = rest.split_once(':').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid());
            }
            return Ok(Self::B2 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        if s.starts_with('/') || s.starts_with('.') || !s.contains(':') {
            return Ok(Self::Local(PathBuf::from(s)));
        }
        Err(invalid())
    }

    /// Opens the backend of this location.
    pub fn open(&self, opts: &BackendOptions) -> Result<Arc<dyn Backend>, UrlError> {
        match self {
            Self::Local(p) => Ok(Arc::new(LocalBackend::new(p.clone()))),
            Self::Sftp {
                user,
                host,
                port,
                path,
            } => Ok(Arc::new(SftpBackend::open(
                user.as_deref(),
                host,
                *port,
                path,
                opts,
            )?)),
            Self::S3 {
                endpoint,
                bucket,
                prefix,
            } => S3Backend::open_s3(endpoint, bucket, prefix, opts),
            Self::B2 { bucket, prefix } => S3Backend::open_b2(bucket, prefix, opts),
        }
    }
}

/// Removes a password from `user:password@` in a URL for display.
pub fn redact(s: &str) -> String {
    if let Some((scheme, rest)) = s.split_once("://") {
        if let Some((auth, tail)) = rest.split_once('@') {
            if let Some((user, _)) = auth.split_once(':') {
                return format!("{scheme}://{user}:***@{tail}");
            }
        }
    }
    s.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            Location::parse("/srv/repo").ok(),
            Some(Location::Local("/srv/repo".into()))
        );
        assert_eq!(
            Location::parse("local:/x").ok(),
            Some(Location::Local("/x".into()))
        );
        assert_eq!(
            Location::parse("sftp:backup@home:/repo").ok(),
            Some(Location::Sftp {
                user: Some("backup".into()),
                host: "home".into(),
                port: None,
                path: "/repo".into()
            })
        );
        assert_eq!(
            Location::parse("sftp://backup@home:2222/repo").ok(),
            Some(Location::Sftp {
                user: Some("backup".into()),
                host: "home".into(),
                port: Some(2222),
                path: "/repo".into()
            })
        );
        assert_eq!(
            Location::parse("s3:https://s3.example.com/bucket/a/b").ok(),
            Some(Location::S3 {
                endpoint: "https://s3.example.com".into(),
                bucket: "bucket".into(),
                prefix: "a/b".into()
            })
        );
        assert_eq!(
            Location::parse("b2:bucket:/laptop").ok(),
            Some(Location::B2 {
                bucket: "bucket".into(),
                prefix: "laptop".into()
            })
        );
        assert!(Location::parse("s3:nothing").is_err());
        assert_eq!(redact("s3:https://u:secret@h/b"), "s3:https://u:***@h/b");
    }
}
