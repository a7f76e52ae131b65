//! What every published payload carries: who sent it, its sequence number and when it
//! was meant to be sent, so the receiver can account for it without any shared state.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Publisher id (u32), sequence number (u64), intended send time (u64 ns), little endian.
pub const HEADER_LEN: usize = 4 + 8 + 8;

/// The header of one load-test message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Unique over the whole run, so receivers track sequences per publisher.
    pub publisher: u32,
    /// 0, 1, 2 ... per publisher, for loss, duplicate and reorder detection.
    pub seq: u64,
    /// Nanoseconds since the run's shared start instant at which the schedule wanted
    /// this message sent (not when it was sent: coordinated-omission free).
    pub intended_ns: u64,
}

impl Header {
    /// A payload of `len` bytes (at least [`HEADER_LEN`]), zero padded.
    pub fn encode(&self, len: usize) -> Bytes {
        let mut buf = BytesMut::with_capacity(len.max(HEADER_LEN));
        buf.put_u32_le(self.publisher);
        buf.put_u64_le(self.seq);
        buf.put_u64_le(self.intended_ns);
        buf.resize(len.max(HEADER_LEN), 0);
        buf.freeze()
    }

    /// `None` for payloads too short to be ours.
    pub fn decode(mut payload: &[u8]) -> Option<Header> {
        if payload.len() < HEADER_LEN {
            return None;
        }
        Some(Header {
            publisher: payload.get_u32_le(),
            seq: payload.get_u64_le(),
            intended_ns: payload.get_u64_le(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let h = Header {
            publisher: 7,
            seq: 1 << 40,
            intended_ns: 123_456_789,
        };
        let bytes = h.encode(64);
        assert_eq!(bytes.len(), 64);
        assert_eq!(Header::decode(&bytes), Some(h));
        assert_eq!(Header::decode(&bytes[..HEADER_LEN - 1]), None);
    }
}
