//! Thin strict reading layer over `minicbor::Decoder`, mapping its errors to our typed rules with offsets.

use minicbor::Decoder;
use minicbor::data::Type;

use super::error::{DecodeError, ErrorKind};

pub(crate) type Result<T> = std::result::Result<T, DecodeError>;

/// A reader positioned inside one bundle; offsets in errors are relative to `base` plus the decoder position.
pub(crate) struct Reader<'b> {
    pub(crate) d: Decoder<'b>,
}

impl<'b> Reader<'b> {
    pub(crate) fn new(input: &'b [u8]) -> Self {
        Reader {
            d: Decoder::new(input),
        }
    }

    #[inline]
    pub(crate) fn pos(&self) -> usize {
        self.d.position()
    }

    #[inline]
    pub(crate) fn input(&self) -> &'b [u8] {
        self.d.input()
    }

    #[inline]
    fn map(&self, at: usize, e: minicbor::decode::Error, expected: &'static str) -> DecodeError {
        if e.is_end_of_input() {
            DecodeError::new(self.input().len(), ErrorKind::Truncated)
        } else {
            DecodeError::new(at, ErrorKind::UnexpectedCbor { expected })
        }
    }

    #[inline]
    pub(crate) fn peek_type(&mut self) -> Result<Type> {
        let at = self.pos();
        self.d
            .datatype()
            .map_err(|e| self.map(at, e, "a CBOR data item"))
    }

    #[inline]
    pub(crate) fn u64(&mut self, expected: &'static str) -> Result<u64> {
        let at = self.pos();
        match self.d.datatype() {
            Ok(Type::U8 | Type::U16 | Type::U32 | Type::U64) => {}
            Ok(_) => return Err(DecodeError::new(at, ErrorKind::UnexpectedCbor { expected })),
            Err(e) => return Err(self.map(at, e, expected)),
        }
        self.d.u64().map_err(|e| self.map(at, e, expected))
    }

    /// A definite-length array header; indefinite arrays are an error here.
    #[inline]
    pub(crate) fn array(&mut self, expected: &'static str) -> Result<u64> {
        let at = self.pos();
        match self.d.datatype() {
            Ok(Type::Array) => {}
            Ok(_) => return Err(DecodeError::new(at, ErrorKind::UnexpectedCbor { expected })),
            Err(e) => return Err(self.map(at, e, expected)),
        }
        match self.d.array() {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Err(DecodeError::new(at, ErrorKind::UnexpectedCbor { expected })),
            Err(e) => Err(self.map(at, e, expected)),
        }
    }

    /// A definite-length UTF-8 text string, borrowed from the input.
    #[inline]
    pub(crate) fn str(&mut self, expected: &'static str) -> Result<&'b str> {
        let at = self.pos();
        match self.d.datatype() {
            Ok(Type::String) => {}
            Ok(_) => return Err(DecodeError::new(at, ErrorKind::UnexpectedCbor { expected })),
            Err(e) => return Err(self.map(at, e, expected)),
        }
        match self.d.str() {
            Ok(s) => Ok(s),
            Err(e) if e.is_end_of_input() => Err(self.map(at, e, expected)),
            Err(_) => Err(DecodeError::new(at, ErrorKind::InvalidUtf8)),
        }
    }

    /// Reads the header of a definite-length byte string and returns its length without consuming the
    /// content, so the streaming decoder can pass a payload through. Fails with `Truncated` only if the
    /// header itself is incomplete.
    pub(crate) fn bytes_header(&mut self, expected: &'static str) -> Result<u64> {
        let at = self.pos();
        let input = self.input();
        let Some(&ib) = input.get(at) else {
            return Err(DecodeError::new(input.len(), ErrorKind::Truncated));
        };
        if ib >> 5 != 2 {
            return Err(DecodeError::new(at, ErrorKind::UnexpectedCbor { expected }));
        }
        let (len, hdr) = match ib & 0x1f {
            n @ 0..=23 => (u64::from(n), 1),
            24 => (
                u64::from(
                    *input
                        .get(at + 1)
                        .ok_or(DecodeError::new(input.len(), ErrorKind::Truncated))?,
                ),
                2,
            ),
            25 => (be(input, at + 1, 2)?, 3),
            26 => (be(input, at + 1, 4)?, 5),
            27 => (be(input, at + 1, 8)?, 9),
            // 31 is an indefinite-length (chunked) byte string, which RFC 9171 §4.3.2 rules out.
            _ => return Err(DecodeError::new(at, ErrorKind::UnexpectedCbor { expected })),
        };
        self.d.set_position(at + hdr);
        Ok(len)
    }

    /// Consumes a CBOR "break" (0xff) if it is next; returns whether it did.
    pub(crate) fn try_break(&mut self) -> Result<bool> {
        let at = self.pos();
        match self.input().get(at) {
            None => Err(DecodeError::new(self.input().len(), ErrorKind::Truncated)),
            Some(0xff) => {
                self.d.set_position(at + 1);
                Ok(true)
            }
            Some(_) => Ok(false),
        }
    }

    pub(crate) fn skip(&mut self, expected: &'static str) -> Result<()> {
        let at = self.pos();
        self.d.skip().map_err(|e| self.map(at, e, expected))
    }
}

fn be(input: &[u8], from: usize, n: usize) -> Result<u64> {
    let Some(b) = input.get(from..from + n) else {
        return Err(DecodeError::new(input.len(), ErrorKind::Truncated));
    };
    Ok(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
}

/// Appends the CBOR head (major type + argument) in its shortest form.
#[inline]
pub(crate) fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
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

pub(crate) const MAJOR_UINT: u8 = 0;
pub(crate) const MAJOR_BYTES: u8 = 2;
pub(crate) const MAJOR_TEXT: u8 = 3;
pub(crate) const MAJOR_ARRAY: u8 = 4;
