//! Reports every HTTP request the SDK sends to the [`RequestMeter`] the accounting
//! decorator hands the backend, so the counts are what the provider bills: each page of a
//! listing, each part of a multipart upload, the HEAD before a delete, every attempt.
//!
//! An SDK interceptor sees each attempt right before it goes on the wire, whichever code path
//! built the request, so no call site can forget to count. The attempt is reported once it
//! ended, with its outcome; one that cairn's own deadline gave up on is reported when the
//! SDK drops its state (as `cancelled`), because it may well have reached the server.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use aws_sdk_s3::config::interceptors::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use cairn_core::cost::{MeteredRequest, RequestClass, RequestMeter};

/// Where the meter goes once the accounting decorator hands it over.
pub(crate) type MeterSlot = Arc<RwLock<Option<Arc<dyn RequestMeter>>>>;

/// The billing class of an S3 operation. Unknown operations fall back to the HTTP verb,
/// which is what S3 bills by; an unknown POST or PUT lands in the dear class.
pub(crate) fn class_of(operation: &str, method: &str) -> RequestClass {
    match operation {
        "ListObjectsV2" | "ListObjects" | "ListObjectVersions" => RequestClass::List,
        "HeadObject" => RequestClass::Head,
        "GetObject" => RequestClass::Get,
        "PutObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "CompleteMultipartUpload"
        | "CopyObject" => RequestClass::Put,
        "DeleteObject" | "AbortMultipartUpload" => RequestClass::Delete,
        _ => match method {
            "GET" => RequestClass::Get,
            "HEAD" => RequestClass::Head,
            "DELETE" => RequestClass::Delete,
            _ => RequestClass::Put,
        },
    }
}

/// The interceptor registered on the backend's SDK client.
#[derive(Clone)]
pub(crate) struct Metering {
    pub slot: MeterSlot,
    pub bucket: String,
    pub prefix: String,
    pub path_style: bool,
}

impl fmt::Debug for Metering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metering")
            .field("bucket", &self.bucket)
            .finish()
    }
}

/// One attempt on the wire, reported exactly once: after it ended, or when dropped.
struct Attempt {
    meter: Arc<dyn RequestMeter>,
    class: RequestClass,
    api: String,
    path: String,
    /// Body bytes sent.
    up: u64,
    /// Whether this is a HEAD, whose Content-Length is not a body.
    head: bool,
    reported: AtomicBool,
}

impl Attempt {
    fn report(&self, outcome: &str, down: u64) {
        if !self.reported.swap(true, Ordering::SeqCst) {
            self.meter.record(&MeteredRequest {
                class: self.class,
                api: &self.api,
                path: &self.path,
                bytes: if self.up > 0 { self.up } else { down },
                outcome,
            });
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.report("cancelled", 0);
    }
}

fn content_length(h: &aws_smithy_runtime_api::http::Headers) -> u64 {
    h.get("content-length")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The attempt in flight, kept in the request's config bag.
#[derive(Clone)]
struct InFlight(Arc<Attempt>);

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InFlight({} {})", self.0.api, self.0.path)
    }
}

impl Storable for InFlight {
    type Storer = StoreReplace<Self>;
}

impl Intercept for Metering {
    fn name(&self) -> &'static str {
        "cairn-request-meter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let meter = self
            .slot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(meter) = meter else { return Ok(()) };
        let req = context.request();
        let api = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_owned())
            .unwrap_or_default();
        let class = class_of(&api, req.method());
        let path = self.repo_path(req.uri());
        // Replacing an earlier attempt's entry drops it, which reports it if it was not.
        cfg.interceptor_state()
            .store_put(InFlight(Arc::new(Attempt {
                meter,
                class,
                api,
                path,
                up: content_length(req.headers()),
                head: req.method() == "HEAD",
                reported: AtomicBool::new(false),
            })));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(InFlight(attempt)) = cfg.load::<InFlight>() {
            let response = context.response();
            let outcome = match response.map(|r| r.status().as_u16()) {
                Some(200..=299) => "ok".to_owned(),
                Some(404) => "NotFound".to_owned(),
                Some(s) => format!("http-{s}"),
                None => "no-response".to_owned(),
            };
            let down = match response {
                Some(r) if !attempt.head => content_length(r.headers()),
                _ => 0,
            };
            attempt.report(&outcome, down);
        }
        Ok(())
    }
}

impl Metering {
    /// The repository path a request URI concerns: the object key below the prefix, or
    /// for a listing the listed directory. Anything outside the repository (cairn never
    /// sends such a request) is `/<bucket>/<key>`, which no repository path looks like
    /// (see [`MeteredRequest::path`]).
    fn repo_path(&self, uri: &str) -> String {
        let after_scheme = uri.split_once("://").map_or(uri, |(_, rest)| rest);
        let path_and_query = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let mut key = percent_decode(path.trim_start_matches('/'));
        if self.path_style {
            let (bucket, rest) = key.split_once('/').unwrap_or((&key, ""));
            if bucket != self.bucket {
                return format!("/{key}");
            }
            key = rest.to_owned();
        }
        if key.is_empty() {
            // A bucket-level request: a listing names its prefix in the query.
            key = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("prefix="))
                .map(percent_decode)
                .unwrap_or_default();
            key = key.trim_end_matches('/').to_owned();
        }
        if self.prefix.is_empty() {
            return key;
        }
        if key == self.prefix {
            return String::new();
        }
        match key
            .strip_prefix(&self.prefix)
            .and_then(|k| k.strip_prefix('/'))
        {
            Some(rel) => rel.to_owned(),
            None => format!("/{}/{key}", self.bucket),
        }
    }
}

/// `%2F` → `/`; malformed escapes stay as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                // Two hex digits make at most 255.
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metering(prefix: &str, path_style: bool) -> Metering {
        Metering {
            slot: MeterSlot::default(),
            bucket: "backups".into(),
            prefix: prefix.into(),
            path_style,
        }
    }

    #[test]
    fn repository_paths_from_uris() {
        let m = metering("hosta/r1", true);
        let p = |u: &str| m.repo_path(u);
        assert_eq!(
            p("http://127.0.0.1:8333/backups/hosta/r1/data/ab/cd?x-id=PutObject"),
            "data/ab/cd"
        );
        assert_eq!(
            p("http://h/backups?list-type=2&prefix=hosta%2Fr1%2Fdata%2F&max-keys=7"),
            "data"
        );
        assert_eq!(p("http://h/backups?list-type=2&prefix=hosta%2Fr1%2F"), "");
        assert_eq!(p("http://h/backups/hostb/x"), "/backups/hostb/x");
        assert_eq!(p("http://h/backups/hosta/r1x/y"), "/backups/hosta/r1x/y");
        assert_eq!(p("http://h/backups2/hosta/r1/x"), "/backups2/hosta/r1/x");
        let v = metering("r", false);
        assert_eq!(v.repo_path("https://backups.s3.example/r/config"), "config");
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }

    #[test]
    fn classes_follow_the_bill() {
        assert_eq!(class_of("UploadPart", "PUT"), RequestClass::Put);
        assert_eq!(
            class_of("CompleteMultipartUpload", "POST"),
            RequestClass::Put
        );
        assert_eq!(
            class_of("AbortMultipartUpload", "DELETE"),
            RequestClass::Delete
        );
        assert_eq!(class_of("ListObjectsV2", "GET"), RequestClass::List);
        assert_eq!(class_of("", "HEAD"), RequestClass::Head);
        assert_eq!(class_of("SomethingNew", "POST"), RequestClass::Put);
    }
}
