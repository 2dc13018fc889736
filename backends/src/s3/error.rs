//! The one place S3 failures become [`BackendErrorKind`]s and short human sentences.
//!
//! An SDK error is first reduced to a [`Failure`] (status, error code, message, or what went
//! wrong on the wire), and [`classify`] maps that to a kind and a message. The split keeps the
//! mapping a pure function that unit tests can drive without an SDK error in hand, and keeps
//! the SDK's nested `Display` chains out of user-facing text.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use cairn_core::backend::{BackendError, BackendErrorKind};

/// Longest piece of server-provided text kept in a message.
const MAX_SERVER_TEXT: usize = 160;

/// What a failed request looked like, stripped of SDK types.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Failure {
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// The S3 error code (`NoSuchKey`, `AccessDenied`, ...), when the response had a body.
    pub code: Option<String>,
    /// The server's message for that code.
    pub message: Option<String>,
    /// Set when no usable response arrived.
    pub transport: Option<Transport>,
}

/// Why no usable response arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Connecting or waiting for the server took too long.
    Timeout,
    /// The connection failed or broke (refused, reset, DNS, TLS).
    Connection(String),
    /// A response arrived but could not be read or parsed.
    BadResponse(String),
    /// The request could not even be built or its body could not be read locally.
    Local(String),
}

/// Names used in messages: where the repository is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scope<'a> {
    /// "s3" or "b2".
    pub service: &'a str,
    /// Endpoint URL (no credentials).
    pub endpoint: &'a str,
    /// Bucket name.
    pub bucket: &'a str,
    /// Repository prefix inside the bucket, without slashes around it.
    pub prefix: &'a str,
    /// The access key id (not secret; naming it tells the user which key was refused).
    pub access_key: &'a str,
}

/// A classified S3 failure: the short sentence carried as a [`BackendError`]'s source.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct S3Error(pub(crate) String);

impl Failure {
    /// Reduces an SDK error to its facts.
    pub(crate) fn from_sdk<E>(err: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let transport = match err {
            SdkError::TimeoutError(_) => Some(Transport::Timeout),
            SdkError::DispatchFailure(d) => Some(if d.is_timeout() {
                Transport::Timeout
            } else if d.is_user() {
                Transport::Local(root_cause(err))
            } else {
                Transport::Connection(root_cause(err))
            }),
            SdkError::ResponseError(_) => Some(Transport::BadResponse(root_cause(err))),
            SdkError::ConstructionFailure(_) => Some(Transport::Local(root_cause(err))),
            _ => None,
        };
        Self {
            status,
            code: err.code().map(str::to_owned),
            message: err.message().map(str::to_owned),
            transport,
        }
    }
}

/// The innermost cause's text: "Connection refused (os error 111)" rather than the SDK's
/// "dispatch failure: io error: client error (Connect): tcp connect error: ...".
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    clip(&cur.to_string())
}

