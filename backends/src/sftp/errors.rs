//! The one place libssh2 and SFTP failures are classified into [`BackendErrorKind`]s.

use std::io;

use cairn_core::backend::{BackendError, BackendErrorKind};
use ssh2::ErrorCode;

// SFTP status codes (draft-ietf-secsh-filexfer; OpenSSH speaks version 3, which only sends
// codes 0 to 8, but other servers send the later ones).
const FX_NO_SUCH_FILE: i32 = 2;
const FX_PERMISSION_DENIED: i32 = 3;
const FX_NO_CONNECTION: i32 = 6;
const FX_CONNECTION_LOST: i32 = 7;
const FX_OP_UNSUPPORTED: i32 = 8;
const FX_NO_SUCH_PATH: i32 = 10;
const FX_FILE_ALREADY_EXISTS: i32 = 11;
const FX_WRITE_PROTECT: i32 = 12;
const FX_NO_SPACE_ON_FILESYSTEM: i32 = 14;
const FX_QUOTA_EXCEEDED: i32 = 15;
const FX_NOT_A_DIRECTORY: i32 = 19;

// libssh2 session errors that are deterministic: retrying on a fresh connection gives the
// same answer, so they must not be reported as transient.
const ERR_FILE: i32 = -16;
const ERR_METHOD_NONE: i32 = -17;
const ERR_AUTHENTICATION_FAILED: i32 = -18;
const ERR_PUBLICKEY_UNVERIFIED: i32 = -19;
const ERR_METHOD_NOT_SUPPORTED: i32 = -33;
const ERR_INVAL: i32 = -34;
const ERR_BAD_USE: i32 = -39;
const ERR_KNOWN_HOSTS: i32 = -46;
const ERR_KEYFILE_AUTH_FAILED: i32 = -48;
const ERR_ALGO_UNSUPPORTED: i32 = -51;

/// The kind of a libssh2 error.
///
/// SFTP status codes name the condition. OpenSSH's server maps every errno it has no code
/// for, ENOSPC and EDQUOT included, to the generic `FAILURE`, so a full disk on OpenSSH is
/// recognised separately (see `SftpBackend::classify_write_failure`). A session-level error
/// (socket, timeout, channel closed, MAC failure) means the connection is unusable; it is
/// transient so the retry decorator tries again, and the pool drops the connection so that
/// attempt gets a fresh one.
pub(crate) fn ssh_error_kind(err: &ssh2::Error) -> BackendErrorKind {
    match err.code() {
        ErrorCode::SFTP(code) => match code {
            FX_NO_SUCH_FILE | FX_NO_SUCH_PATH | FX_NOT_A_DIRECTORY => BackendErrorKind::NotFound,
            FX_PERMISSION_DENIED | FX_WRITE_PROTECT => BackendErrorKind::PermissionDenied,
            FX_NO_SPACE_ON_FILESYSTEM | FX_QUOTA_EXCEEDED => BackendErrorKind::NoSpace,
            FX_FILE_ALREADY_EXISTS => BackendErrorKind::AlreadyExists,
            FX_NO_CONNECTION | FX_CONNECTION_LOST => BackendErrorKind::Transient,
            _ => BackendErrorKind::Other,
        },
        ErrorCode::Session(code) => match code {
            ERR_FILE
            | ERR_METHOD_NONE
            | ERR_AUTHENTICATION_FAILED
            | ERR_PUBLICKEY_UNVERIFIED
            | ERR_METHOD_NOT_SUPPORTED
            | ERR_INVAL
            | ERR_BAD_USE
            | ERR_KNOWN_HOSTS
            | ERR_KEYFILE_AUTH_FAILED
            | ERR_ALGO_UNSUPPORTED => BackendErrorKind::Other,
            // ssh2's "unknown error" placeholder: nothing says the session is broken.
            i32::MIN => BackendErrorKind::Other,
            _ => BackendErrorKind::Transient,
        },
    }
}

/// Whether the server said it does not implement a request (e.g. `fsync@openssh.com`).
pub(crate) fn is_unsupported(err: &ssh2::Error) -> bool {
    err.code() == ErrorCode::SFTP(FX_OP_UNSUPPORTED)
}

