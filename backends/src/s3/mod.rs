//! A repository under a prefix of an S3 bucket (AWS, SeaweedFS, MinIO, ...) or of a Backblaze
//! B2 bucket through B2's S3-compatible API.
//!
//! The async SDK stays in here: each backend owns a small multi-thread tokio runtime, and the
//! synchronous [`Backend`] methods `block_on` it from whichever (rayon) thread calls them, so
//! many requests run at once without async leaking into `cairn-core`.
//!
//! Everything stays inside the repository prefix. No call ever lists buckets, heads the bucket,
//! asks for its location or lists outside `<prefix>/`, so a key restricted to that prefix (a
//! B2 application key with a `namePrefix`, an IAM user with an `s3:prefix` condition) can do
//! everything the repository needs. `create` therefore writes nothing: a missing bucket shows
//! up as "bucket X does not exist" on first use.
//!
//! # Requests per method (for request accounting)
//!
//! | method        | S3 API calls |
//! |---------------|--------------|
//! | `create`      | none |
//! | `list`        | `ListObjectsV2` per page of up to 1,000 keys (prefix `<prefix>/<dir>/`, no delimiter), fetched lazily |
//! | `stat`        | `HeadObject` |
//! | `read`        | `GetObject` (with `Range` when a range is given); an empty range is a `HeadObject` instead |
//! | `read_stream` | `GetObject`, likewise; an empty range is a `HeadObject` |
//! | `write`       | `PutObject` (bodies up to the multipart threshold); above it `CreateMultipartUpload`, one `UploadPart` per part, `CompleteMultipartUpload`, then `HeadObject` to confirm the size; `AbortMultipartUpload` after a failure |
//! | `write_new`   | `PutObject` with `If-None-Match: *`, whatever the size (412 → `AlreadyExists`); the first one of a backend `HeadObject` + that + the same again (to learn whether the server honours the condition, see [`exclusive`]); against a server that ignores it `HeadObject`, `PutObject`, then `HeadObject` + `GetObject` to verify |
//! | `remove`      | `HeadObject` (S3 deletes of missing keys succeed, the contract wants `NotFound`), then `DeleteObject` |
//!
//! The accounting decorator need not trust this table: the backend reports each request as
//! it sends it (see [`meter`]). `-o s3.list-page-size=N` asks for pages of N keys (S3's
//! maximum and default is 1,000).
//!
//! No SDK-internal retries: cairn's retry decorator retries [`Transient`] errors, and every
//! attempt passes through its accounting.
//!
//! Integrity: every `PutObject` and `UploadPart` carries `Content-MD5`, so a body damaged on
//! the way is rejected by the server (`BadDigest`) instead of stored.
//!
//! [`Transient`]: BackendErrorKind::Transient

mod client;
mod error;
mod exclusive;
mod meter;
mod multipart;
mod paced;

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, Read};
use std::ops::Range;
use std::sync::{Arc, OnceLock, PoisonError};
use std::time::Duration;

use aws_sdk_s3::primitives::{ByteStream, Length};
use base64::Engine as _;
use cairn_core::backend::{
    Backend, BackendError, BackendErrorKind, ObjectInfo, Properties, StreamConsumer, WriteBody,
    MAX_BOUNDED_READ,
};
use cairn_core::cost::RequestMeter;
use md5::{Digest, Md5};

pub use client::{Flavor, S3Config, S3Credentials, MIN_PART_SIZE, READ_TIMEOUT};
pub use error::S3Error;

use crate::url::{redact, BackendOptions, UrlError};
use client::{env_var, sdk_client, MIN_UPLOAD_RATE};
use error::{backend_error, plain, Scope};
use meter::{MeterSlot, Metering};

/// A [`Backend`] on an S3-compatible object store.
pub struct S3Backend {
    cfg: S3Config,
    client: aws_sdk_s3::Client,
    rt: tokio::runtime::Runtime,
    /// Where the client's interceptor reports each request, once metering is asked for.
    meter: MeterSlot,
    /// Whether the server honours `If-None-Match` (see [`exclusive`]), once known.
    conditional: OnceLock<bool>,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend").field("cfg", &self.cfg).finish()
    }
}

