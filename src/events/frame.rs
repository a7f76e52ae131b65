//! The event stream's framing, sans-IO: the native batched frame, the
//! vmq-compat length prefix, and the consumer's ack.
//!
//! Native frame (all integers big-endian):
//!
//! ```text
//! offset size field
//!  0     4    magic      b"SMQE"
//!  4     1    version    1
//!  5     1    flags      0 (reserved)
//!  6     2    shard      the emitting shard's id
//!  8     8    first_seq  sequence number of the first event
//! 16     4    count      number of events in the body
//! 20     4    body_len   bytes after the header
//! 24     ...  body       `count` events, each a protobuf varint length, then
//!                        the encoded `shardmq.events.v1.Event`
//! ```
//!
//! Event `i` of a frame has sequence number `first_seq + i`; sequences are per
//! shard and per sink connection pool, so a gap means lost events.
//!
//! vmq-compat frame: a 4-byte big-endian length, then a `google.protobuf.Any`.
//!
//! Ack (consumer to broker, only when the sink has `acks = true`):
//! `b"SMQA"`, shard u16, seq u64: every event of that shard up to and
//! including `seq` that this connection carried was processed (cumulative per
//! connection: it never releases frames in flight on another connection of
//! the same shard), 14 bytes.
//!
//! Decoders check the declared length against the caller's maximum before
//! waiting for or reserving the body, and return `Ok(None)` on partial input
//! without consuming anything.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The native frame's first four bytes.
pub const NATIVE_MAGIC: [u8; 4] = *b"SMQE";
/// The native frame layout described in this module.
pub const NATIVE_VERSION: u8 = 1;
/// Size of the native frame header.
pub const NATIVE_HEADER_LEN: usize = 24;
/// An ack's first four bytes.
pub const ACK_MAGIC: [u8; 4] = *b"SMQA";
/// Size of an ack.
pub const ACK_LEN: usize = 14;
/// Size of the vmq-compat length prefix.
pub const VMQ_PREFIX_LEN: usize = 4;

/// Why a frame could not be decoded. Any of these means the peer is not
/// speaking this protocol (or is corrupt): close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad magic {0:02x?}: not a shardmq event frame")]
    BadMagic([u8; 4]),
    #[error("unsupported native frame version {0} (this build reads version 1)")]
    Version(u8),
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    Oversize { len: usize, max: usize },
    #[error("frame body is malformed: {0}")]
    Malformed(&'static str),
}

/// A decoded native frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeFrame {
    pub shard: u16,
    /// Sequence number of `events[0]`; event `i` has `first_seq + i`.
    pub first_seq: u64,
    /// Each an encoded `shardmq.events.v1.Event`, sharing the frame's buffer.
    pub events: Vec<Bytes>,
}

/// A consumer's cumulative ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub shard: u16,
    /// Every event of `shard` up to and including this one, of those the
    /// connection carrying the ack delivered, was processed.
    pub seq: u64,
}

/// Builds one native frame from consecutive events. The header space is
/// reserved up front so `finish` writes it in place, without copying the body.
#[derive(Debug)]
pub struct NativeBatch {
    /// Why: the frame header names the shard, so consumers can track
    /// sequences per shard.
    shard: u16,
    /// Sequence of the first event pushed since the last `finish`.
    first_seq: u64,
    /// Events pushed since the last `finish`.
    count: u32,
    /// The frame being built: header placeholder, then the body.
    buf: BytesMut,
}

impl NativeBatch {
    pub fn new(shard: u16) -> NativeBatch {
        let mut buf = BytesMut::new();
        buf.resize(NATIVE_HEADER_LEN, 0);
        NativeBatch {
            shard,
            first_seq: 0,
            count: 0,
            buf,
        }
    }

