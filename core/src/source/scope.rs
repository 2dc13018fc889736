//! The private-scope matcher (DESIGN.md §4, crypto.md §3.5).
//!
//! A file in the private scope is chunked and encrypted with the host's keys, so its chunks
//! never dedup across hosts and their ids reveal nothing to another host of the repository.
//! That costs little for small files (dedup gains are small anyway, and small files are where
//! guessable secrets live: configs, keys, tokens) and for well-known secret locations.
//!
//! Globs here use globset syntax over the whole absolute path, not restic's exclude syntax:
//! `*` and `?` stop at `/`, `**` spans components, and a glob must start with `/` or `**`
//! because every path it meets is absolute. Matching is on raw bytes, so non-UTF-8 names work.

use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// Files strictly smaller than this (in bytes) are private whatever their path.
pub const DEFAULT_SMALL_FILE_MAX: u64 = 64 * 1024;

/// The default private globs, as stored in the repository config. `/etc/shadow*`,
/// `/etc/gshadow*` and `/etc/ssh/*key*` are covered by `/etc/**`.
pub fn default_globs() -> Vec<String> {
    [
        "/etc/**",
        "/root/**",
        "**/.ssh/**",
        "**/.gnupg/**",
        "**/.password-store/**",
        "**/*.key",
        "**/*.pem",
    ]
    .iter()
    .map(|g| (*g).to_owned())
    .collect()
}

/// A private-scope glob that was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// The glob does not parse.
    #[error("invalid private-scope glob \"{glob}\": {source}")]
    BadGlob {
        /// The glob as configured.
        glob: String,
        /// The parser's complaint.
        #[source]
        source: globset::Error,
    },
    /// The glob could never match an absolute path.
    #[error("private-scope glob \"{glob}\" must start with / or ** (paths are absolute)")]
    NotAbsolute {
        /// The glob as configured.
        glob: String,
    },
}

/// Decides whether a file is stored in the private scope.
#[derive(Clone, Debug)]
pub struct PrivateScope {
    globs: GlobSet,
    small_file_max: u64,
}

impl PrivateScope {
    /// The built-in policy: [`default_globs`] and [`DEFAULT_SMALL_FILE_MAX`].
    pub fn default_rules() -> PrivateScope {
        match PrivateScope::new(&default_globs(), DEFAULT_SMALL_FILE_MAX) {
            Ok(scope) => scope,
            // The defaults are constants covered by tests; failing closed (everything
            // private) is the safe answer if that ever breaks.
            Err(_) => PrivateScope {
                globs: GlobSet::empty(),
                small_file_max: u64::MAX,
            },
        }
    }

    /// Builds a policy from configured globs and the small-file threshold (files with
    /// `size < small_file_max` are private; 0 disables the size rule).
    pub fn new(globs: &[String], small_file_max: u64) -> Result<PrivateScope, ScopeError> {
        let mut set = GlobSetBuilder::new();
        for glob in globs {
            if !(glob.starts_with('/') || glob.starts_with("**")) {
                return Err(ScopeError::NotAbsolute { glob: glob.clone() });
            }
            let compiled = GlobBuilder::new(glob)
                // Without this, `/etc/*` would also match `/etc/a/b`.
                .literal_separator(true)
                .build()
                .map_err(|source| ScopeError::BadGlob {
                    glob: glob.clone(),
                    source,
                })?;
            set.add(compiled);
        }
        let globs = set.build().map_err(|source| ScopeError::BadGlob {
            glob: globs.join(", "),
            source,
        })?;
        Ok(PrivateScope {
            globs,
            small_file_max,
        })
    }

    /// Whether the file at absolute `path`, `size` bytes long, goes to the private scope.
    pub fn is_private(&self, path: &Path, size: u64) -> bool {
        size < self.small_file_max || self.globs.is_match(path)
    }
}