impl S3Backend {
    /// A backend for an explicit configuration. Sends no request.
    pub fn new(cfg: S3Config) -> Result<Self, UrlError> {
        cfg.validate().map_err(UrlError::Option)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            // The runtime only drives sockets and timers; callers' threads run the futures.
            .worker_threads(2)
            .thread_name("cairn-s3")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| UrlError::Open(format!("cannot start the S3 runtime: {e}")))?;
        let meter = MeterSlot::default();
        let metering = Metering {
            slot: meter.clone(),
            bucket: cfg.bucket.clone(),
            prefix: cfg.prefix.clone(),
            path_style: cfg.path_style,
        };
        let client = {
            let _guard = rt.enter();
            sdk_client(&cfg, metering)
        };
        let conditional = OnceLock::new();
        if let Some(known) = cfg.conditional_writes {
            let _ = conditional.set(known);
        }
        Ok(Self {
            cfg,
            client,
            rt,
            meter,
            conditional,
        })
    }

    /// Opens `s3:<endpoint>/<bucket>/<prefix>` with options and credentials from the
    /// environment (see [`S3Config::for_s3`]).
    pub fn open_s3(
        endpoint: &str,
        bucket: &str,
        prefix: &str,
        opts: &BackendOptions,
    ) -> Result<Arc<dyn Backend>, UrlError> {
        let cfg = S3Config::for_s3(endpoint, bucket, prefix, opts, &env_var)?;
        Ok(Arc::new(Self::new(cfg)?))
    }

    /// Opens `b2:<bucket>:/<prefix>` (see [`S3Config::for_b2`]).
    pub fn open_b2(
        bucket: &str,
        prefix: &str,
        opts: &BackendOptions,
    ) -> Result<Arc<dyn Backend>, UrlError> {
        let cfg = S3Config::for_b2(bucket, prefix, opts, &env_var)?;
        Ok(Arc::new(Self::new(cfg)?))
    }

    /// The configuration in use.
    pub fn config(&self) -> &S3Config {
        &self.cfg
    }

    /// Whether the server honours `If-None-Match` on PutObject, if known yet (the first
    /// exclusive create finds out).
    pub fn conditional_writes(&self) -> Option<bool> {
        self.conditional.get().copied()
    }

    pub(crate) fn scope(&self) -> Scope<'_> {
        Scope {
            service: self.cfg.flavor.name(),
            endpoint: &self.cfg.endpoint,
            bucket: &self.cfg.bucket,
            prefix: &self.cfg.prefix,
            access_key: &self.cfg.credentials.access_key_id,
        }
    }

    /// Runs a request on the runtime with a deadline; an expired deadline is `Transient`.
    pub(crate) fn run<T>(
        &self,
        limit: Duration,
        op: &'static str,
        path: &str,
        fut: impl Future<Output = T>,
    ) -> Result<T, BackendError> {
        self.rt
            .block_on(async { tokio::time::timeout(limit, fut).await })
            .map_err(|_| {
                let msg = format!(
                    "no answer from {} within {} s",
                    self.cfg.endpoint,
                    limit.as_secs()
                );
                plain(BackendErrorKind::Transient, op, path, msg)
            })
    }

    /// The object key of a repository path; refuses anything `layout` would never produce.
    fn key(&self, op: &'static str, path: &str) -> Result<String, BackendError> {
        cairn_core::backend::request::check_path(op, path)?;
        Ok(self.join(path))
    }

    fn join(&self, path: &str) -> String {
        if self.cfg.prefix.is_empty() {
            path.to_owned()
        } else {
            format!("{}/{path}", self.cfg.prefix)
        }
    }

    /// The listing prefix of a directory: always ends in `/`, so `hosts` never matches
    /// `hostsx/...` (and a prefix-scoped key is asked only about its own prefix).
    fn dir_prefix(&self, dir: &str) -> Result<String, BackendError> {
        let dir = dir.trim_matches('/');
        if dir.is_empty() {
            return Ok(if self.cfg.prefix.is_empty() {
                String::new()
            } else {
                format!("{}/", self.cfg.prefix)
            });
        }
        Ok(format!("{}/", self.key("list", dir)?))
    }

    /// The size of an object (HeadObject).
    fn head(&self, op: &'static str, path: &str, key: &str) -> Result<u64, BackendError> {
        let req = self
            .client
            .head_object()
            .bucket(&self.cfg.bucket)
            .key(key)
            .send();
        let out = self
            .run(self.cfg.read_timeout, op, path, req)?
            .map_err(|e| backend_error(&e, &self.scope(), op, path))?;
        Ok(size_of(out.content_length()))
    }

    /// Starts a GetObject for `range` (must be non-empty) and checks the answer covers it.
    /// Returns the body and the bytes to skip at its start (non-zero only when a server
    /// ignored the Range header and sent the whole object).
    fn get(
        &self,
        op: &'static str,
        path: &str,
        key: &str,
        range: Option<&Range<u64>>,
    ) -> Result<(ByteStream, u64, u64), BackendError> {
        let mut req = self.client.get_object().bucket(&self.cfg.bucket).key(key);
        if let Some(r) = range {
            req = req.range(format!("bytes={}-{}", r.start, r.end - 1));
        }
        let out = self
            .run(self.cfg.read_timeout, op, path, req.send())?
            .map_err(|e| backend_error(&e, &self.scope(), op, path))?;
        let len = size_of(out.content_length());
        let total = out.content_range().and_then(range_total);
        let (skip, want) = match (range, total) {
            (None, _) => (0, len),
            (Some(r), Some(total)) => {
                if r.end > total {
                    return Err(past_end(op, path, r, total));
                }
                (0, r.end - r.start)
            }
            // 200 without Content-Range: the server sent the whole object.
            (Some(r), None) => {
                if r.end > len {
                    return Err(past_end(op, path, r, len));
                }
                (r.start, r.end - r.start)
            }
        };
        Ok((out.body, skip, want))
    }

    /// Validates a requested range; `Ok(None)` means the range is empty and only needs the
    /// object to exist and be long enough.
    fn check_range(
        &self,
        op: &'static str,
        path: &str,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<Option<Option<Range<u64>>>, BackendError> {
        let Some(r) = range else {
            return Ok(Some(None));
        };
        if r.start > r.end {
            return Err(past_end(op, path, &r, 0));
        }
        if r.start == r.end {
            let size = self.head(op, path, key)?;
            if r.end > size {
                return Err(past_end(op, path, &r, size));
            }
            return Ok(None);
        }
        Ok(Some(Some(r)))
    }

    /// The deadline of a request that uploads `len` bytes.
    pub(crate) fn upload_limit(&self, len: u64) -> Duration {
        self.cfg.read_timeout + Duration::from_secs(len / MIN_UPLOAD_RATE)
    }

    /// The deadline of a paced upload: the pace is the user's, so only a rate far below
    /// any sensible `--limit-upload` (1 KiB/s) counts as a hang.
    pub(crate) fn paced_upload_limit(&self, len: u64) -> Duration {
        self.cfg.read_timeout + Duration::from_secs(len / 1024)
    }

    /// A single PutObject with Content-MD5; with `If-None-Match: *` when `exclusive`.
    fn put(
        &self,
        path: &str,
        key: &str,
        body: &WriteBody<'_>,
        exclusive: bool,
    ) -> Result<(), BackendError> {
        let len = body.len();
        let md5 = md5_of(body, path)?;
        let op = if exclusive { "write_new" } else { "write" };
        let request = |stream: ByteStream| async move {
            let mut req = self
                .client
                .put_object()
                .bucket(&self.cfg.bucket)
                .key(key)
                .content_length(i64_of(len))
                .content_md5(md5)
                .content_type("application/octet-stream")
                .body(stream);
            if exclusive {
                req = req.if_none_match("*");
            }
            req.send()
                .await
                .map_err(|e| backend_error(&e, &self.scope(), op, path))
        };
        if body.is_paced() {
            let mut src = body
                .open()
                .map_err(|e| local_file_error("write", path, &e.to_string()))?;
            let limit = self.paced_upload_limit(len);
            paced::send(self, "write", path, limit, &mut *src, len, request)?;
            return Ok(());
        }
        let stream = match (body.bytes(), body.file()) {
            (Some(b), _) => ByteStream::from(b.to_vec()),
            (None, Some((src, len))) => self
                .rt
                .block_on(
                    ByteStream::read_from()
                        .path(src)
                        .length(Length::Exact(len))
                        .build(),
                )
                .map_err(|e| local_file_error("write", path, &e.to_string()))?,
            (None, None) => {
                return Err(local_file_error("write", path, "body has no bytes"));
            }
        };
        self.run(self.upload_limit(len), "write", path, request(stream))??;
        Ok(())
    }
}