    /// Appends one encoded event with sequence number `seq`. The first push
    /// after `new`/`finish` sets the frame's `first_seq`; later pushes must
    /// be consecutive (the frame only carries the first number).
    pub fn push(&mut self, seq: u64, encoded: &[u8]) {
        if self.count == 0 {
            self.first_seq = seq;
        } else {
            debug_assert_eq!(
                seq,
                self.first_seq + u64::from(self.count),
                "native batch sequences must be consecutive"
            );
        }
        prost::encoding::encode_varint(encoded.len() as u64, &mut self.buf);
        self.buf.extend_from_slice(encoded);
        self.count += 1;
    }

    /// The whole frame's size if finished now (header included), to compare
    /// with `max-batch-bytes`.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Events pushed since the last `finish`.
    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Sequence number of the first event in the frame being built.
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// Returns the whole frame (header and body) and starts an empty one.
    pub fn finish(&mut self) -> Bytes {
        let body_len = (self.buf.len() - NATIVE_HEADER_LEN) as u32;
        let mut header = &mut self.buf[..NATIVE_HEADER_LEN];
        header.put_slice(&NATIVE_MAGIC);
        header.put_u8(NATIVE_VERSION);
        header.put_u8(0);
        header.put_u16(self.shard);
        header.put_u64(self.first_seq);
        header.put_u32(self.count);
        header.put_u32(body_len);
        let frame = self.buf.split().freeze();
        self.buf.resize(NATIVE_HEADER_LEN, 0);
        self.count = 0;
        self.first_seq = 0;
        frame
    }
}

/// Decodes one native frame from the front of `buf`. `Ok(None)` means more
/// bytes are needed (nothing consumed). Frames whose body is over
/// `max_frame` bytes are refused before anything is buffered for them.
pub fn decode_native(
    buf: &mut BytesMut,
    max_frame: usize,
) -> Result<Option<NativeFrame>, FrameError> {
    check_magic(buf, NATIVE_MAGIC)?;
    if buf.len() < NATIVE_HEADER_LEN {
        return Ok(None);
    }
    let mut header = &buf[4..NATIVE_HEADER_LEN];
    let version = header.get_u8();
    if version != NATIVE_VERSION {
        return Err(FrameError::Version(version));
    }
    let _flags = header.get_u8();
    let shard = header.get_u16();
    let first_seq = header.get_u64();
    let count = header.get_u32() as usize;
    let body_len = header.get_u32() as usize;
    if body_len > max_frame {
        return Err(FrameError::Oversize {
            len: body_len,
            max: max_frame,
        });
    }
    // Each event takes at least its one-byte length.
    if count > body_len {
        return Err(FrameError::Malformed("more events than body bytes"));
    }
    if buf.len() < NATIVE_HEADER_LEN + body_len {
        buf.reserve(NATIVE_HEADER_LEN + body_len - buf.len());
        return Ok(None);
    }
    buf.advance(NATIVE_HEADER_LEN);
    let mut body = buf.split_to(body_len).freeze();
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        let len = prost::encoding::decode_varint(&mut body)
            .map_err(|_| FrameError::Malformed("bad event length varint"))?;
        let len =
            usize::try_from(len).map_err(|_| FrameError::Malformed("event length overflows"))?;
        if len > body.len() {
            return Err(FrameError::Malformed("event runs past the body"));
        }
        events.push(body.split_to(len));
    }
    if !body.is_empty() {
        return Err(FrameError::Malformed("bytes left after the last event"));
    }
    Ok(Some(NativeFrame {
        shard,
        first_seq,
        events,
    }))
}

/// Prefixes an encoded `google.protobuf.Any` with its 4-byte length: one
/// whole vmq-compat frame appended to `out`.
pub fn encode_vmq_prefix(any_len: usize, out: &mut BytesMut) {
    out.put_u32(any_len as u32);
}

