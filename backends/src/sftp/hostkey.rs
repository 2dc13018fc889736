//! Host key checking against an OpenSSH `known_hosts` file. Never accepts an unknown key.
//!
//! libssh2 parses the entries (plain, `[host]:port` and hashed `|1|` names) and matches the
//! name, but compares the key without regard to its type: a host known only by its RSA key
//! that offers ed25519 would look like a *changed* key. So the file is split by key type
//! first: a mismatch among keys of the offered type is a changed key; a host known only by
//! keys of other types is unknown for this type, which is a different and far less alarming
//! message. Lines libssh2 cannot parse (key types it does not know) are skipped, as OpenSSH
//! skips them. `@revoked` keys are refused; `@cert-authority` lines are not supported and
//! ignored.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ssh2::{CheckResult, HashType, KnownHostFileKind, Session};

/// Why a server's host key was not accepted.
#[derive(Debug)]
pub(crate) enum HostKeyError {
    /// The server sent no host key (cannot happen after a successful handshake).
    NoKey,
    /// No entry for this host with the offered key type.
    Unknown {
        /// `host` or `[host]:port`.
        name: String,
        /// The port, for the suggested `ssh-keyscan` command.
        port: u16,
        /// The bare host, for the suggested command.
        host: String,
        /// Type and SHA256 fingerprint of the offered key.
        key: KeyDesc,
        /// The file that was searched.
        file: PathBuf,
        /// Whether the file exists at all.
        file_exists: bool,
        /// Whether the host is known with keys of other types.
        other_types: bool,
    },
    /// The file has a key of the same type for this host, and it is a different key.
    Changed {
        /// `host` or `[host]:port`.
        name: String,
        /// What the server offered.
        key: KeyDesc,
        /// The file holding the old key.
        file: PathBuf,
    },
    /// The offered key is listed as `@revoked`.
    Revoked {
        /// `host` or `[host]:port`.
        name: String,
        /// What the server offered.
        key: KeyDesc,
        /// The file with the revocation.
        file: PathBuf,
    },
    /// libssh2 could not run the check.
    Failed(String),
}

/// Type and fingerprint of a host key, printed the way OpenSSH prints them.
#[derive(Debug)]
pub(crate) struct KeyDesc {
    key_type: String,
    fingerprint: String,
}

impl fmt::Display for KeyDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} SHA256:{}", self.key_type, self.fingerprint)
    }
}

impl fmt::Display for HostKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostKeyError::NoKey => write!(f, "the server sent no host key"),
            HostKeyError::Unknown {
                name,
                port,
                host,
                key,
                file,
                file_exists,
                other_types,
            } => {
                let f_desc = file.display();
                write!(f, "host key of {name} is not known ({key}); ")?;
                if !file_exists {
                    write!(f, "{f_desc} does not exist")?;
                } else if *other_types {
                    write!(f, "{f_desc} only has keys of other types for this host")?;
                } else {
                    write!(f, "it is not in {f_desc}")?;
                }
                let p = if *port == 22 {
                    String::new()
                } else {
                    format!("-p {port} ")
                };
                write!(
                    f,
                    ". Check that fingerprint with the server's administrator, then add the key with: \
                     ssh-keyscan {p}{host} >> {f_desc} (or connect once with ssh and accept it)"
                )
            }
            HostKeyError::Changed { name, key, file } => write!(
                f,
                "WARNING: THE HOST KEY OF {name} HAS CHANGED! The server offered {key}, \
                 which differs from the key recorded in {}. Someone may be intercepting the \
                 connection (man in the middle), or the server was reinstalled. Refusing to \
                 connect. If the change is expected, remove the old entry with \
                 ssh-keygen -R '{name}' -f {} and add the new key.",
                file.display(),
                file.display()
            ),
            HostKeyError::Revoked { name, key, file } => write!(
                f,
                "host key of {name} ({key}) is marked @revoked in {}; refusing to connect",
                file.display()
            ),
            HostKeyError::Failed(msg) => write!(f, "cannot check the host key: {msg}"),
        }
    }
}

impl std::error::Error for HostKeyError {}

/// `known_hosts` lines split by what they mean for a key of one type.
#[derive(Debug, Default, PartialEq, Eq)]
struct Split<'a> {
    /// Plain entries for keys of the offered type.
    same_type: Vec<&'a str>,
    /// Plain entries for keys of other types.
    other_types: Vec<&'a str>,
    /// Base64 keys marked `@revoked`.
    revoked: Vec<&'a str>,
}

fn split_lines<'a>(text: &'a str, key_type: &str) -> Split<'a> {
    let mut out = Split::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let Some(marker) = fields.first().filter(|m| m.starts_with('@')) {
            if *marker == "@revoked" {
                if let Some(key) = fields.get(3) {
                    out.revoked.push(key);
                }
            }
            continue;
        }
        match fields.get(1) {
            Some(t) if *t == key_type => out.same_type.push(line),
            Some(_) => out.other_types.push(line),
            None => {}
        }
    }
    out
}