impl Backend for S3Backend {
    fn properties(&self) -> Properties {
        Properties {
            max_connections: self.cfg.connections,
            atomic_overwrite: true,
            is_local: false,
            can_delete: true,
            cost_class: self.cfg.flavor.name(),
            deletes_versions: self.cfg.delete_versions,
        }
    }

    fn location(&self) -> String {
        let prefix = &self.cfg.prefix;
        match self.cfg.flavor {
            Flavor::S3 => format!(
                "s3:{}/{}/{prefix}",
                redact(&self.cfg.endpoint),
                self.cfg.bucket
            ),
            Flavor::B2 => format!("b2:{}:/{prefix}", self.cfg.bucket),
        }
    }

    fn create(&self) -> Result<(), BackendError> {
        // Nothing to make: "directories" do not exist in S3, and creating or even checking
        // the bucket needs rights a prefix-scoped key does not have.
        Ok(())
    }

    fn list<'a>(
        &'a self,
        dir: &str,
    ) -> Result<Box<dyn Iterator<Item = Result<ObjectInfo, BackendError>> + Send + 'a>, BackendError>
    {
        let prefix = self.dir_prefix(dir)?;
        Ok(Box::new(ListIter {
            backend: self,
            dir: dir.to_owned(),
            prefix,
            token: None,
            page: VecDeque::new(),
            done: false,
        }))
    }

    fn stat(&self, path: &str) -> Result<u64, BackendError> {
        let key = self.key("stat", path)?;
        self.head("stat", path, &key)
    }

    fn read(&self, path: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, BackendError> {
        let key = self.key("read", path)?;
        if let Some(r) = &range {
            if r.end.saturating_sub(r.start) > MAX_BOUNDED_READ {
                return Err(too_large("read", path, r.end - r.start));
            }
        }
        let Some(range) = self.check_range("read", path, &key, range)? else {
            return Ok(Vec::new());
        };
        let (body, skip, want) = self.get("read", path, &key, range.as_ref())?;
        if want > MAX_BOUNDED_READ {
            return Err(too_large("read", path, want));
        }
        let mut reader = BodyReader::new(self, body, skip, want);
        // At most MAX_BOUNDED_READ, so it fits a usize.
        let mut buf = Vec::with_capacity(want as usize);
        if let Err(e) = reader.read_to_end(&mut buf) {
            return Err(reader.error("read", path, &e));
        }
        if buf.len() as u64 != want {
            let msg = format!("expected {want} bytes but the body had {}", buf.len());
            return Err(plain(BackendErrorKind::Transient, "read", path, msg));
        }
        Ok(buf)
    }

    fn read_stream(
        &self,
        path: &str,
        range: Option<Range<u64>>,
        consumer: &mut StreamConsumer<'_>,
    ) -> Result<(), BackendError> {
        let key = self.key("read_stream", path)?;
        let Some(range) = self.check_range("read_stream", path, &key, range)? else {
            return consumer(&mut io::empty())
                .map_err(|e| plain(BackendErrorKind::Other, "read_stream", path, e.to_string()));
        };
        let (body, skip, want) = self.get("read_stream", path, &key, range.as_ref())?;
        let mut reader = BodyReader::new(self, body, skip, want);
        match consumer(&mut reader) {
            Ok(()) => Ok(()),
            Err(e) => Err(reader.error("read_stream", path, &e)),
        }
    }

    fn write(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
        let key = self.key("write", path)?;
        match body.file() {
            Some((src, len)) if len > self.cfg.multipart_threshold => {
                multipart::upload(self, path, &key, src, len, body)
            }
            _ => self.put(path, &key, body, false),
        }
    }

    fn write_new(&self, path: &str, body: &WriteBody<'_>) -> Result<(), BackendError> {
        let key = self.key("write_new", path)?;
        // Single PutObjects at any size: locks are small, and a multipart upload's
        // condition would only be checked at completion, after all parts were paid for.
        exclusive::write_new(self, path, &key, body)
    }

    fn meter_requests(&self, meter: Arc<dyn RequestMeter>) -> bool {
        *self.meter.write().unwrap_or_else(PoisonError::into_inner) = Some(meter);
        true
    }

    fn remove(&self, path: &str) -> Result<(), BackendError> {
        let key = self.key("remove", path)?;
        if self.cfg.delete_versions {
            // The version listing also says whether the key exists.
            return match self.delete_versions(path, &key)? {
                0 => Err(BackendError::new(
                    BackendErrorKind::NotFound,
                    "remove",
                    path,
                    None,
                )),
                _ => Ok(()),
            };
        }
        // DeleteObject succeeds on a missing key; the contract says NotFound.
        self.head("remove", path, &key)?;
        self.delete_object(path, &key)
    }

    fn discard(&self, path: &str) -> Result<(), BackendError> {
        // No HEAD first: a missing key is fine here, and DeleteObject says nothing of it.
        let key = self.key("remove", path)?;
        if self.cfg.delete_versions {
            return self.delete_versions(path, &key).map(|_| ());
        }
        self.delete_object(path, &key)
    }
}

