//! Canonical CBOR (RFC 8949 §4.2.1 "core deterministic encoding"), the subset cairn uses.
//!
//! Every structure is a map with small unsigned-integer keys in strictly increasing order,
//! integers in their shortest form, definite lengths only, no floats and no tags. The decoder
//! rejects anything else, so one value has exactly one encoding and ids computed over
//! encodings (tree ids) are stable. Lengths are checked against the bytes left before anything
//! is allocated, so hostile input cannot make the decoder allocate more than its input size.

/// A decoding failure, with the byte offset where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid encoding at byte {pos}: {what}")]
pub struct CborError {
    /// Offset into the input.
    pub pos: usize,
    /// What was wrong.
    pub what: &'static str,
}

const MAX_DEPTH: usize = 64;

/// Canonical CBOR writer.
#[derive(Default)]
pub struct Enc {
    /// The encoded bytes.
    pub buf: Vec<u8>,
}

impl Enc {
    /// An empty encoder.
    pub fn new() -> Self {
        Self::default()
    }

    fn head(&mut self, major: u8, n: u64) {
        let m = major << 5;
        if n < 24 {
            self.buf.push(m | n as u8);
        } else if n <= 0xff {
            self.buf.push(m | 24);
            self.buf.push(n as u8);
        } else if n <= 0xffff {
            self.buf.push(m | 25);
            self.buf.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            self.buf.push(m | 26);
            self.buf.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            self.buf.push(m | 27);
            self.buf.extend_from_slice(&n.to_be_bytes());
        }
    }

    /// An unsigned integer.
    pub fn u64(&mut self, n: u64) -> &mut Self {
        self.head(0, n);
        self
    }

    /// A signed integer.
    pub fn i64(&mut self, n: i64) -> &mut Self {
        if n >= 0 {
            self.head(0, n as u64);
        } else {
            self.head(1, !(n as u64));
        }
        self
    }

    /// A byte string.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.head(2, b.len() as u64);
        self.buf.extend_from_slice(b);
        self
    }

    /// A text string.
    pub fn text(&mut self, s: &str) -> &mut Self {
        self.head(3, s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
        self
    }

    /// An array header of `n` items.
    pub fn array(&mut self, n: usize) -> &mut Self {
        self.head(4, n as u64);
        self
    }

    /// A map header of `n` pairs.
    pub fn map(&mut self, n: usize) -> &mut Self {
        self.head(5, n as u64);
        self
    }

    /// A boolean.
    pub fn bool(&mut self, b: bool) -> &mut Self {
        self.buf.push(if b { 0xf5 } else { 0xf4 });
        self
    }

    /// A map key (an unsigned integer).
    pub fn key(&mut self, k: u64) -> &mut Self {
        self.u64(k)
    }
}

/// Canonical CBOR reader over an authenticated buffer.
pub struct Dec<'a> {
    data: &'a [u8],
    pos: usize,
    depth: usize,
}

