//! The socket side of the fake brokers the tests script: read what the load
//! tester sends, packet by packet, and answer it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use shardmq::protocol::{decode, encode, Packet, Version};

/// One connection of a fake broker, read with a bounded timeout so a stuck
/// test ends.
pub struct Peer {
    pub stream: TcpStream,
    buf: BytesMut,
    pub version: Version,
}

impl Peer {
    pub fn new(stream: TcpStream, version: Version) -> Peer {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Peer {
            stream,
            buf: BytesMut::new(),
            version,
        }
    }

    /// The next packet the load tester sent, `None` once it closed.
    pub fn next(&mut self) -> Option<Packet> {
        let mut chunk = [0u8; 8192];
        loop {
            match decode(&mut self.buf, self.version, 1 << 20) {
                Ok(Some(p)) => return Some(p),
                Ok(None) => match self.stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                },
                Err(e) => panic!("loadtest sent a bad packet: {e}"),
            }
        }
    }
}

/// Writes `packet` to `stream`, ignoring a peer that already left.
pub fn send(stream: &mut TcpStream, version: Version, packet: &Packet) {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).unwrap();
    let _ = stream.write_all(&buf);
}