impl S3Backend {
    /// Deletes every version (and delete marker) of `key`, one DeleteObject with its
    /// version id each, after a ListObjectVersions that finds them; returns how many there
    /// were. A plain DeleteObject on B2 or on a versioned bucket only hides the file.
    fn delete_versions(&self, path: &str, key: &str) -> Result<usize, BackendError> {
        let mut deleted = 0;
        let mut marker: Option<(String, Option<String>)> = None;
        loop {
            let mut req = self
                .client
                .list_object_versions()
                .bucket(&self.cfg.bucket)
                .prefix(key);
            if let Some((k, v)) = &marker {
                req = req.key_marker(k).set_version_id_marker(v.clone());
            }
            let out = self
                .run(self.cfg.read_timeout, "remove", path, req.send())?
                .map_err(|e| backend_error(&e, &self.scope(), "remove", path))?;
            // The prefix also matches longer keys; only this one's versions go.
            let ids: Vec<String> = out
                .versions()
                .iter()
                .filter(|v| v.key() == Some(key))
                .filter_map(|v| v.version_id().map(str::to_owned))
                .chain(
                    out.delete_markers()
                        .iter()
                        .filter(|m| m.key() == Some(key))
                        .filter_map(|m| m.version_id().map(str::to_owned)),
                )
                .collect();
            for id in ids {
                let req = self
                    .client
                    .delete_object()
                    .bucket(&self.cfg.bucket)
                    .key(key)
                    .version_id(id)
                    .send();
                self.run(self.cfg.read_timeout, "remove", path, req)?
                    .map_err(|e| {
                        let err = backend_error(&e, &self.scope(), "remove", path);
                        if err.kind != BackendErrorKind::PermissionDenied {
                            return err;
                        }
                        let why = err.source.map(|s| s.to_string()).unwrap_or_default();
                        plain(
                            BackendErrorKind::PermissionDenied,
                            "remove",
                            path,
                            format!(
                                "{why}: this key may not delete file versions (on B2 give it \
                                 the deleteFiles capability), or pass \
                                 -o s3.delete-versions=false to only hide files, whose \
                                 space then frees when the bucket's lifecycle rule removes \
                                 hidden versions"
                            ),
                        )
                    })?;
                deleted += 1;
            }
            match (out.is_truncated(), out.next_key_marker()) {
                (Some(true), Some(k)) => {
                    marker = Some((
                        k.to_owned(),
                        out.next_version_id_marker().map(str::to_owned),
                    ))
                }
                _ => return Ok(deleted),
            }
        }
    }

