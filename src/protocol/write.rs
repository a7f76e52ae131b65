//! Writing MQTT's primitive types, to a buffer or to a byte counter.

use bytes::{BufMut, BytesMut};

use super::EncodeError;

/// The largest value a variable byte integer can hold.
pub const MAX_VAR_INT: usize = 268_435_455;

/// Where encoded bytes go: a real buffer, or a [`Counter`] that only measures.
///
/// Every packet is written by one function generic over `Sink`. Running it first
/// over a `Counter` gives the remaining length (and property lengths) without a
/// second, hand-kept size function that could disagree with the writer.
pub(crate) trait Sink {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_slice(&mut self, v: &[u8]);
}

impl Sink for BytesMut {
    #[inline]
    fn put_u8(&mut self, v: u8) {
        BufMut::put_u8(self, v)
    }
    #[inline]
    fn put_u16(&mut self, v: u16) {
        BufMut::put_u16(self, v)
    }
    #[inline]
    fn put_u32(&mut self, v: u32) {
        BufMut::put_u32(self, v)
    }
    #[inline]
    fn put_slice(&mut self, v: &[u8]) {
        self.extend_from_slice(v)
    }
}

/// A [`Sink`] that counts bytes instead of writing them.
#[derive(Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    #[inline]
    fn put_u8(&mut self, _: u8) {
        self.0 += 1
    }
    #[inline]
    fn put_u16(&mut self, _: u16) {
        self.0 += 2
    }
    #[inline]
    fn put_u32(&mut self, _: u32) {
        self.0 += 4
    }
    #[inline]
    fn put_slice(&mut self, v: &[u8]) {
        self.0 += v.len()
    }
}

/// How many bytes `value` takes as a variable byte integer.
pub(crate) fn var_int_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub(crate) fn put_var_int(s: &mut impl Sink, mut value: usize) -> Result<(), EncodeError> {
    if value > MAX_VAR_INT {
        return Err(EncodeError::VarIntTooLarge(value));
    }
    loop {
        let mut byte = (value & 0x7f) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        s.put_u8(byte);
        if value == 0 {
            return Ok(());
        }
    }
}

/// Binary data or a UTF-8 string: a 2-byte length, then the bytes.
pub(crate) fn put_binary(s: &mut impl Sink, v: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(v.len()).map_err(|_| EncodeError::FieldTooLong(v.len()))?;
    s.put_u16(len);
    s.put_slice(v);
    Ok(())
}

pub(crate) fn put_str(s: &mut impl Sink, v: &str) -> Result<(), EncodeError> {
    put_binary(s, v.as_bytes())
}