impl Default for PrivateScope {
    fn default() -> Self {
        PrivateScope::default_rules()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    const BIG: u64 = 10 << 20;

    #[test]
    fn defaults_compile_and_round_trip() {
        let built = PrivateScope::new(&default_globs(), DEFAULT_SMALL_FILE_MAX);
        assert!(
            built.is_ok(),
            "default globs must compile: {:?}",
            built.err()
        );
        let scope = PrivateScope::default_rules();
        assert!(
            !scope.is_private(Path::new("/usr/share/big.bin"), BIG),
            "defaults not fail-closed"
        );
    }

    #[test]
    fn default_private_paths() {
        let scope = PrivateScope::default_rules();
        for p in [
            "/etc/fstab",
            "/etc/shadow",
            "/etc/gshadow-",
            "/etc/ssh/ssh_host_ed25519_key",
            "/root/.bash_history",
            "/root/deep/dir/file",
            "/home/u/.ssh/id_ed25519",
            "/home/u/.gnupg/private-keys-v1.d/x.key",
            "/home/u/.password-store/bank.gpg",
            "/srv/tls/server.key",
            "/server.pem",
            "/opt/app/certs/chain.pem",
        ] {
            assert!(scope.is_private(Path::new(p), BIG), "{p} should be private");
        }
    }

    #[test]
    fn default_shared_paths() {
        let scope = PrivateScope::default_rules();
        for p in [
            "/usr/share/big.bin",
            "/home/u/video.mkv",
            "/etcetera/file",
            "/home/u/ssh/notes",
            "/home/u/keys.txt",
            "/home/u/x.key.bak",
            "/rooted/file",
        ] {
            assert!(!scope.is_private(Path::new(p), BIG), "{p} should be shared");
        }
    }

    #[test]
    fn size_rule() {
        let scope = PrivateScope::default_rules();
        let p = Path::new("/usr/share/big.bin");
        assert!(scope.is_private(p, 100), "a 100-byte file is private");
        assert!(scope.is_private(p, 0), "an empty file is private");
        assert!(
            scope.is_private(p, DEFAULT_SMALL_FILE_MAX - 1),
            "just under 64 KiB is private"
        );
        assert!(
            !scope.is_private(p, DEFAULT_SMALL_FILE_MAX),
            "exactly 64 KiB is shared"
        );
        let no_size = PrivateScope::new(&[], 0);
        assert!(no_size.is_ok(), "empty policy builds");
        if let Ok(s) = no_size {
            assert!(!s.is_private(p, 0), "threshold 0 disables the size rule");
        }
    }

    #[test]
    fn single_star_stops_at_slash() {
        let scope = PrivateScope::new(&["/data/*".to_owned()], 0);
        assert!(scope.is_ok(), "glob builds");
        if let Ok(s) = scope {
            assert!(
                s.is_private(Path::new("/data/a"), BIG),
                "direct child matches"
            );
            assert!(
                !s.is_private(Path::new("/data/a/b"), BIG),
                "grandchild does not"
            );
        }
    }

    #[test]
    fn non_utf8_paths() {
        let scope = PrivateScope::default_rules();
        let ssh = Path::new(OsStr::from_bytes(b"/home/\xff\xfe/.ssh/id_rsa"));
        assert!(
            scope.is_private(ssh, BIG),
            "non-UTF-8 home with .ssh is private"
        );
        let other = Path::new(OsStr::from_bytes(b"/home/u/\xff.bin"));
        assert!(
            !scope.is_private(other, BIG),
            "non-UTF-8 big file elsewhere is shared"
        );
    }

    #[test]
    fn bad_globs_are_refused() {
        let bad = PrivateScope::new(&["/etc/[".to_owned()], 0);
        assert!(
            matches!(bad, Err(ScopeError::BadGlob { ref glob, .. }) if glob == "/etc/["),
            "unclosed class must be refused with its glob: {bad:?}"
        );
        let rel = PrivateScope::new(&["*.key".to_owned()], 0);
        assert!(
            matches!(rel, Err(ScopeError::NotAbsolute { .. })),
            "relative glob must be refused: {rel:?}"
        );
    }
}