impl<'a> Dec<'a> {
    /// A reader at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            depth: 0,
        }
    }

    /// An error at the current position.
    pub fn err(&self, what: &'static str) -> CborError {
        CborError {
            pos: self.pos,
            what,
        }
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), CborError> {
        if self.pos == self.data.len() {
            Ok(())
        } else {
            Err(self.err("trailing bytes"))
        }
    }

    fn byte(&mut self) -> Result<u8, CborError> {
        let b = *self.data.get(self.pos).ok_or(self.err("unexpected end"))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CborError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(self.err("length past end of input"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn head(&mut self) -> Result<(u8, u64), CborError> {
        let b = self.byte()?;
        let (major, info) = (b >> 5, b & 0x1f);
        let n = match info {
            0..=23 => u64::from(info),
            24 => {
                let v = u64::from(self.byte()?);
                if v < 24 {
                    return Err(self.err("non-canonical integer"));
                }
                v
            }
            25 => {
                let s = self.take(2)?;
                let v = u64::from(u16::from_be_bytes([s[0], s[1]]));
                if v <= 0xff {
                    return Err(self.err("non-canonical integer"));
                }
                v
            }
            26 => {
                let s = self.take(4)?;
                let v = u64::from(u32::from_be_bytes([s[0], s[1], s[2], s[3]]));
                if v <= 0xffff {
                    return Err(self.err("non-canonical integer"));
                }
                v
            }
            27 => {
                let s = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                let v = u64::from_be_bytes(a);
                if v <= 0xffff_ffff {
                    return Err(self.err("non-canonical integer"));
                }
                v
            }
            _ => return Err(self.err("indefinite length or reserved value")),
        };
        Ok((major, n))
    }

    fn expect(&mut self, major: u8, what: &'static str) -> Result<u64, CborError> {
        let start = self.pos;
        let (m, n) = self.head()?;
        if m != major {
            self.pos = start;
            return Err(self.err(what));
        }
        Ok(n)
    }

    /// An unsigned integer.
    pub fn u64(&mut self) -> Result<u64, CborError> {
        self.expect(0, "expected an unsigned integer")
    }

    /// An unsigned integer that must fit in u32.
    pub fn u32(&mut self) -> Result<u32, CborError> {
        let n = self.u64()?;
        u32::try_from(n).map_err(|_| self.err("integer out of range"))
    }

    /// An unsigned integer that must fit in u8.
    pub fn u8(&mut self) -> Result<u8, CborError> {
        let n = self.u64()?;
        u8::try_from(n).map_err(|_| self.err("integer out of range"))
    }

    /// A signed integer.
    pub fn i64(&mut self) -> Result<i64, CborError> {
        let (m, n) = self.head()?;
        match m {
            0 => i64::try_from(n).map_err(|_| self.err("integer out of range")),
            1 => i64::try_from(n)
                .map(|v| -1 - v)
                .map_err(|_| self.err("integer out of range")),
            _ => Err(self.err("expected an integer")),
        }
    }

    /// A byte string, borrowed.
    pub fn bytes(&mut self) -> Result<&'a [u8], CborError> {
        let n = self.expect(2, "expected a byte string")?;
        let n = usize::try_from(n).map_err(|_| self.err("length too large"))?;
        self.take(n)
    }

    /// A byte string of exactly N bytes.
    pub fn fixed<const N: usize>(&mut self) -> Result<[u8; N], CborError> {
        let b = self.bytes()?;
        b.try_into()
            .map_err(|_| self.err("wrong byte-string length"))
    }

    /// A UTF-8 text string, borrowed.
    pub fn text(&mut self) -> Result<&'a str, CborError> {
        let n = self.expect(3, "expected a text string")?;
        let n = usize::try_from(n).map_err(|_| self.err("length too large"))?;
        let s = self.take(n)?;
        std::str::from_utf8(s).map_err(|_| self.err("invalid UTF-8"))
    }

    /// A boolean.
    pub fn bool(&mut self) -> Result<bool, CborError> {
        match self.byte()? {
            0xf4 => Ok(false),
            0xf5 => Ok(true),
            _ => {
                self.pos -= 1;
                Err(self.err("expected a boolean"))
            }
        }
    }

    /// An array header; the count is bounded by the bytes left (every item takes at least one).
    pub fn array(&mut self) -> Result<usize, CborError> {
        let n = self.expect(4, "expected an array")?;
        self.count(n)
    }

    /// A map header; the count is bounded by the bytes left (every pair takes at least two).
    pub fn map(&mut self) -> Result<usize, CborError> {
        let n = self.expect(5, "expected a map")?;
        let n = self.count(n)?;
        if n.saturating_mul(2) > self.data.len() - self.pos {
            return Err(self.err("map longer than its input"));
        }
        Ok(n)
    }

    fn count(&self, n: u64) -> Result<usize, CborError> {
        let n = usize::try_from(n).map_err(|_| self.err("length too large"))?;
        if n > self.data.len() - self.pos {
            return Err(self.err("count longer than its input"));
        }
        Ok(n)
    }

    /// Reads a map key, which must be greater than the previous one (canonical order).
    pub fn key(&mut self, prev: &mut Option<u64>) -> Result<u64, CborError> {
        let k = self.u64()?;
        if prev.is_some_and(|p| k <= p) {
            return Err(self.err("map keys out of canonical order"));
        }
        *prev = Some(k);
        Ok(k)
    }

    /// Enters a nested structure; bounded so hostile nesting cannot exhaust the stack.
    pub fn enter(&mut self) -> Result<(), CborError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        Ok(())
    }

    /// Leaves a nested structure.
    pub fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_shortest_form() {
        for (n, len) in [
            (0u64, 1),
            (23, 1),
            (24, 2),
            (255, 2),
            (256, 3),
            (65536, 5),
            (1 << 32, 9),
        ] {
            let mut e = Enc::new();
            e.u64(n);
            assert_eq!(e.buf.len(), len, "{n}");
            let mut d = Dec::new(&e.buf);
            assert_eq!(d.u64().unwrap(), n);
            d.finish().unwrap();
        }
        // 5 encoded in a 1-byte extra field is not canonical.
        assert!(Dec::new(&[0x18, 5]).u64().is_err());
    }

    #[test]
    fn negative_integers_round_trip() {
        for n in [-1i64, -24, -25, -1_000_000_000_000, i64::MIN, i64::MAX] {
            let mut e = Enc::new();
            e.i64(n);
            assert_eq!(Dec::new(&e.buf).i64().unwrap(), n);
        }
    }

    #[test]
    fn lengths_are_bounded_by_input() {
        // A byte string claiming 2^32 bytes in a 9-byte input.
        assert!(Dec::new(&[0x5a, 0xff, 0xff, 0xff, 0xff]).bytes().is_err());
        assert!(Dec::new(&[0x9a, 0xff, 0xff, 0xff, 0xff]).array().is_err());
        assert!(Dec::new(&[0x5f]).bytes().is_err(), "indefinite length");
    }

    #[test]
    fn keys_must_increase() {
        let mut d = Dec::new(&[1, 1]);
        let mut prev = None;
        d.key(&mut prev).unwrap();
        assert!(d.key(&mut prev).is_err());
    }
}