/// Decodes one vmq-compat frame from the front of `buf`, returning the
/// encoded `google.protobuf.Any`. `Ok(None)` means more bytes are needed.
pub fn decode_vmq(buf: &mut BytesMut, max_frame: usize) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < VMQ_PREFIX_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > max_frame {
        return Err(FrameError::Oversize {
            len,
            max: max_frame,
        });
    }
    if buf.len() < VMQ_PREFIX_LEN + len {
        buf.reserve(VMQ_PREFIX_LEN + len - buf.len());
        return Ok(None);
    }
    buf.advance(VMQ_PREFIX_LEN);
    Ok(Some(buf.split_to(len).freeze()))
}

/// Appends the ack for `shard` up to and including `seq` to `out`.
pub fn encode_ack(ack: Ack, out: &mut BytesMut) {
    out.reserve(ACK_LEN);
    out.put_slice(&ACK_MAGIC);
    out.put_u16(ack.shard);
    out.put_u64(ack.seq);
}

/// Decodes one ack from the front of `buf`; `Ok(None)` on partial input.
pub fn decode_ack(buf: &mut BytesMut) -> Result<Option<Ack>, FrameError> {
    check_magic(buf, ACK_MAGIC)?;
    if buf.len() < ACK_LEN {
        return Ok(None);
    }
    buf.advance(4);
    let shard = buf.get_u16();
    let seq = buf.get_u64();
    Ok(Some(Ack { shard, seq }))
}

