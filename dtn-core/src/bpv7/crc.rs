//! CRC-16/X-25 and CRC-32C as RFC 9171 §4.2.2 uses them.
//!
//! A block's CRC is computed over the block's complete CBOR encoding with the CRC field's *value* bytes set
//! to zero (the byte-string header stays). CRC-32C goes through the `crc32c` crate, which uses the SSE4.2 /
//! ARMv8 CRC instructions where present; CRC-16 uses a slice-by-16 table.

use super::error::ErrorKind;

/// CRC-16/IBM-SDLC, better known as X-25: poly 0x1021 reflected, init and xorout 0xFFFF.
static CRC16: crc::Crc<u16, crc::Table<16>> = crc::Crc::<u16, crc::Table<16>>::new(&crc::CRC_16_IBM_SDLC);

/// Byte-wise CRC-32C table (reflected polynomial 0x82F63B78), used only to run the CRC over the four
/// zeroed value bytes: a second call into the hardware path costs ~30x more than four table steps.
static CRC32C_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// Continues a finalised CRC-32C value over `n` zero bytes.
#[inline]
fn crc32c_extend_zeros(crc: u32, n: usize) -> u32 {
    let mut s = !crc;
    for _ in 0..n {
        s = CRC32C_TABLE[(s & 0xff) as usize] ^ (s >> 8);
    }
    !s
}

/// Which CRC a block carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum CrcType {
    /// No CRC field.
    #[default]
    None,
    /// CRC-16/X-25, carried as a 2-byte string.
    Crc16,
    /// CRC-32C (Castagnoli), carried as a 4-byte string.
    Crc32c,
}

impl CrcType {
    /// Wire code (0, 1, 2).
    pub const fn code(self) -> u8 {
        match self {
            CrcType::None => 0,
            CrcType::Crc16 => 1,
            CrcType::Crc32c => 2,
        }
    }

    /// Parses a wire code.
    pub fn from_code(code: u64) -> Result<Self, ErrorKind> {
        match code {
            0 => Ok(CrcType::None),
            1 => Ok(CrcType::Crc16),
            2 => Ok(CrcType::Crc32c),
            other => Err(ErrorKind::UnknownCrcType(other)),
        }
    }

    /// Number of CRC value bytes on the wire.
    pub const fn value_len(self) -> usize {
        match self {
            CrcType::None => 0,
            CrcType::Crc16 => 2,
            CrcType::Crc32c => 4,
        }
    }

    /// Encoded size of the whole CRC field (byte-string header plus value), 0 when absent.
    pub const fn field_len(self) -> usize {
        match self {
            CrcType::None => 0,
            CrcType::Crc16 => 3,
            CrcType::Crc32c => 5,
        }
    }

    /// The CBOR byte-string header that must introduce the value (RFC 9171 §4.2.2 names the additional
    /// information exactly: 2 or 4).
    pub(crate) const fn field_header(self) -> u8 {
        match self {
            CrcType::None => 0,
            CrcType::Crc16 => 0x42,
            CrcType::Crc32c => 0x44,
        }
    }
}

impl std::fmt::Display for CrcType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CrcType::None => "none",
            CrcType::Crc16 => "CRC-16/X-25",
            CrcType::Crc32c => "CRC-32C",
        })
    }
}

/// An incremental CRC computation, used by both the slice codec and the streaming codec.
#[derive(Clone)]
pub enum CrcState {
    /// No CRC: updates are free.
    None,
    /// Running CRC-16 digest.
    Crc16(crc::Digest<'static, u16, crc::Table<16>>),
    /// Running CRC-32C value (already finalised form, as `crc32c_append` expects).
    Crc32c(u32),
}

impl CrcState {
    /// Starts a computation for `ty`.
    pub fn new(ty: CrcType) -> Self {
        match ty {
            CrcType::None => CrcState::None,
            CrcType::Crc16 => CrcState::Crc16(CRC16.digest()),
            CrcType::Crc32c => CrcState::Crc32c(0),
        }
    }