    fn delete_object(&self, path: &str, key: &str) -> Result<(), BackendError> {
        let req = self
            .client
            .delete_object()
            .bucket(&self.cfg.bucket)
            .key(key)
            .send();
        self.run(self.cfg.read_timeout, "remove", path, req)?
            .map_err(|e| backend_error(&e, &self.scope(), "remove", path))?;
        Ok(())
    }
}

/// A lazy recursive listing: one ListObjectsV2 page in memory at a time.
struct ListIter<'a> {
    backend: &'a S3Backend,
    dir: String,
    /// Key prefix listed (ends in `/`, or empty for a whole-bucket repository).
    prefix: String,
    token: Option<String>,
    page: VecDeque<ObjectInfo>,
    done: bool,
}

impl ListIter<'_> {
    fn fetch(&mut self) -> Result<(), BackendError> {
        let b = self.backend;
        let mut req = b
            .client
            .list_objects_v2()
            .bucket(&b.cfg.bucket)
            .prefix(&self.prefix);
        if let Some(t) = self.token.take() {
            req = req.continuation_token(t);
        }
        if let Some(n) = b.cfg.list_page_size {
            req = req.max_keys(i32::try_from(n).unwrap_or(i32::MAX));
        }
        let out = b
            .run(b.cfg.read_timeout, "list", &self.dir, req.send())?
            .map_err(|e| backend_error(&e, &b.scope(), "list", &self.dir))?;
        let strip = if b.cfg.prefix.is_empty() {
            0
        } else {
            b.cfg.prefix.len() + 1
        };
        for obj in out.contents() {
            let Some(key) = obj.key() else { continue };
            // Filer-backed stores (SeaweedFS) report emptied "directories" as keys ending
            // in `/`; cairn never writes such a key.
            if key.ends_with('/') || key.len() <= strip {
                continue;
            }
            self.page.push_back(ObjectInfo {
                path: key[strip..].to_owned(),
                size: size_of(obj.size()),
            });
        }
        self.token = out.next_continuation_token().map(str::to_owned);
        if !out.is_truncated().unwrap_or(false) || self.token.is_none() {
            self.done = true;
        }
        Ok(())
    }
}

