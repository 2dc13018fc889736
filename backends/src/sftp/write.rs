//! The write path: temporary file, upload, fsync, rename, and what to do when the final
//! name already exists (the policy is in the parent module's docs).

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::Ordering;

use cairn_core::backend::{layout, BackendError, BackendErrorKind, WriteBody};
use ssh2::{File, OpenFlags, OpenType, Sftp};

use super::errors::{is_sftp_status, is_unsupported, ssh_err, ssh_error_kind};
use super::{err, io_other, SftpBackend, SftpError, CHUNK, TMP_PREFIX};

impl SftpBackend {
    /// Creates `rel_dir` and its missing parents below the root (not the root itself,
    /// which `create` makes). Tries the deepest directory first: after a failed temp-file
    /// open, usually only the last one or two levels are missing. Another session creating
    /// the same directory at the same time is fine.
    fn mkdir_p(&self, sftp: &Sftp, rel_dir: &str, path: &str) -> Result<(), BackendError> {
        let full = self.server_path(rel_dir);
        match sftp.mkdir(&full, 0o755) {
            Ok(()) => Ok(()),
            Err(e) if ssh_error_kind(&e) == BackendErrorKind::NotFound => {
                match rel_dir.rsplit_once('/') {
                    Some((parent, _)) => {
                        self.mkdir_p(sftp, parent, path)?;
                        self.mkdir_one(sftp, rel_dir, path)
                    }
                    // The root itself is missing: the repository was never created.
                    None => Err(ssh_err("write", path, e)),
                }
            }
            Err(e) => self.exists_as_dir(sftp, rel_dir, path, e),
        }
    }

    fn mkdir_one(&self, sftp: &Sftp, rel_dir: &str, path: &str) -> Result<(), BackendError> {
        match sftp.mkdir(&self.server_path(rel_dir), 0o755) {
            Ok(()) => Ok(()),
            Err(e) => self.exists_as_dir(sftp, rel_dir, path, e),
        }
    }

    /// After a failed mkdir: fine if the directory is there (OpenSSH reports EEXIST as a
    /// generic failure), otherwise the mkdir error stands.
    fn exists_as_dir(
        &self,
        sftp: &Sftp,
        rel_dir: &str,
        path: &str,
        mkdir_err: ssh2::Error,
    ) -> Result<(), BackendError> {
        match sftp.stat(&self.server_path(rel_dir)) {
            Ok(st) if st.is_dir() => Ok(()),
            Ok(_) => Err(err(
                BackendErrorKind::Other,
                "write",
                path,
                SftpError::NotADir(rel_dir.to_owned()),
            )),
            Err(_) => {
                let kind = ssh_error_kind(&mkdir_err);
                let dir = self.server_path(rel_dir).display().to_string();
                Err(err(
                    kind,
                    "write",
                    path,
                    SftpError::MkDir {
                        dir,
                        source: mkdir_err,
                    },
                ))
            }
        }
    }

    /// Writes `body` to `tmp` (a fresh exclusive file), fsyncs and closes it.
    fn upload(
        &self,
        sftp: &Sftp,
        file: &mut File,
        body: &WriteBody<'_>,
        path: &str,
    ) -> Result<(), BackendError> {
        let mut written = 0u64;
        let res = match body {
            WriteBody::Bytes(b) => file.write_all(b).map(|()| written = b.len() as u64),
            WriteBody::File { .. } | WriteBody::Paced { .. } => {
                let mut src = body.open().map_err(|e| io_other("write", path, e))?;
                // Bounded: a whole pack is never held in memory.
                let mut buf = vec![
                    0u8;
                    CHUNK
                        .min(usize::try_from(body.len()).unwrap_or(CHUNK))
                        .max(1)
                ];
                loop {
                    let n = match src.read(&mut buf) {
                        Ok(0) => break Ok(()),
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        // The local spool file failed: not the server's fault.
                        Err(e) => return Err(io_other("write", path, e)),
                    };
                    if let Err(e) = file.write_all(&buf[..n]) {
                        break Err(e);
                    }
                    written += n as u64;
                }
            }
        };
        if let Err(e) = res {
            return Err(self.write_error(
                sftp,
                file,
                body.len() - written.min(body.len()),
                path,
                e,
            ));
        }
        if written != body.len() {
            let e = SftpError::LengthMismatch {
                expected: body.len(),
                actual: written,
            };
            return Err(err(BackendErrorKind::Other, "write", path, e));
        }
        if !self.no_fsync.load(Ordering::Relaxed) {
            match file.fsync() {
                Ok(()) => {}
                // The server cannot fsync (not OpenSSH, or an old one): the rename still
                // makes the write atomic, only not durable against a server crash.
                Err(e) if is_unsupported(&e) => self.no_fsync.store(true, Ordering::Relaxed),
                // No poisoning here, unlike the local backend: the file whose fsync failed
                // is discarded, never renamed into place, and a retry writes a new one; the
                // retried fsync of the *same* dirty pages is what must never be trusted.
                Err(e) => return Err(ssh_err("write", path, e)),
            }
        }
        file.close().map_err(|e| ssh_err("write", path, e))
    }