/// Cuts server- or library-provided text to a readable length.
fn clip(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(MAX_SERVER_TEXT) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

/// Maps a failure to a kind and a sentence naming what the user can fix.
pub(crate) fn classify(f: &Failure, scope: &Scope<'_>) -> (BackendErrorKind, String) {
    use BackendErrorKind as K;
    let Scope {
        service,
        endpoint,
        bucket,
        prefix,
        access_key,
    } = *scope;
    match &f.transport {
        Some(Transport::Timeout) => {
            return (K::Transient, format!("no answer from {endpoint} in time"));
        }
        Some(Transport::Connection(why)) => {
            return (K::Transient, format!("cannot reach {endpoint}: {why}"));
        }
        Some(Transport::BadResponse(why)) => {
            // A response cut off mid-body or mangled by a proxy: worth another attempt.
            return (
                K::Transient,
                format!("unreadable response from {endpoint}: {why}"),
            );
        }
        Some(Transport::Local(why)) => return (K::Other, why.clone()),
        None => {}
    }
    let status = f.status.unwrap_or(0);
    let code = f.code.as_deref().unwrap_or("");
    let server = f
        .message
        .as_deref()
        .map(clip)
        .filter(|m| !m.is_empty())
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    let shown_prefix = if prefix.is_empty() {
        "/".to_owned()
    } else {
        format!("{prefix}/")
    };
    match code {
        "NoSuchKey" | "NotFound" => return (K::NotFound, "no such object".into()),
        "NoSuchBucket" => {
            return (
                K::Other,
                format!("{service} bucket {bucket} does not exist at {endpoint}"),
            )
        }
        "InvalidRange" => return (K::RangeNotSatisfiable, "range outside the object".into()),
        "SignatureDoesNotMatch" => {
            return (
                K::PermissionDenied,
                format!("{service} rejected the request signature: wrong secret key for access key {access_key}"),
            )
        }
        "InvalidAccessKeyId" => {
            return (
                K::PermissionDenied,
                format!("{service} does not know access key {access_key}: unknown access key"),
            )
        }
        "ExpiredToken" | "TokenRefreshRequired" | "InvalidToken" => {
            return (
                K::PermissionDenied,
                format!("the session token of access key {access_key} is expired or invalid"),
            )
        }
        "RequestTimeTooSkewed" => {
            return (
                K::PermissionDenied,
                "the server refused the request time: check this machine's clock".into(),
            )
        }
        "AccessDenied" | "AllAccessDisabled" | "AccountProblem" => {
            // The usual text is just "Access Denied."; keep only text that says more.
            let generic = f.message.as_deref().is_none_or(|m| {
                m.trim().trim_end_matches('.').eq_ignore_ascii_case("access denied")
            });
            let server = if generic { "" } else { server.as_str() };
            return (
                K::PermissionDenied,
                format!(
                    "access denied to {service} bucket {bucket} prefix {shown_prefix}: \
                     the key may be restricted to another prefix{server}"
                ),
            );
        }
        "PreconditionFailed" => {
            // Only exclusive creates send a condition (If-None-Match: *).
            return (K::AlreadyExists, "an object already exists there".into());
        }
        "ConditionalRequestConflict" => {
            // Another conditional write to the key was in flight; S3 says to retry.
            return (
                K::Transient,
                format!("a concurrent conditional write to the same key ({status} {code})"),
            );
        }
        "BadDigest" => {
            // The server got other bytes than were hashed: damage on the way, worth a retry.
            return (
                K::Transient,
                "the server received other bytes than were sent (Content-MD5 mismatch)".into(),
            );
        }
        "QuotaExceeded" | "StorageQuotaExceeded" | "XMinioStorageFull" => {
            return (K::NoSpace, format!("storage quota exceeded{server}"))
        }
        "SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout"
        | "OperationAborted" | "TooManyRequests" => {
            return (
                K::Transient,
                format!("{service} is busy or failing ({status} {code}){server}"),
            )
        }
        _ => {}
    }
    match status {
        404 => (K::NotFound, "no such object".into()),
        416 => (K::RangeNotSatisfiable, "range outside the object".into()),
        412 => (K::AlreadyExists, "an object already exists there".into()),
        // HEAD responses have no body, so no code tells a prefix restriction from bad
        // credentials; name both.
        403 => (
            K::PermissionDenied,
            format!(
                "access denied to {service} bucket {bucket} prefix {shown_prefix}: \
                 the key may be restricted to another prefix, or the secret key is wrong"
            ),
        ),
        408 | 429 | 500..=599 => (
            K::Transient,
            format!("{service} is busy or failing ({status} {code}){server}"),
        ),
        _ => {
            let code = if code.is_empty() { "error" } else { code };
            (
                K::Other,
                format!("{service} answered {status} {code}{server}"),
            )
        }
    }
}

/// Builds the [`BackendError`] for a failed request.
pub(crate) fn backend_error<E>(
    err: &SdkError<E, HttpResponse>,
    scope: &Scope<'_>,
    op: &'static str,
    path: &str,
) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    from_failure(&Failure::from_sdk(err), scope, op, path)
}

