use std::io::Read;
use std::net::TcpListener;

use bytes::BytesMut;
use prost::Message;
use shardmq::events::frame::decode_native;
use shardmq::events::schema::native;

fn main() -> anyhow::Result<()> {
    // The broker connects to us: listen where [[events.sinks]] address points.
    let (mut stream, _) = TcpListener::bind("127.0.0.1:8890")?.accept()?;
    let (mut buf, mut chunk) = (BytesMut::new(), vec![0; 64 * 1024]);
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(()); // the broker closed; it reconnects with back-off
        }
        buf.extend_from_slice(&chunk[..n]);
        // A frame: header (magic, version, shard, first sequence number, count),
        // then `count` length-delimited shardmq.events.v1.Event messages.
        while let Some(frame) = decode_native(&mut buf, 16 << 20)? {
            for (seq, bytes) in (frame.first_seq..).zip(&frame.events) {
                let event = native::Event::decode(bytes.clone())?;
                println!("shard {} seq {seq}: {:?}", frame.shard, event.event);
            }
        }
    }
}
