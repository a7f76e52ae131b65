//! Replies out of the bytes a connection reads, however they were cut.
//!
//! `redis::Parser` pulls its input from a `Read`. We hand it each chunk the
//! socket gave, through a reader that says `WouldBlock` when the chunk is used
//! up: the parser keeps what it buffered and its partial state, and resumes
//! with the next chunk. (A reader that returned `Ok(0)` instead would mark
//! the end of input for good.)

use std::io::{self, Read};

use ::redis::{Parser, Value};

use super::RedisError;

/// One connection's reply parser. A new connection gets a new one: a broken
/// stream leaves it in the middle of a reply.
pub struct Replies {
    parser: Parser,
}

impl Replies {
    pub fn new() -> Replies {
        Replies {
            parser: Parser::new(),
        }
    }

    /// Parses every whole reply that `data` completes, in order, into
    /// `reply`; keeps an unfinished one for the next call. An error from
    /// `reply`, or bytes that are not RESP, stop it.
    pub fn feed(
        &mut self,
        data: &[u8],
        mut reply: impl FnMut(Value) -> Result<(), RedisError>,
    ) -> Result<(), RedisError> {
        let mut chunk = Chunk {
            data,
            used_up: false,
        };
        loop {
            match self.parser.parse_value(&mut chunk) {
                Ok(value) => reply(value)?,
                // The parser asked for more than the chunk had: that is the
                // only way it sees `WouldBlock`.
                Err(_) if chunk.used_up => return Ok(()),
                Err(e) => return Err(RedisError::Protocol(e.to_string())),
            }
        }
    }
}

/// One read's bytes, as a `Read` that blocks (in words) at its end.
struct Chunk<'a> {
    data: &'a [u8],
    used_up: bool,
}

impl Read for Chunk<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data.is_empty() {
            self.used_up = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if buf.is_empty() {
            // Never `Ok(0)`: the parser would take it for the end of input.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(bytes: &[u8], piece: usize) -> Vec<Value> {
        let mut replies = Replies::new();
        let mut out = Vec::new();
        for chunk in bytes.chunks(piece) {
            replies
                .feed(chunk, |v| {
                    out.push(v);
                    Ok(())
                })
                .unwrap();
        }
        out
    }

    #[test]
    fn replies_cut_anywhere_come_out_whole_and_in_order() {
        let big = vec![b'x'; 100_000];
        let mut bytes = b"+OK\r\n:42\r\n-WRONGTYPE Operation against a key\r\n".to_vec();
        bytes.extend_from_slice(b"$100000\r\n");
        bytes.extend_from_slice(&big);
        bytes.extend_from_slice(b"\r\n*2\r\n$1\r\na\r\n$-1\r\n:7\r\n");
        for piece in [1, 2, 3, 7, 4096, 8192, 70_000, bytes.len()] {
            let values = parse_in_pieces(&bytes, piece);
            assert_eq!(values.len(), 6, "piece {piece}");
            assert_eq!(values[0], Value::Okay);
            assert_eq!(values[1], Value::Int(42));
            match &values[2] {
                Value::ServerError(e) => assert_eq!(e.code(), "WRONGTYPE"),
                other => panic!("not an error: {other:?}"),
            }
            assert_eq!(values[3], Value::BulkString(big.clone()));
            assert_eq!(
                values[4],
                Value::Array(vec![Value::BulkString(b"a".to_vec()), Value::Nil])
            );
            assert_eq!(values[5], Value::Int(7));
        }
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        let mut replies = Replies::new();
        let r = replies.feed(b"+OK\r\n?what\r\n", |_| Ok(()));
        assert!(matches!(r, Err(RedisError::Protocol(_))), "{r:?}");
    }
}