/// Whether an SFTP request failed with a status code (the server answered), as opposed to
/// the session failing underneath it.
pub(crate) fn is_sftp_status(err: &ssh2::Error) -> bool {
    matches!(err.code(), ErrorCode::SFTP(_))
}

/// The kind of an [`io::Error`] that came out of ssh2's `Read`/`Write` impls.
///
/// ssh2 flattens its error into an `io::Error` carrying only the message, so the code is
/// lost; only the kinds it preserves are trusted here. Everything else is `None`: the caller
/// probes the connection to tell a dead session from a server-side failure.
pub(crate) fn stream_io_kind(err: &io::Error) -> Option<BackendErrorKind> {
    match err.kind() {
        io::ErrorKind::NotFound => Some(BackendErrorKind::NotFound),
        io::ErrorKind::TimedOut
        | io::ErrorKind::WouldBlock
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof => Some(BackendErrorKind::Transient),
        _ => None,
    }
}

/// A [`BackendError`] from a libssh2 error.
pub(crate) fn ssh_err(op: &'static str, path: &str, err: ssh2::Error) -> BackendError {
    BackendError::new(ssh_error_kind(&err), op, path, Some(Box::new(err) as _))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sftp_and_session_codes_map_to_kinds() {
        use BackendErrorKind as K;
        let cases = [
            (ErrorCode::SFTP(2), K::NotFound),
            (ErrorCode::SFTP(10), K::NotFound),
            (ErrorCode::SFTP(19), K::NotFound),
            (ErrorCode::SFTP(3), K::PermissionDenied),
            (ErrorCode::SFTP(12), K::PermissionDenied),
            (ErrorCode::SFTP(14), K::NoSpace),
            (ErrorCode::SFTP(15), K::NoSpace),
            (ErrorCode::SFTP(11), K::AlreadyExists),
            (ErrorCode::SFTP(7), K::Transient),
            (ErrorCode::SFTP(6), K::Transient),
            // OpenSSH's catch-all, also what a rename onto an existing name returns.
            (ErrorCode::SFTP(4), K::Other),
            (ErrorCode::SFTP(8), K::Other),
            // Socket send/recv, disconnect, timeout, channel closed.
            (ErrorCode::Session(-7), K::Transient),
            (ErrorCode::Session(-43), K::Transient),
            (ErrorCode::Session(-13), K::Transient),
            (ErrorCode::Session(-9), K::Transient),
            (ErrorCode::Session(-26), K::Transient),
            (ErrorCode::Session(-18), K::Other),
            (ErrorCode::Session(-39), K::Other),
            (ErrorCode::Session(i32::MIN), K::Other),
        ];
        for (code, want) in cases {
            let err = ssh2::Error::new(code, "test");
            assert_eq!(ssh_error_kind(&err), want, "{code:?}");
        }
        assert!(is_unsupported(&ssh2::Error::new(ErrorCode::SFTP(8), "x")));
        assert!(!is_unsupported(&ssh2::Error::new(ErrorCode::SFTP(4), "x")));
        assert!(is_sftp_status(&ssh2::Error::new(ErrorCode::SFTP(4), "x")));
        assert!(!is_sftp_status(&ssh2::Error::new(
            ErrorCode::Session(-7),
            "x"
        )));
    }

    #[test]
    fn stream_errors_keep_only_trusted_kinds() {
        let e = |k| io::Error::new(k, "x");
        assert_eq!(
            stream_io_kind(&e(io::ErrorKind::TimedOut)),
            Some(BackendErrorKind::Transient)
        );
        assert_eq!(
            stream_io_kind(&e(io::ErrorKind::NotFound)),
            Some(BackendErrorKind::NotFound)
        );
        assert_eq!(stream_io_kind(&e(io::ErrorKind::Other)), None);
        // ssh2 turns a session error into an io::Error this way.
        let flat: io::Error = ssh2::Error::new(ErrorCode::Session(-9), "timed out").into();
        assert_eq!(stream_io_kind(&flat), Some(BackendErrorKind::Transient));
    }
}