    /// A failed upload write: dead connection, full disk, or some other server failure.
    /// OpenSSH reports ENOSPC as a generic failure, so free space is asked for
    /// (`statvfs@openssh.com`) to tell a full disk apart.
    fn write_error(
        &self,
        sftp: &Sftp,
        file: &mut File,
        remaining: u64,
        path: &str,
        e: io::Error,
    ) -> BackendError {
        let base = self.stream_error(sftp, "write", path, e);
        if base.kind != BackendErrorKind::Other {
            return base;
        }
        if let Ok(vfs) = file.statvfs() {
            let avail = vfs.f_bavail.saturating_mul(vfs.f_frsize);
            if avail < remaining.max(1) {
                let source = match base.source {
                    Some(s) => io::Error::other(s),
                    None => io::Error::other("write failed"),
                };
                let e = SftpError::Full { avail, source };
                return err(BackendErrorKind::NoSpace, "write", path, e);
            }
        }
        base
    }

    /// The rename onto `full` failed. If the target exists, decide by the policy in the
    /// module docs whether the write has in effect already happened.
    fn resolve_existing(
        &self,
        sftp: &Sftp,
        path: &str,
        full: &Path,
        body: &WriteBody<'_>,
        rename_err: ssh2::Error,
    ) -> Result<(), BackendError> {
        if !is_sftp_status(&rename_err) {
            return Err(ssh_err("write", path, rename_err));
        }
        let st = match sftp.stat(full) {
            Ok(st) if st.is_file() => st,
            _ => return Err(ssh_err("write", path, rename_err)),
        };
        let size = st.size.unwrap_or(u64::MAX);
        if size == body.len() {
            if layout::parse_host_file(path).is_some() {
                return Ok(());
            }
            if let WriteBody::Bytes(want) = body {
                let mut f = sftp.open(full).map_err(|e| ssh_err("write", path, e))?;
                let mut have = Vec::with_capacity(want.len());
                f.read_to_end(&mut have)
                    .map_err(|e| self.stream_error(sftp, "write", path, e))?;
                if have == *want {
                    return Ok(());
                }
            }
        }
        Err(err(
            BackendErrorKind::AlreadyExists,
            "write",
            path,
            SftpError::Exists { size },
        ))
    }

    /// The rename of an exclusive create onto `full` failed: `AlreadyExists` if something
    /// is there now, else the rename's own error.
    fn taken(&self, sftp: &Sftp, path: &str, full: &Path, rename_err: ssh2::Error) -> BackendError {
        if !is_sftp_status(&rename_err) {
            return ssh_err("write_new", path, rename_err);
        }
        match sftp.lstat(full) {
            Ok(st) => err(
                BackendErrorKind::AlreadyExists,
                "write_new",
                path,
                SftpError::Exists {
                    size: st.size.unwrap_or(0),
                },
            ),
            Err(_) => ssh_err("write_new", path, rename_err),
        }
    }

    /// Uploads `body` to a temporary file and renames it to `path`. When the name is
    /// taken, a plain write follows the policy in the module docs; an `exclusive` one
    /// (`write_new`) always fails with `AlreadyExists`, which OpenSSH's rename makes
    /// atomic (see docs/internals.md).
    pub(super) fn write_on(
        &self,
        sftp: &Sftp,
        path: &str,
        body: &WriteBody<'_>,
        exclusive: bool,
    ) -> Result<(), BackendError> {
        let full = self.full("write", path)?;
        let rel_dir = path.rsplit_once('/').map(|(d, _)| d);
        let mut rnd = [0u8; 8];
        getrandom::getrandom(&mut rnd)
            .map_err(|e| err(BackendErrorKind::Other, "write", path, SftpError::Random(e)))?;
        let tmp_rel = match rel_dir {
            Some(d) => format!("{d}/{TMP_PREFIX}{}", hex::encode(rnd)),
            None => format!("{TMP_PREFIX}{}", hex::encode(rnd)),
        };
        let tmp = self.server_path(&tmp_rel);
        let open = || {
            sftp.open_mode(
                &tmp,
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
                0o644,
                OpenType::File,
            )
        };
        let mut file = match open() {
            Ok(f) => f,
            Err(e) if ssh_error_kind(&e) == BackendErrorKind::NotFound => {
                match rel_dir {
                    Some(d) => self.mkdir_p(sftp, d, path)?,
                    None => return Err(ssh_err("write", path, e)),
                }
                open().map_err(|e| ssh_err("write", path, e))?
            }
            Err(e) => return Err(ssh_err("write", path, e)),
        };
        let res = self.upload(sftp, &mut file, body, path);
        drop(file);
        // Ok(true): the target already existed and the policy accepted it.
        let res = res.and_then(|()| match sftp.rename(&tmp, &full, None) {
            Ok(()) => Ok(false),
            Err(e) if exclusive => Err(self.taken(sftp, path, &full, e)),
            Err(e) => self
                .resolve_existing(sftp, path, &full, body, e)
                .map(|()| true),
        });
        match res {
            Ok(false) => Ok(()),
            Ok(true) => {
                // Our copy is redundant; leftover junk would be invisible anyway.
                let _ = sftp.unlink(&tmp);
                Ok(())
            }
            Err(e) => {
                // Best effort, and not on a dead session where it could only wait for a
                // timeout; a leftover temporary file is invisible to `list`.
                if e.kind != BackendErrorKind::Transient {
                    let _ = sftp.unlink(&tmp);
                }
                Err(e)
            }
        }
    }
}
