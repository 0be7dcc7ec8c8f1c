//! Strict CBOR reading for the bundle format.
//!
//! BPv7 uses five kinds of CBOR item (unsigned integers, definite arrays, byte strings, text strings, and
//! the indefinite bundle array), so the hot path reads their heads directly: one branch per item instead of
//! a peek-then-read through a general decoder, which profiling showed to be a quarter of decode time.
//! Skipping arbitrary items (unknown EID schemes, administrative records we do not interpret) is done here too,
//! strictly: a general-purpose decoder's skip accepted a lone break byte as an item, which would have let
//! malformed CBOR be forwarded.

use std::borrow::Cow;

use super::error::{DecodeError, ErrorKind};

pub(crate) type Result<T> = std::result::Result<T, DecodeError>;

pub(crate) const MAJOR_UINT: u8 = 0;
pub(crate) const MAJOR_BYTES: u8 = 2;
pub(crate) const MAJOR_TEXT: u8 = 3;
pub(crate) const MAJOR_ARRAY: u8 = 4;

/// Deepest nesting `Reader::skip` follows: ample for any real record, and a bound on recursion for
/// adversarial input.
pub(crate) const MAX_SKIP_DEPTH: usize = 64;

/// A cursor over one bundle's bytes; error offsets are positions in `input`.
pub(crate) struct Reader<'b> {
    input: &'b [u8],
    pos: usize,
}

impl<'b> Reader<'b> {
    #[inline]
    pub(crate) fn new(input: &'b [u8]) -> Self {
        Reader { input, pos: 0 }
    }

    #[inline]
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    #[inline]
    pub(crate) fn set_pos(&mut self, pos: usize) {
        self.pos = pos;
    }