impl Iterator for ListIter<'_> {
    type Item = Result<ObjectInfo, BackendError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.page.pop_front() {
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.fetch() {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}

/// A response body as a blocking [`Read`]: each `read` that needs bytes waits on the
/// runtime for the next chunk, so memory stays at one chunk however large the object.
struct BodyReader<'a> {
    backend: &'a S3Backend,
    body: ByteStream,
    chunk: bytes::Bytes,
    /// Bytes still to drop from the start (a server that ignored Range).
    skip: u64,
    /// Bytes still to hand out.
    remaining: u64,
    /// Set when the network (not the consumer) failed, so the error is Transient.
    network_failed: bool,
}

impl<'a> BodyReader<'a> {
    fn new(backend: &'a S3Backend, body: ByteStream, skip: u64, remaining: u64) -> Self {
        Self {
            backend,
            body,
            chunk: bytes::Bytes::new(),
            skip,
            remaining,
            network_failed: false,
        }
    }

    fn next_chunk(&mut self) -> io::Result<bool> {
        let body = &mut self.body;
        let limit = self.backend.cfg.read_timeout;
        let next = self
            .backend
            .rt
            .block_on(async { tokio::time::timeout(limit, body.next()).await });
        match next {
            Ok(Some(Ok(c))) => {
                self.chunk = c;
                Ok(true)
            }
            Ok(None) => Ok(false),
            Ok(Some(Err(e))) => {
                self.network_failed = true;
                Err(io::Error::other(format!("download broke off: {e}")))
            }
            Err(_) => {
                self.network_failed = true;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("download stalled for {} s", limit.as_secs()),
                ))
            }
        }
    }

    /// The error for a failed read or consumer.
    fn error(&self, op: &'static str, path: &str, e: &io::Error) -> BackendError {
        let kind = if self.network_failed {
            BackendErrorKind::Transient
        } else {
            BackendErrorKind::Other
        };
        plain(kind, op, path, e.to_string())
    }
}