/// Builds the [`BackendError`] for a reduced failure.
pub(crate) fn from_failure(
    f: &Failure,
    scope: &Scope<'_>,
    op: &'static str,
    path: &str,
) -> BackendError {
    let (kind, msg) = classify(f, scope);
    BackendError::new(kind, op, path, Some(Box::new(S3Error(msg)) as _))
}

/// A failure that is not a server response: a timeout we enforced, a local file, a bad range.
pub(crate) fn plain(
    kind: BackendErrorKind,
    op: &'static str,
    path: &str,
    msg: impl Into<String>,
) -> BackendError {
    BackendError::new(kind, op, path, Some(Box::new(S3Error(msg.into())) as _))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCOPE: Scope<'static> = Scope {
        service: "s3",
        endpoint: "http://127.0.0.1:8333",
        bucket: "backups",
        prefix: "hostb",
        access_key: "hostakey",
    };

    fn resp(status: u16, code: &str) -> Failure {
        Failure {
            status: Some(status),
            code: (!code.is_empty()).then(|| code.to_owned()),
            message: Some("server text".into()),
            transport: None,
        }
    }

    fn kind(f: &Failure) -> BackendErrorKind {
        classify(f, &SCOPE).0
    }

    #[test]
    fn codes_map_to_kinds() {
        use BackendErrorKind as K;
        let cases = [
            (404, "NoSuchKey", K::NotFound),
            (404, "", K::NotFound),
            (404, "NoSuchBucket", K::Other),
            (416, "InvalidRange", K::RangeNotSatisfiable),
            (416, "", K::RangeNotSatisfiable),
            (403, "AccessDenied", K::PermissionDenied),
            (403, "", K::PermissionDenied),
            (403, "SignatureDoesNotMatch", K::PermissionDenied),
            (403, "InvalidAccessKeyId", K::PermissionDenied),
            (503, "SlowDown", K::Transient),
            (500, "InternalError", K::Transient),
            (502, "", K::Transient),
            (429, "", K::Transient),
            (400, "RequestTimeout", K::Transient),
            (400, "EntityTooSmall", K::Other),
            (400, "BadDigest", K::Transient),
            (403, "QuotaExceeded", K::NoSpace),
        ];
        for (status, code, want) in cases {
            assert_eq!(kind(&resp(status, code)), want, "{status} {code}");
        }
    }

    #[test]
    fn transport_failures_are_transient_except_local_ones() {
        use BackendErrorKind as K;
        let t = |transport| Failure {
            transport: Some(transport),
            ..Failure::default()
        };
        assert_eq!(kind(&t(Transport::Timeout)), K::Transient);
        assert_eq!(
            kind(&t(Transport::Connection("refused".into()))),
            K::Transient
        );
        assert_eq!(kind(&t(Transport::BadResponse("eof".into()))), K::Transient);
        assert_eq!(kind(&t(Transport::Local("no file".into()))), K::Other);
    }

    #[test]
    fn messages_name_what_to_fix() {
        let msg = |status, code| classify(&resp(status, code), &SCOPE).1;
        let mut generic = resp(403, "AccessDenied");
        generic.message = Some("Access Denied.".into());
        assert_eq!(
            classify(&generic, &SCOPE).1,
            "access denied to s3 bucket backups prefix hostb/: the key may be restricted to \
             another prefix"
        );
        assert_eq!(
            msg(403, "AccessDenied"),
            "access denied to s3 bucket backups prefix hostb/: the key may be restricted to \
             another prefix: server text"
        );
        assert!(msg(403, "SignatureDoesNotMatch").contains("wrong secret key"));
        assert!(msg(403, "InvalidAccessKeyId").contains("unknown access key"));
        assert!(msg(404, "NoSuchBucket").contains("bucket backups does not exist"));
        assert!(msg(403, "").contains("secret key is wrong"));
    }

    #[test]
    fn long_server_text_is_clipped() {
        let mut f = resp(500, "InternalError");
        f.message = Some("x".repeat(10_000));
        let m = classify(&f, &SCOPE).1;
        assert!(m.len() < 300, "{} bytes", m.len());
        assert!(m.ends_with("..."));
    }
}
