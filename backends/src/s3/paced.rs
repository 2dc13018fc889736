//! Uploads whose body is paced (`--limit-upload`): the bytes must leave at the paced rate,
//! not be read at that rate into memory and then sent in one burst, or the uplink the
//! user wanted to keep free is saturated after all.
//!
//! A scoped thread pulls the paced reader and hands 64 KiB pieces to the request through a
//! channel of four; the SDK pulls from the channel as the socket drains. So the network
//! sees the pace, and at most ~256 KiB sit in between.

use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use cairn_core::backend::BackendError;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use super::S3Backend;

/// An HTTP body fed through a channel.
struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    len: u64,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// Runs the request `build(body)` where `body` streams the next `len` bytes of `src`.
pub(crate) fn send<T, F>(
    b: &S3Backend,
    op: &'static str,
    path: &str,
    limit: Duration,
    src: &mut (dyn Read + Send),
    len: u64,
    build: impl FnOnce(ByteStream) -> F,
) -> Result<T, BackendError>
where
    F: Future<Output = Result<T, BackendError>>,
{
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    let body = ByteStream::from_body_1_x(ChannelBody { rx, len });
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut left = len;
            let mut buf = vec![0u8; 64 << 10];
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let piece = match src.read(&mut buf[..want]) {
                    Ok(0) => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the upload body ended before its declared length",
                    )),
                    Ok(n) => {
                        left -= n as u64;
                        Ok(Bytes::copy_from_slice(&buf[..n]))
                    }
                    Err(e) => Err(e),
                };
                let failed = piece.is_err();
                // A closed channel means the request ended (failed or timed out): stop.
                if tx.blocking_send(piece).is_err() || failed {
                    return;
                }
            }
        });
        // The request owns the receiver; when it ends, the feeder's next send fails and
        // it returns, so the scope never waits on a stuck thread.
        b.run(limit, op, path, build(body))?
    })
}
