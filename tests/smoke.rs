//! First end-to-end check: the broker in-process, driven with raw MQTT bytes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use shardmq::config::{Config, Cores};

fn broker() -> shardmq::Server {
    let mut config = Config::embedded_default().expect("default config");
    config.set_bind("127.0.0.1:0".parse().unwrap());
    config.shards.cores = Cores::List(vec![0, 1]);
    shardmq::start(&config, shards::ShutdownHandle::new(), false).expect("broker starts")
}

fn connect(addr: SocketAddr, id: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut p = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c];
    p.extend_from_slice(&(id.len() as u16).to_be_bytes());
    p.extend_from_slice(id.as_bytes());
    let mut packet = vec![0x10, p.len() as u8];
    packet.extend(p);
    s.write_all(&packet).unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00]);
    s
}

#[test]
fn publish_reaches_subscribers_on_both_shards() {
    let server = broker();
    let addr = server.local_addrs()[0];
    let mut subs: Vec<TcpStream> = (0..6).map(|i| connect(addr, &format!("sub-{i}"))).collect();
    for s in &mut subs {
        // SUBSCRIBE id 1, "t/a" QoS 0.
        s.write_all(&[0x82, 0x08, 0x00, 0x01, 0x00, 0x03, b't', b'/', b'a', 0x00])
            .unwrap();
        let mut ack = [0u8; 5];
        s.read_exact(&mut ack).unwrap();
        assert_eq!(ack, [0x90, 0x03, 0x00, 0x01, 0x00]);
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut publ = connect(addr, "pub");
    publ.write_all(&[0x30, 0x07, 0x00, 0x03, b't', b'/', b'a', b'h', b'i'])
        .unwrap();
    for s in &mut subs {
        let mut msg = [0u8; 9];
        s.read_exact(&mut msg).unwrap();
        assert_eq!(msg, [0x30, 0x07, 0x00, 0x03, b't', b'/', b'a', b'h', b'i']);
    }
    server.shutdown_handle().trigger();
    server.join().unwrap();
}
