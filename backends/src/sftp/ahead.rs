//! Reading an SFTP stream ahead of its consumer.
//!
//! A restore decompresses and writes what it has read before asking for more. Read in
//! place, the stream then has no request in flight for that whole time, and libssh2 only
//! pipelines requests within one read call: the transfer and the consumer take turns
//! instead of overlapping. A scoped thread keeps up to [`DEPTH`] buffers of
//! [`CHUNK`](super::CHUNK) bytes read ahead, so memory stays bounded per stream.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver};

use super::CHUNK;

/// Buffers read ahead of the consumer.
const DEPTH: usize = 2;

/// The consumer's side: a reader over the buffers the thread delivers.
pub(super) struct AheadReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
    /// Set when the transfer itself failed, so a consumer error can be told apart from a
    /// network one.
    pub(super) failed: Option<io::ErrorKind>,
}

impl Read for AheadReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(next)) => {
                    self.cur = next;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    self.failed = Some(e.kind());
                    return Err(e);
                }
                // The reader thread ends its side when the range is done.
                Err(_) => self.done = true,
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Fills `buf` as far as the source allows; 0 means the end.
fn fill(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Runs `consume` on a reader of the next `len` bytes of `src`, read ahead by a thread.
pub(super) fn read_ahead<R: Read + Send, T>(
    src: R,
    len: u64,
    consume: impl FnOnce(&mut AheadReader) -> T,
) -> T {
    let chunk = usize::try_from(len).map_or(CHUNK, |l| l.clamp(1, CHUNK));
    std::thread::scope(|s| {
        let (tx, rx) = sync_channel(DEPTH);
        s.spawn(move || {
            let mut src = src.take(len);
            loop {
                let mut buf = vec![0u8; chunk];
                match fill(&mut src, &mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        // A closed channel: the consumer is done (or gave up); stop reading.
                        if tx.send(Ok(buf)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        let mut reader = AheadReader {
            rx,
            cur: Vec::new(),
            pos: 0,
            done: false,
            failed: None,
        };
        let out = consume(&mut reader);
        // Closing the receiver lets the thread stop after its current read.
        drop(reader);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_exactly_the_range_and_reports_failures() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let got = read_ahead(&data[..], 2_500_000, |r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v).map(|_| v)
        });
        assert_eq!(got.ok().as_deref(), Some(&data[..2_500_000]));

        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone"))
            }
        }
        let (res, failed) = read_ahead(Broken, 10, |r| {
            let mut v = Vec::new();
            (r.read_to_end(&mut v).map(drop), r.failed)
        });
        assert!(res.is_err());
        assert_eq!(failed, Some(io::ErrorKind::ConnectionReset));
        // A consumer that stops early does not hang the reader thread.
        let first = read_ahead(&data[..], 3_000_000, |r| {
            let mut b = [0u8; 10];
            r.read_exact(&mut b).map(|()| b[9])
        });
        assert_eq!(first.ok(), Some(9));
    }
}