    #[inline]
    pub(crate) fn input(&self) -> &'b [u8] {
        self.input
    }

    #[inline]
    fn truncated(&self) -> DecodeError {
        DecodeError::new(self.input.len(), ErrorKind::Truncated)
    }

    /// Reads a head of the given major type; `Ok(None)` for an indefinite-length marker.
    #[inline(always)]
    fn head(&mut self, major: u8, expected: &'static str) -> Result<Option<u64>> {
        let at = self.pos;
        let Some(&ib) = self.input.get(at) else { return Err(self.truncated()) };
        // Most items in a bundle are small: one byte, no further dispatch.
        if ib >> 5 == major && ib & 0x1f < 24 {
            self.pos = at + 1;
            return Ok(Some(u64::from(ib & 0x1f)));
        }
        if ib >> 5 != major {
            return Err(DecodeError::new(at, ErrorKind::UnexpectedCbor { expected }));
        }
        let (arg, len) = match ib & 0x1f {
            n @ 0..=23 => (u64::from(n), 1),
            24 => (u64::from(*self.input.get(at + 1).ok_or_else(|| self.truncated())?), 2),
            25 => (self.be(at + 1, 2)?, 3),
            26 => (self.be(at + 1, 4)?, 5),
            27 => (self.be(at + 1, 8)?, 9),
            31 if major != MAJOR_UINT => {
                self.pos = at + 1;
                return Ok(None);
            }
            _ => return Err(DecodeError::new(at, ErrorKind::UnexpectedCbor { expected })),
        };
        self.pos = at + len;
        Ok(Some(arg))
    }

    #[inline]
    fn be(&self, from: usize, n: usize) -> Result<u64> {
        let Some(b) = self.input.get(from..from + n) else { return Err(self.truncated()) };
        Ok(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// A definite-length head; indefinite is an error at `at`.
    #[inline(always)]
    fn definite(&mut self, major: u8, expected: &'static str) -> Result<u64> {
        let at = self.pos;
        self.head(major, expected)?.ok_or_else(|| DecodeError::new(at, ErrorKind::UnexpectedCbor { expected }))
    }

    /// An unsigned integer.
    #[inline(always)]
    pub(crate) fn u64(&mut self, expected: &'static str) -> Result<u64> {
        self.definite(MAJOR_UINT, expected)
    }

    /// An array header: `Some(count)`, or `None` for an indefinite-length array. RFC 9171 §4.1 lets every
    /// item inside a block be indefinite-length except block data and the CRC field.
    #[inline(always)]
    pub(crate) fn array(&mut self, expected: &'static str) -> Result<Option<u64>> {
        self.head(MAJOR_ARRAY, expected)
    }

    /// Closes an array of which all expected items were read: an indefinite one must end with a break here.
    #[inline]
    pub(crate) fn close(&mut self, len: Option<u64>, expected: &'static str) -> Result<()> {
        if len.is_none() && !self.try_break()? {
            return Err(DecodeError::new(self.pos, ErrorKind::UnexpectedCbor { expected }));
        }
        Ok(())
    }

    /// Whether an array opened with `len` has no more items after `read` of them (consuming the break of an
    /// indefinite one).
    #[inline]
    pub(crate) fn at_end(&mut self, len: Option<u64>, read: u64) -> Result<bool> {
        match len {
            Some(n) => Ok(read >= n),
            None => self.try_break(),
        }
    }

    /// The header of a definite-length byte string; returns its length without consuming the content, so
    /// the streaming decoder can pass a payload through. Indefinite (chunked) strings are ruled out by
    /// RFC 9171 §4.3.2.
    #[inline(always)]
    pub(crate) fn bytes_header(&mut self, expected: &'static str) -> Result<u64> {
        self.definite(MAJOR_BYTES, expected)
    }

    /// A definite-length byte string, borrowed.
    #[cfg(test)]
    pub(crate) fn bytes(&mut self, expected: &'static str) -> Result<&'b [u8]> {
        let len = self.bytes_header(expected)?;
        self.take(len)
    }

    /// A text string's raw bytes (UTF-8 is the caller's check): borrowed when definite-length, assembled from
    /// its chunks, at most `max_len` bytes, when indefinite.
    #[inline(always)]
    pub(crate) fn text_bytes(&mut self, expected: &'static str, max_len: usize) -> Result<Cow<'b, [u8]>> {
        match self.head(MAJOR_TEXT, expected)? {
            Some(len) => self.take(len).map(Cow::Borrowed),
            None => {
                let mut out = Vec::new();
                while !self.try_break()? {
                    let len = self.definite(MAJOR_TEXT, "a definite-length text chunk")?;
                    // `len` is untrusted (up to u64::MAX): saturate rather than overflow.
                    if (out.len() as u64).saturating_add(len) > max_len as u64 {
                        return Err(DecodeError::new(
                            self.pos,
                            ErrorKind::UnexpectedCbor { expected: "a shorter text" },
                        ));
                    }
                    out.extend_from_slice(self.take(len)?);
                }
                Ok(Cow::Owned(out))
            }
        }
    }

    #[inline]
    fn take(&mut self, len: u64) -> Result<&'b [u8]> {
        let start = self.pos;
        let end = usize::try_from(len).ok().and_then(|l| start.checked_add(l)).filter(|&e| e <= self.input.len());
        let Some(end) = end else { return Err(self.truncated()) };
        self.pos = end;
        Ok(&self.input[start..end])
    }

    /// Major type of the next item, without consuming it.
    #[inline]
    pub(crate) fn peek_major(&self) -> Result<u8> {
        self.input.get(self.pos).map(|b| b >> 5).ok_or_else(|| self.truncated())
    }

    /// A CBOR boolean.
    pub(crate) fn bool(&mut self, expected: &'static str) -> Result<bool> {
        match self.input.get(self.pos) {
            None => Err(self.truncated()),
            Some(0xf4) => {
                self.pos += 1;
                Ok(false)
            }
            Some(0xf5) => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Err(DecodeError::new(self.pos, ErrorKind::UnexpectedCbor { expected })),
        }
    }

    /// Consumes a CBOR "break" (0xff) if it is next; returns whether it did.
    #[inline]
    pub(crate) fn try_break(&mut self) -> Result<bool> {
        match self.input.get(self.pos) {
            None => Err(self.truncated()),
            Some(0xff) => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
        }
    }

    /// Skips one arbitrary, well-formed CBOR item (RFC 8949 §3): any major type, definite or indefinite,
    /// nested up to [`MAX_SKIP_DEPTH`]. Strict where general decoders are lenient: a break outside an
    /// indefinite-length item, a reserved additional-information value, a chunk of the wrong type inside an
    /// indefinite string, or invalid UTF-8 in a text string are all errors.
    pub(crate) fn skip(&mut self, expected: &'static str) -> Result<()> {
        self.skip_item(expected, 0)
    }

    fn skip_item(&mut self, expected: &'static str, depth: usize) -> Result<()> {
        let at = self.pos;
        let bad = || DecodeError::new(at, ErrorKind::UnexpectedCbor { expected });
        if depth > MAX_SKIP_DEPTH {
            return Err(bad());
        }
        let Some(&ib) = self.input.get(at) else { return Err(self.truncated()) };
        let major = ib >> 5;
        if major == 7 {
            // Simple values and floats: a fixed number of bytes follows; 31 is a break, not an item.
            let extra = match ib & 0x1f {
                0..=23 => 0,
                24 => 1,
                25 => 2,
                26 => 4,
                27 => 8,
                _ => return Err(bad()),
            };
            return self.take(1 + extra).map(|_| ());
        }
        let arg = self.head(major, expected)?;
        match (major, arg) {
            (0 | 1, Some(_)) => Ok(()),
            (2 | 3, Some(len)) => {
                let b = self.take(len)?;
                if major == 3 && std::str::from_utf8(b).is_err() {
                    return Err(DecodeError::new(at, ErrorKind::InvalidUtf8));
                }
                Ok(())
            }
            (2 | 3, None) => {
                // Chunks must be definite strings of the same major type.
                while !self.try_break()? {
                    let chunk_at = self.pos;
                    match self.input.get(chunk_at) {
                        Some(&c) if c >> 5 == major && c & 0x1f != 31 => self.skip_item(expected, depth + 1)?,
                        Some(_) => return Err(DecodeError::new(chunk_at, ErrorKind::UnexpectedCbor { expected })),
                        None => return Err(self.truncated()),
                    }
                }
                Ok(())
            }
            (4 | 5, Some(n)) => {
                let items = if major == 5 { n.saturating_mul(2) } else { n };
                // Every item takes at least one byte, so the loop is bounded by the input.
                for _ in 0..items {
                    self.skip_item(expected, depth + 1)?;
                }
                Ok(())
            }
            (4 | 5, None) => {
                while !self.try_break()? {
                    self.skip_item(expected, depth + 1)?;
                    if major == 5 {
                        self.skip_item(expected, depth + 1)?;
                    }
                }
                Ok(())
            }
            (6, Some(_)) => self.skip_item(expected, depth + 1),
            _ => Err(bad()),
        }
    }
}

/// Appends the CBOR head (major type + argument) in its shortest form.
#[inline]
pub fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else if arg <= 0xff {
        out.extend_from_slice(&[m | 24, arg as u8]);
    } else if arg <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(arg as u16).to_be_bytes());
    } else if arg <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