    /// Feeds bytes.
    #[inline]
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            CrcState::None => {}
            CrcState::Crc16(d) => d.update(bytes),
            CrcState::Crc32c(v) => *v = crc32c::crc32c_append(*v, bytes),
        }
    }

    /// Feeds `n` zero bytes (the CRC value's place while computing).
    #[inline]
    pub fn update_zeros(&mut self, n: usize) {
        match self {
            CrcState::None => {}
            CrcState::Crc16(d) => {
                for _ in 0..n {
                    d.update(&[0]);
                }
            }
            CrcState::Crc32c(v) => *v = crc32c_extend_zeros(*v, n),
        }
    }

    /// The CRC so far, widened to u32.
    pub fn finish(self) -> u32 {
        match self {
            CrcState::None => 0,
            CrcState::Crc16(d) => u32::from(d.finalize()),
            CrcState::Crc32c(v) => v,
        }
    }

    /// Finishes the CRC of a block whose payload was fed incrementally: feeds the CRC field's head byte, the
    /// zeroed value and, for an indefinite-length block, its closing break (RFC 9171 §4.3.2).
    pub(crate) fn finish_trailer(mut self, ty: CrcType, indefinite: bool) -> u32 {
        self.update(&[ty.field_header()]);
        self.update_zeros(ty.value_len());
        if indefinite {
            self.update(&[0xff]);
        }
        self.finish()
    }

    /// Feeds the zeroed CRC value bytes and returns the final CRC: for a block whose CRC value is its last
    /// bytes.
    pub fn finish_with_zeroed_field(mut self, ty: CrcType) -> u32 {
        self.update_zeros(ty.value_len());
        self.finish()
    }
}

/// Computes the CRC of a complete encoded block whose CRC value (whatever it holds now) starts at
/// `value_at`; those bytes count as zero. Anything after them (the break of an indefinite-length block
/// array) is covered too, as RFC 9171 §4.3.1 and §4.3.2 require.
pub(crate) fn block_crc(ty: CrcType, encoded: &[u8], value_at: usize) -> u32 {
    let n = ty.value_len();
    // Direct path for the common case (CRC-32C, value last): one call into the hardware CRC, four table steps.
    if ty == CrcType::Crc32c && value_at + n == encoded.len() {
        return crc32c_extend_zeros(crc32c::crc32c(&encoded[..value_at]), n);
    }
    let mut st = CrcState::new(ty);
    st.update(&encoded[..value_at]);
    st.update_zeros(n);
    // Skipped when empty: a call into the hardware path has a fixed cost worth avoiding.
    if value_at + n < encoded.len() {
        st.update(&encoded[value_at + n..]);
    }
    st.finish()
}

/// Completes a block's encoding in `block`: appends its CRC field (if any) and, for an indefinite-length
/// block, its closing break, then fills in the CRC value computed over the whole block.
pub(crate) fn seal_block(ty: CrcType, block: &mut Vec<u8>, indefinite: bool) {
    let value_at = block.len() + 1;
    if ty != CrcType::None {
        block.push(ty.field_header());
        block.resize(block.len() + ty.value_len(), 0);
    }
    if indefinite {
        block.push(0xff);
    }
    if ty != CrcType::None {
        let v = block_crc(ty, block, value_at);
        write_crc_value(ty, block, value_at, v);
    }
}

/// Writes `value` big-endian at `value_at`.
fn write_crc_value(ty: CrcType, encoded: &mut [u8], value_at: usize, value: u32) {
    match ty {
        CrcType::None => {}
        CrcType::Crc16 => encoded[value_at..value_at + 2].copy_from_slice(&(value as u16).to_be_bytes()),
        CrcType::Crc32c => encoded[value_at..value_at + 4].copy_from_slice(&value.to_be_bytes()),
    }
}

/// Reads the carried CRC value (big-endian) at `value_at`.
pub(crate) fn read_crc_value(ty: CrcType, encoded: &[u8], value_at: usize) -> u32 {
    let n = ty.value_len();
    encoded[value_at..value_at + n].iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values_match_the_catalogue() {
        // Standard "123456789" check values for both algorithms.
        let mut s = CrcState::new(CrcType::Crc16);
        s.update(b"123456789");
        let CrcState::Crc16(d) = s else { unreachable!() };
        assert_eq!(d.finalize(), 0x906E);
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn zero_extension_matches_hardware_path() {
        for data in [&b""[..], b"a", b"123456789", &[0xffu8; 77]] {
            let with_zeros = [data, &[0, 0, 0, 0]].concat();
            assert_eq!(crc32c_extend_zeros(crc32c::crc32c(data), 4), crc32c::crc32c(&with_zeros));
        }
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for ty in [CrcType::Crc16, CrcType::Crc32c] {
            let mut a = CrcState::new(ty);
            a.update(&data);
            let mut b = CrcState::new(ty);
            for chunk in data.chunks(37) {
                b.update(chunk);
            }
            assert_eq!(a.finish_with_zeroed_field(ty), b.finish_with_zeroed_field(ty));
        }
    }
}