/// Refuses a wrong magic as soon as its bytes arrive, so a stray peer is
/// dropped without waiting for a whole header.
fn check_magic(buf: &[u8], magic: [u8; 4]) -> Result<(), FrameError> {
    let n = buf.len().min(4);
    if buf[..n] != magic[..n] {
        let mut got = [0; 4];
        got[..n].copy_from_slice(&buf[..n]);
        return Err(FrameError::BadMagic(got));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(shard: u16, first: u64, events: &[&[u8]]) -> Bytes {
        let mut b = NativeBatch::new(shard);
        for (i, e) in events.iter().enumerate() {
            b.push(first + i as u64, e);
        }
        b.finish()
    }

    #[test]
    fn native_header_bytes() {
        let frame = batch(0x0102, 7, &[b"ab", b""]);
        #[rustfmt::skip]
        let want: &[u8] = &[
            b'S', b'M', b'Q', b'E', 1, 0, 0x01, 0x02,
            0, 0, 0, 0, 0, 0, 0, 7,
            0, 0, 0, 2,
            0, 0, 0, 4,
            2, b'a', b'b', 0,
        ];
        assert_eq!(&frame[..], want);
    }

    #[test]
    fn native_round_trip_and_reset() {
        let mut b = NativeBatch::new(3);
        assert!(b.is_empty());
        assert_eq!(b.len(), NATIVE_HEADER_LEN);
        let big = vec![9u8; 300]; // two-byte varint length
        b.push(10, b"x");
        b.push(11, &big);
        assert_eq!(b.count(), 2);
        assert_eq!(b.len(), NATIVE_HEADER_LEN + 2 + 2 + 300);
        let first = b.finish();
        assert!(b.is_empty());
        b.push(12, b"y");
        let second = b.finish();

        let mut buf = BytesMut::new();
        buf.extend_from_slice(&first);
        buf.extend_from_slice(&second);
        let f = decode_native(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!((f.shard, f.first_seq), (3, 10));
        assert_eq!(f.events, vec![Bytes::from_static(b"x"), Bytes::from(big)]);
        let f = decode_native(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!((f.shard, f.first_seq), (3, 12));
        assert_eq!(f.events, vec![Bytes::from_static(b"y")]);
        assert!(buf.is_empty());
        assert_eq!(decode_native(&mut buf, 1 << 20), Ok(None));
    }

    #[test]
    fn native_partial_input_consumes_nothing() {
        let frame = batch(1, 1, &[b"hello", b"world"]);
        for cut in 0..frame.len() {
            let mut buf = BytesMut::from(&frame[..cut]);
            assert_eq!(decode_native(&mut buf, 1024), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn native_oversize_refused_from_header() {
        let frame = batch(1, 1, &[&[0u8; 100]]);
        let mut buf = BytesMut::from(&frame[..NATIVE_HEADER_LEN]);
        assert_eq!(
            decode_native(&mut buf, 50),
            Err(FrameError::Oversize { len: 101, max: 50 })
        );
    }

    #[test]
    fn native_bad_magic_and_version() {
        let mut buf = BytesMut::from(&b"GE"[..]);
        assert!(matches!(
            decode_native(&mut buf, 1024),
            Err(FrameError::BadMagic(_))
        ));
        let mut buf = BytesMut::from(&b"SMQA\0\0"[..]);
        assert!(matches!(
            decode_native(&mut buf, 1024),
            Err(FrameError::BadMagic(_))
        ));
        let mut frame = BytesMut::from(&batch(1, 1, &[b"a"])[..]);
        frame[4] = 2;
        assert_eq!(decode_native(&mut frame, 1024), Err(FrameError::Version(2)));
    }

    #[test]
    fn native_malformed_body() {
        // count says 2, the body holds one event.
        let mut frame = BytesMut::from(&batch(1, 1, &[b"ab"])[..]);
        frame[19] = 2;
        assert_eq!(
            decode_native(&mut frame, 1024),
            Err(FrameError::Malformed("bad event length varint"))
        );
        // count says 1, the body holds two.
        let mut frame = BytesMut::from(&batch(1, 1, &[b"a", b"b"])[..]);
        frame[19] = 1;
        assert_eq!(
            decode_native(&mut frame, 1024),
            Err(FrameError::Malformed("bytes left after the last event"))
        );
        // An event length larger than the body.
        let mut frame = BytesMut::from(&batch(1, 1, &[b"ab"])[..]);
        frame[24] = 0x7f;
        assert!(matches!(
            decode_native(&mut frame, 1024),
            Err(FrameError::Malformed(_))
        ));
        // More events than body bytes.
        let mut frame = BytesMut::from(&batch(1, 1, &[b"a"])[..]);
        frame[19] = 9;
        assert!(matches!(
            decode_native(&mut frame, 1024),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn vmq_round_trip_partial_oversize() {
        let mut out = BytesMut::new();
        encode_vmq_prefix(3, &mut out);
        out.extend_from_slice(b"abc");
        assert_eq!(&out[..], b"\0\0\0\x03abc");
        for cut in 0..out.len() {
            let mut buf = BytesMut::from(&out[..cut]);
            assert_eq!(decode_vmq(&mut buf, 16), Ok(None));
            assert_eq!(buf.len(), cut);
        }
        let mut buf = out.clone();
        assert_eq!(
            decode_vmq(&mut buf, 16),
            Ok(Some(Bytes::from_static(b"abc")))
        );
        assert!(buf.is_empty());
        let mut buf = BytesMut::from(&b"\xff\xff\xff\xff"[..]);
        assert_eq!(
            decode_vmq(&mut buf, 16),
            Err(FrameError::Oversize {
                len: u32::MAX as usize,
                max: 16
            })
        );
    }

    #[test]
    fn ack_round_trip_partial_bad_magic() {
        let mut out = BytesMut::new();
        let ack = Ack {
            shard: 2,
            seq: 0x0102_0304_0506_0708,
        };
        encode_ack(ack, &mut out);
        assert_eq!(&out[..], b"SMQA\x00\x02\x01\x02\x03\x04\x05\x06\x07\x08");
        for cut in 0..ACK_LEN {
            let mut buf = BytesMut::from(&out[..cut]);
            assert_eq!(decode_ack(&mut buf), Ok(None));
        }
        let mut buf = out.clone();
        assert_eq!(decode_ack(&mut buf), Ok(Some(ack)));
        assert!(buf.is_empty());
        let mut buf = BytesMut::from(&b"SMQE"[..]);
        assert!(matches!(decode_ack(&mut buf), Err(FrameError::BadMagic(_))));
    }
}