/// Length of the shortest CBOR head for `arg`.
#[inline]
pub(crate) const fn head_len(arg: u64) -> usize {
    if arg < 24 {
        1
    } else if arg <= 0xff {
        2
    } else if arg <= 0xffff {
        3
    } else if arg <= 0xffff_ffff {
        5
    } else {
        9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_of_every_width_and_their_errors() {
        for v in [0u64, 23, 24, 255, 256, 65_535, 65_536, u64::from(u32::MAX), u64::from(u32::MAX) + 1, u64::MAX] {
            let mut b = Vec::new();
            write_head(&mut b, MAJOR_UINT, v);
            assert_eq!(b.len(), head_len(v));
            let mut r = Reader::new(&b);
            assert_eq!(r.u64("uint").unwrap(), v);
            assert_eq!(r.pos(), b.len());
            // Every proper prefix is a truncation, never a panic.
            for cut in 0..b.len() {
                assert_eq!(Reader::new(&b[..cut]).u64("uint").unwrap_err().kind, ErrorKind::Truncated);
            }
        }
        // Reserved additional information 28..30, and indefinite uints, are malformed.
        for ib in [0x1c, 0x1d, 0x1e, 0x1f] {
            assert!(matches!(Reader::new(&[ib]).u64("uint").unwrap_err().kind, ErrorKind::UnexpectedCbor { .. }));
        }
        // Non-minimal heads are accepted (other encoders emit them).
        assert_eq!(Reader::new(&[0x18, 0x05]).u64("uint").unwrap(), 5);
        // Wrong major type.
        assert!(Reader::new(&[0x40]).u64("uint").is_err());
        assert_eq!(Reader::new(&[0x9f]).array("array").unwrap(), None);
        assert!(Reader::new(&[0x40]).array("array").is_err());
    }

    #[test]
    fn chunked_text_is_assembled_within_bounds() {
        let b = [0x7f, 0x62, b'/', b'/', 0x61, b'a', 0xff];
        assert_eq!(&*Reader::new(&b).text_bytes("text", 16).unwrap(), b"//a");
        assert!(Reader::new(&b).text_bytes("text", 2).is_err());
        // A chunk that is not a definite text string is malformed.
        assert!(Reader::new(&[0x7f, 0x41, b'a', 0xff]).text_bytes("text", 16).is_err());
    }

    #[test]
    fn skip_is_strict() {
        let ok: [&[u8]; 8] = [
            &[0x00],
            &[0x3b, 0, 0, 0, 0, 0, 0, 0, 1],
            &[0x83, 0x01, 0x61, b'a', 0x40],
            &[0x9f, 0xa1, 0x01, 0x9f, 0xff, 0xff],
            &[0x5f, 0x41, 0x00, 0x40, 0xff],
            &[0xc1, 0x1a, 0, 0, 0, 1],
            &[0xfb, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xf5],
        ];
        for b in ok {
            let mut r = Reader::new(b);
            r.skip("item").unwrap_or_else(|e| panic!("{b:02x?}: {e}"));
            assert_eq!(r.pos(), b.len(), "{b:02x?}");
        }
        let bad: [&[u8]; 8] = [
            &[0xff],
            &[0x81, 0xff],
            &[0x1c],
            &[0x5f, 0x61, b'a', 0xff],
            &[0x62, 0xff, 0xfe],
            &[0xa1, 0x01],
            &[0xf8],
            &[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ];
        for b in bad {
            assert!(Reader::new(b).skip("item").is_err(), "{b:02x?} accepted");
        }
        // Deep nesting is refused, not followed to a stack overflow.
        let deep = vec![0x81u8; 100_000];
        assert!(Reader::new(&deep).skip("item").is_err());
    }

    #[test]
    fn oversized_string_lengths_are_truncation() {
        let b = [0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00];
        assert_eq!(Reader::new(&b).bytes("bytes").unwrap_err().kind, ErrorKind::Truncated);
    }
}
