//! Multipart upload of a spooled file: parts are streamed from the file one at a time (never
//! the whole file in memory), each with its own Content-MD5, and a failed upload is aborted
//! so no invisible parts keep costing storage.
//!
//! The object appears only at `CompleteMultipartUpload`, so readers still see all or nothing.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use cairn_core::backend::{BackendError, BackendErrorKind, WriteBody};

use super::client::{MAX_PARTS, MIN_PART_SIZE};
use super::error::{backend_error, plain};
use super::{i64_of, local_file_error, md5_base64, paced, S3Backend};

/// How long the best-effort abort after a failure may take.
const ABORT_TIMEOUT: Duration = Duration::from_secs(30);

/// The part size for a file of `len` bytes: the configured size, grown (in whole MiB) when the
/// file would otherwise need more than S3's 10,000 parts.
pub(crate) fn part_size(configured: u64, len: u64) -> u64 {
    let min_for_count = len.div_ceil(MAX_PARTS).next_multiple_of(1 << 20);
    configured.max(MIN_PART_SIZE).max(min_for_count)
}

/// Uploads `src` (`len` bytes) to `key` as a multipart upload.
pub(crate) fn upload(
    b: &S3Backend,
    path: &str,
    key: &str,
    src: &Path,
    len: u64,
    body: &WriteBody<'_>,
) -> Result<(), BackendError> {
    let bucket = &b.cfg.bucket;
    let create = b
        .client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .content_type("application/octet-stream")
        .send();
    let out = b
        .run(b.cfg.read_timeout, "write", path, create)?
        .map_err(|e| backend_error(&e, &b.scope(), "write", path))?;
    let Some(upload_id) = out.upload_id().map(str::to_owned) else {
        let msg = "the server started a multipart upload without an upload id";
        return Err(plain(BackendErrorKind::Transient, "write", path, msg));
    };
    let res = upload_parts(b, path, key, src, len, body, &upload_id).and_then(|parts| {
        let done = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        let complete = b
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(done)
            .send();
        // Completing can take a while on the server for many parts.
        b.run(b.upload_limit(0) * 5, "write", path, complete)?
            .map_err(|e| backend_error(&e, &b.scope(), "write", path))
    });
    if let Err(e) = res {
        let abort = b
            .client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .send();
        // Best effort: the upload already failed and that error is the one to report; a
        // leftover upload is invisible to readers (a bucket lifecycle rule can expire it).
        let _ = b.run(ABORT_TIMEOUT, "write", path, abort);
        return Err(e);
    }
    // Some stores answer CompleteMultipartUpload 200 and fail later, or assemble it wrong:
    // confirm the object is there with the right size before calling the write done.
    let got = b.head("write", path, key)?;
    if got != len {
        let msg = format!("multipart upload stored {got} bytes instead of {len}");
        return Err(plain(BackendErrorKind::Transient, "write", path, msg));
    }
    Ok(())
}

/// Uploads every part in order; returns them for CompleteMultipartUpload.
fn upload_parts(
    b: &S3Backend,
    path: &str,
    key: &str,
    src: &Path,
    len: u64,
    body: &WriteBody<'_>,
    upload_id: &str,
) -> Result<Vec<CompletedPart>, BackendError> {
    let size = part_size(b.cfg.part_size, len);
    let mut file = File::open(src).map_err(|e| local_file_error("write", path, &e.to_string()))?;
    // A paced body is sent from one sequential paced reader, part after part.
    let mut paced = if body.is_paced() {
        Some(
            body.open()
                .map_err(|e| local_file_error("write", path, &e.to_string()))?,
        )
    } else {
        None
    };
    let mut parts = Vec::new();
    let mut offset = 0u64;
    let mut number = 1i32;
    while offset < len {
        let n = size.min(len - offset);
        // Hash this part from the file (page cache), then let the SDK stream the same range.
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| local_file_error("write", path, &e.to_string()))?;
        let md5 = md5_base64(&mut (&mut file).take(n), n)
            .map_err(|e| local_file_error("write", path, &e.to_string()))?;
        let request = |stream: ByteStream| async move {
            b.client
                .upload_part()
                .bucket(&b.cfg.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(i64_of(n))
                .content_md5(md5)
                .body(stream)
                .send()
                .await
                .map_err(|e| backend_error(&e, &b.scope(), "write", path))
        };
        let out = match &mut paced {
            Some(reader) => {
                let limit = b.paced_upload_limit(n);
                paced::send(b, "write", path, limit, &mut **reader, n, request)?
            }
            None => {
                let stream =
                    b.rt.block_on(
                        ByteStream::read_from()
                            .path(src)
                            .offset(offset)
                            .length(Length::Exact(n))
                            .build(),
                    )
                    .map_err(|e| local_file_error("write", path, &e.to_string()))?;
                b.run(b.upload_limit(n), "write", path, request(stream))??
            }
        };
        let Some(etag) = out.e_tag() else {
            let msg = format!("the server accepted part {number} without an ETag");
            return Err(plain(BackendErrorKind::Transient, "write", path, msg));
        };
        parts.push(
            CompletedPart::builder()
                .e_tag(etag)
                .part_number(number)
                .build(),
        );
        offset += n;
        number += 1;
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_respects_limits() {
        assert_eq!(part_size(16 << 20, 40 << 20), 16 << 20);
        assert_eq!(part_size(1, 40 << 20), MIN_PART_SIZE, "at least 5 MiB");
        // 1 TiB in at most 10,000 parts.
        let tib = 1u64 << 40;
        let s = part_size(16 << 20, tib);
        assert!(tib.div_ceil(s) <= MAX_PARTS, "{s}");
        assert_eq!(s % (1 << 20), 0);
    }
}
