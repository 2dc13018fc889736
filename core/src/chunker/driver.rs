//! Streaming driver: feeds `cut_gear` from a reader through a bounded buffer.

use std::io::{self, Read};
use std::sync::Arc;

use super::{ChunkerError, ChunkerParams, GearTable, Resolved};

/// First allocation of the buffer; it then doubles up to what the lookahead needs, so small
/// files never pay for a 4 MiB buffer.
const INITIAL_BUFFER: usize = 64 * 1024;

/// Splits a byte stream into content-defined chunks.
///
/// The chunker looks only `2 * avg` bytes ahead of the chunk start (4 MiB buffered with the
/// default parameters, not `2 * max` = 16 MiB): a cut found inside a window of at least
/// `avg` bytes is the cut the whole stream would give, because `cut_gear` scans from the
/// chunk start and its masks change at `avg`, not at the window's end. Only a chunk longer
/// than the window makes the driver read further and scan again, up to `max`. Memory is one
/// buffer of at most `max + 2 * avg` bytes; a compaction moves fewer than `2 * avg` bytes
/// after at least as many were consumed, so at most one extra copy of the input, amortised.
pub struct Chunker<R: Read> {
    reader: R,
    gear: Arc<GearTable>,
    params: Resolved,
    /// Read but possibly not yet emitted bytes; `buf[pos..]` is unconsumed.
    buf: Vec<u8>,
    pos: usize,
    /// The reader returned end of file; no more refills.
    eof: bool,
}

impl<R: Read> Chunker<R> {
    /// A chunker over `reader`. Fails only if `params` are invalid.
    pub fn new(
        reader: R,
        gear: Arc<GearTable>,
        params: &ChunkerParams,
    ) -> Result<Self, ChunkerError> {
        Ok(Self {
            reader,
            gear,
            params: params.resolve()?,
            buf: Vec::new(),
            pos: 0,
            eof: false,
        })
    }

    /// How far ahead of a chunk start the driver reads before it looks for the cut.
    fn lookahead(&self) -> usize {
        (2 * self.params.avg).min(self.params.max)
    }