/// The key type name at the start of an SSH public key blob (`string` = u32 length + bytes).
fn blob_key_type(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(blob.get(4..4usize.checked_add(len)?)?).ok()
}

/// Checks the session's host key (after the handshake, before authentication).
pub(crate) fn verify(
    sess: &Session,
    host: &str,
    port: u16,
    file: &Path,
) -> Result<(), HostKeyError> {
    let (blob, _) = sess.host_key().ok_or(HostKeyError::NoKey)?;
    let key_type = blob_key_type(blob).unwrap_or("unknown").to_owned();
    let fingerprint = sess
        .host_key_hash(HashType::Sha256)
        .map(|h| base64::engine::general_purpose::STANDARD_NO_PAD.encode(h))
        .unwrap_or_default();
    let key = KeyDesc {
        key_type: key_type.clone(),
        fingerprint,
    };
    let name = if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    };
    let (text, file_exists) = match std::fs::read_to_string(file) {
        Ok(t) => (t, true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), false),
        Err(e) => {
            return Err(HostKeyError::Failed(format!(
                "cannot read {}: {e}",
                file.display()
            )))
        }
    };
    let split = split_lines(&text, &key_type);
    let offered_b64 = base64::engine::general_purpose::STANDARD.encode(blob);
    if split.revoked.iter().any(|k| *k == offered_b64) {
        return Err(HostKeyError::Revoked {
            name,
            key,
            file: file.to_path_buf(),
        });
    }
    match check(sess, &split.same_type, host, port, blob)? {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => Err(HostKeyError::Changed {
            name,
            key,
            file: file.to_path_buf(),
        }),
        CheckResult::NotFound | CheckResult::Failure => {
            // Any entry for this host among the other types shows up as a mismatch.
            let other_types = matches!(
                check(sess, &split.other_types, host, port, blob)?,
                CheckResult::Mismatch | CheckResult::Match
            );
            Err(HostKeyError::Unknown {
                name,
                port,
                host: host.to_owned(),
                key,
                file: file.to_path_buf(),
                file_exists,
                other_types,
            })
        }
    }
}

/// Runs libssh2's check over the given lines only.
fn check(
    sess: &Session,
    lines: &[&str],
    host: &str,
    port: u16,
    blob: &[u8],
) -> Result<CheckResult, HostKeyError> {
    let mut kh = sess
        .known_hosts()
        .map_err(|e| HostKeyError::Failed(e.to_string()))?;
    for line in lines {
        // A line libssh2 cannot parse (unsupported key type, bad base64) is skipped, as
        // OpenSSH skips it; it can only make a host unknown, never accept a key.
        let _ = kh.read_str(line, KnownHostFileKind::OpenSSH);
    }
    Ok(kh.check_port(host, port, blob))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_by_key_type_and_marker() {
        let text = "\
# comment

[h]:2222 ssh-ed25519 AAAAed c1
|1|salt=|hash= ssh-ed25519 AAAAhashed
h ssh-rsa AAAArsa
@revoked * ssh-ed25519 AAAAbad
@cert-authority *.example ssh-rsa AAAAca
garbage
";
        let s = split_lines(text, "ssh-ed25519");
        assert_eq!(
            s.same_type,
            vec![
                "[h]:2222 ssh-ed25519 AAAAed c1",
                "|1|salt=|hash= ssh-ed25519 AAAAhashed"
            ]
        );
        assert_eq!(s.other_types, vec!["h ssh-rsa AAAArsa"]);
        assert_eq!(s.revoked, vec!["AAAAbad"]);
    }

    #[test]
    fn key_type_comes_from_the_blob() {
        let mut blob = 11u32.to_be_bytes().to_vec();
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&[0, 0, 0, 32]);
        assert_eq!(blob_key_type(&blob), Some("ssh-ed25519"));
        assert_eq!(blob_key_type(&[0, 0, 0, 200, b'x']), None);
        assert_eq!(blob_key_type(&[0, 0]), None);
    }

    #[test]
    fn unknown_key_message_says_how_to_add_it() {
        let e = HostKeyError::Unknown {
            name: "[127.0.0.1]:2222".into(),
            port: 2222,
            host: "127.0.0.1".into(),
            key: KeyDesc {
                key_type: "ssh-ed25519".into(),
                fingerprint: "abc".into(),
            },
            file: "/k".into(),
            file_exists: true,
            other_types: false,
        };
        let msg = e.to_string();
        assert!(msg.contains("ssh-keyscan -p 2222 127.0.0.1 >> /k"), "{msg}");
        assert!(msg.contains("SHA256:abc"), "{msg}");
    }
}