impl Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.chunk.is_empty() && !self.next_chunk()? {
                self.network_failed = true;
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("body ended {} bytes early", self.remaining),
                ));
            }
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(self.chunk.len());
                let _ = self.chunk.split_to(n);
                self.skip -= n as u64;
                continue;
            }
            let n = buf
                .len()
                .min(self.chunk.len())
                .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
            buf[..n].copy_from_slice(&self.chunk.split_to(n));
            self.remaining -= n as u64;
            return Ok(n);
        }
    }
}

/// `bytes 0-99/1234` → 1234.
fn range_total(content_range: &str) -> Option<u64> {
    content_range.rsplit_once('/')?.1.trim().parse().ok()
}

fn size_of(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn past_end(op: &'static str, path: &str, r: &Range<u64>, size: u64) -> BackendError {
    let msg = format!(
        "range {}..{} does not fit an object of {size} bytes",
        r.start, r.end
    );
    plain(BackendErrorKind::RangeNotSatisfiable, op, path, msg)
}

fn too_large(op: &'static str, path: &str, len: u64) -> BackendError {
    let msg = format!("range of {len} bytes exceeds the bounded-read limit of {MAX_BOUNDED_READ}");
    plain(BackendErrorKind::Other, op, path, msg)
}

fn local_file_error(op: &'static str, path: &str, why: &str) -> BackendError {
    plain(
        BackendErrorKind::Other,
        op,
        path,
        format!("reading the local body file: {why}"),
    )
}

/// Base64 Content-MD5 of exactly `len` bytes from `r`.
fn md5_base64(r: &mut dyn Read, len: u64) -> io::Result<String> {
    let mut h = Md5::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("body is {} bytes shorter than its stated length", left),
            ));
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(h.finalize()))
}

/// Content-MD5 of a whole write body.
fn md5_of(body: &WriteBody<'_>, path: &str) -> Result<String, BackendError> {
    if let WriteBody::Bytes(b) = body {
        return Ok(base64::engine::general_purpose::STANDARD.encode(Md5::digest(b)));
    }
    // Unpaced: hashing is local and must not spend the upload's rate budget.
    body.open_unpaced()
        .and_then(|mut r| md5_base64(&mut r, body.len()))
        .map_err(|e| local_file_error("write", path, &e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_total() {
        assert_eq!(range_total("bytes 0-99/1234"), Some(1234));
        assert_eq!(range_total("bytes 0-99/*"), None);
        assert_eq!(range_total("garbage"), None);
    }

    #[test]
    fn md5_matches_known_value() {
        // RFC 1321 test suite: MD5("abc").
        let b64 = md5_base64(&mut &b"abc"[..], 3).map_err(|e| e.to_string());
        let want = base64::engine::general_purpose::STANDARD
            .encode(hex::decode("900150983cd24fb0d6963f7d28e17f72").unwrap_or_default());
        assert_eq!(b64, Ok(want));
        assert!(md5_base64(&mut &b"ab"[..], 3).is_err(), "short body");
    }
}