    /// The next chunk, or `None` at the end of the stream (an empty stream has no chunks).
    ///
    /// Short reads and `Interrupted` are handled. After another I/O error, the bytes read so far
    /// are kept and a later call retries the reader.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut want = self.lookahead();
        loop {
            if !self.eof && self.buf.len() - self.pos < want {
                self.refill(want)?;
            }
            // Here either `want` (at least `avg`) bytes are available or the stream has ended.
            let window = &self.buf[self.pos..];
            if window.is_empty() {
                return Ok(None);
            }
            let len = self.params.cut_len(&self.gear, window);
            if len == 0 || len > window.len() {
                // cut_gear's contract says this cannot happen; refuse rather than loop or panic.
                return Err(io::Error::other(
                    "chunker: cut_gear returned an invalid length",
                ));
            }
            // A cut before the window's end, in a window of at least `avg` bytes, is final;
            // so is anything at `max` or at the end of the stream. Otherwise the chunk may run
            // past the window: read further and scan again.
            let found = len < window.len() && window.len() >= self.params.avg;
            if found || self.eof || window.len() >= self.params.max {
                let chunk = window[..len].to_vec();
                self.pos += len;
                return Ok(Some(chunk));
            }
            want = (window.len() + self.lookahead()).min(self.params.max);
        }
    }

    /// Moves the unconsumed tail to the front and reads until `want + lookahead` bytes are
    /// buffered (so the next refill is a lookahead away) or the reader is exhausted.
    fn refill(&mut self, want: usize) -> io::Result<()> {
        if self.pos > 0 {
            // Fewer than `want` bytes move here (the caller checked), see the type's doc.
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let limit = want + self.lookahead();
        while self.buf.len() < limit {
            if self.buf.len() == self.buf.capacity() {
                let grow = self
                    .buf
                    .capacity()
                    .max(INITIAL_BUFFER)
                    .min(limit - self.buf.len());
                self.buf.reserve_exact(grow);
            }
            // Read exactly into the spare capacity: `read_to_end` on a `Take` that fits never
            // reallocates (it probes for end of file before growing), retries `Interrupted`,
            // keeps what it read on error, and returns less than the limit only at end of file.
            let room = self.buf.capacity().min(limit) - self.buf.len();
            let got = (&mut self.reader)
                .take(room as u64)
                .read_to_end(&mut self.buf)?;
            if got < room {
                self.eof = true;
                break;
            }
        }
        Ok(())
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::tests::{xof_bytes, MID, SMALL};
    use super::super::{cut_points, ChunkerParams, GearTable};
    use super::*;

    /// A reader returning 1..=`max_step` bytes per call, chosen pseudo-randomly, and an
    /// `Interrupted` error every seventh call.
    struct ShortReader<'a> {
        data: &'a [u8],
        rng: blake3::OutputReader,
        max_step: usize,
        calls: usize,
        largest_ask: usize,
    }

    impl<'a> ShortReader<'a> {
        fn new(data: &'a [u8], max_step: usize) -> Self {
            Self {
                data,
                rng: blake3::Hasher::new().update(b"short").finalize_xof(),
                max_step,
                calls: 0,
                largest_ask: 0,
            }
        }
    }

    impl Read for ShortReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            self.largest_ask = self.largest_ask.max(buf.len());
            if self.calls.is_multiple_of(7) {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let mut r = [0u8; 4];
            self.rng.fill(&mut r);
            let step = 1 + u32::from_le_bytes(r) as usize % self.max_step;
            let n = step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn stream_ends<R: Read>(
        reader: R,
        gear: &Arc<GearTable>,
        params: &ChunkerParams,
    ) -> Vec<usize> {
        let mut end = 0;
        Chunker::new(reader, Arc::clone(gear), params)
            .unwrap()
            .map(|c| {
                end += c.unwrap().len();
                end
            })
            .collect()
    }

    #[test]
    fn stream_matches_whole_buffer_with_short_reads() {
        let gear = Arc::new(GearTable::from_key(&[9; 32]));
        let cases: [(ChunkerParams, usize, usize); 3] = [
            (SMALL, 100_003, 17),
            (MID, 1_000_001, 5000),
            (ChunkerParams::default(), 20 << 20, 3 << 20),
        ];
        for (params, len, step) in cases {
            let data = xof_bytes(&len.to_le_bytes(), len);
            let whole = cut_points(&data, &gear, &params).unwrap();
            let mut reader = ShortReader::new(&data, step);
            let streamed = stream_ends(&mut reader, &gear, &params);
            assert_eq!(streamed, whole, "params {params:?}");
            // The buffer never asks for more than its bound.
            assert!(reader.largest_ask <= (params.max + 2 * params.avg) as usize);
            // Plain reader too.
            assert_eq!(stream_ends(&data[..], &gear, &params), whole);
        }
    }

    /// Runs of zeros make chunks of up to `max`, longer than the lookahead, so the driver
    /// must read further and scan again; the cuts must still be the whole buffer's.
    #[test]
    fn chunks_longer_than_the_lookahead_cut_as_over_the_whole_input() {
        let gear = Arc::new(GearTable::from_key(&[3; 32]));
        for params in [SMALL, MID, ChunkerParams::default()] {
            let max = params.max as usize;
            let mut data = xof_bytes(b"head", 3 * params.avg as usize);
            data.extend(std::iter::repeat_n(0u8, 3 * max + 12_345));
            data.extend(xof_bytes(b"mid", 5 * params.avg as usize));
            data.extend(std::iter::repeat_n(7u8, max - 1));
            data.extend(xof_bytes(b"tail", params.avg as usize / 2));
            let whole = cut_points(&data, &gear, &params).unwrap();
            let longest = whole
                .iter()
                .scan(0, |prev, &e| {
                    let len = e - *prev;
                    *prev = e;
                    Some(len)
                })
                .max()
                .unwrap();
            assert!(
                longest > 2 * params.avg as usize,
                "{params:?}: no long chunk"
            );
            for step in [params.min as usize / 3 + 1, 4096, 1 << 20] {
                let mut reader = ShortReader::new(&data, step);
                assert_eq!(
                    stream_ends(&mut reader, &gear, &params),
                    whole,
                    "{params:?}"
                );
            }
            assert_eq!(stream_ends(&data[..], &gear, &params), whole);
        }
    }

    #[test]
    fn chunks_concatenate_to_input_and_empty_input_has_none() {
        let gear = Arc::new(GearTable::from_key(&[5; 32]));
        let data = xof_bytes(b"concat", 300_001);
        let chunks: Vec<Vec<u8>> =
            Chunker::new(ShortReader::new(&data, 3000), gear.clone(), &SMALL)
                .unwrap()
                .collect::<io::Result<_>>()
                .unwrap();
        assert_eq!(chunks.concat(), data);
        let mut empty = Chunker::new(&[][..], gear, &SMALL).unwrap();
        assert!(empty.next_chunk().unwrap().is_none());
        assert!(empty.next().is_none());
    }

    #[test]
    fn io_errors_are_returned_and_reading_resumes() {
        struct Flaky<'a> {
            data: &'a [u8],
            fail_next: bool,
        }
        impl Read for Flaky<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.fail_next = !self.fail_next;
                if self.fail_next {
                    return Err(io::Error::other("flaky"));
                }
                let n = buf.len().min(self.data.len()).min(1000);
                buf[..n].copy_from_slice(&self.data[..n]);
                self.data = &self.data[n..];
                Ok(n)
            }
        }
        let gear = Arc::new(GearTable::from_key(&[6; 32]));
        let data = xof_bytes(b"flaky", 50_000);
        let mut chunker = Chunker::new(
            Flaky {
                data: &data,
                fail_next: false,
            },
            gear.clone(),
            &SMALL,
        )
        .unwrap();
        let mut out = Vec::new();
        let mut errors = 0;
        loop {
            match chunker.next_chunk() {
                Ok(Some(c)) => out.push(c),
                Ok(None) => break,
                Err(_) => errors += 1,
            }
        }
        assert!(errors > 0);
        assert_eq!(out.concat(), data);
        let mut end = 0;
        let ends: Vec<usize> = out
            .iter()
            .map(|c| {
                end += c.len();
                end
            })
            .collect();
        assert_eq!(ends, cut_points(&data, &gear, &SMALL).unwrap());
    }

    #[test]
    fn invalid_params_are_refused() {
        let gear = Arc::new(GearTable::from_key(&[0; 32]));
        let bad = ChunkerParams { level: 0, ..SMALL };
        assert!(Chunker::new(&[][..], gear, &bad).is_err());
    }
}
