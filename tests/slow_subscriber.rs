//! A subscriber that stops reading cannot make the broker hold memory without
//! bound: QoS 0 to it is dropped once its output is full, QoS 1 waits within
//! the inflight window and the online queue, and everyone else keeps getting
//! messages. When it goes silent past its keepalive, or its QoS 1 queue
//! overflows, it is disconnected even though its socket is not being read.
//!
//! One test in this binary, so the process's memory is this test's alone.

mod common;

use std::time::Duration;

use common::scenarios::publish_qos1;
use common::*;
use shardmq::protocol::{Packet, QoS, ReasonCode, Version};
use tokio::net::TcpSocket;

/// Resident memory of this process (broker included), in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// A raw MQTT 5 client with a small socket receive buffer that subscribes and
/// then never reads.
async fn stalled(addr: std::net::SocketAddr, id: &str, keep_alive: u16) -> Raw {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut raw = Raw::from_stream(stream, Version::V5);
    raw.send(Packet::Connect(Box::new(connect(
        Version::V5,
        id,
        true,
        keep_alive,
    ))))
    .await;
    assert!(matches!(raw.recv().await, Packet::ConnAck(_)));
    raw
}

#[tokio::test]
async fn slow_subscriber_stays_bounded() {
    let b = TestBroker::with(|c| {
        c.mqtt.max_inflight = 10;
        c.mqtt.max_online_messages = 100;
    });
    let addr = b.addr();

    // The slow one: subscribes to QoS 0 traffic, then reads nothing and sends
    // nothing, so its keepalive (2 s) runs out while the broker cannot write.
    let mut slow = stalled(addr, &id_on_shard("slow0", 1), 2).await;
    slow.sub("flood/#", QoS::AtMostOnce).await;
    let mut fast = Raw::connect(addr, Version::V5, &id_on_shard("fast", 1), true).await;
    fast.sub("flood/end", QoS::AtLeastOnce).await;
    settle().await;

    let before = rss();
    let mut publ = Raw::connect(addr, Version::V5, &id_on_shard("flooder", 0), true).await;
    let payload = vec![b'x'; 2048];
    let total = 30_000;
    for i in 0..total {
        publ.publish(publish("flood/data", QoS::AtMostOnce, 0, &payload))
            .await;
        if i % 5_000 == 0 {
            // The publisher's own round trip still works mid-flood.
            publ.send(Packet::PingReq).await;
        }
    }
    publ.publish(publish("flood/end", QoS::AtLeastOnce, 1, b"end"))
        .await;
    // Pings answered in between, then the PUBACK: the publisher was served.
    for _ in 0..total / 5_000 {
        assert_eq!(publ.recv().await, Packet::PingResp);
    }
    assert!(matches!(publ.recv().await, Packet::PubAck(_)));
    assert_eq!(&fast.recv_publish().await.payload[..], b"end");
    let grown = rss().saturating_sub(before);
    eprintln!("memory grew by {} KiB during the flood", grown / 1024);
    let published = total * payload.len();
    assert!(
        grown < published / 3,
        "memory grew by {grown} bytes while {published} bytes went to a stalled reader"
    );

    // Silent past 1.5 × keepalive: closed, although nothing it was sent has
    // been read. Reading now drains what the socket buffers held, then EOF.
    let packets = slow.expect_closed_draining().await;
    assert!(
        matches!(packets.last(), Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::KeepAliveTimeout)
            || !packets.is_empty(),
        "the stalled reader is disconnected"
    );

    // A QoS 1 subscriber that stops reading: the window (10) and the online
    // queue (100) fill, then it is disconnected rather than queue more.
    let mut slow1 = stalled(addr, &id_on_shard("slow1", 1), 0).await;
    slow1.sub("flood1/#", QoS::AtLeastOnce).await;
    settle().await;
    let big = vec![b'y'; 16 * 1024];
    for i in 0..400u16 {
        publish_qos1(&mut publ, "flood1/data", (i % 1000) + 1, &big).await;
    }
    slow1.expect_closed_draining().await;
    publish_qos1(&mut publ, "flood/end", 2, b"end2").await;
    assert_eq!(&fast.recv_publish().await.payload[..], b"end2");
    drop(fast);
    tokio::time::sleep(Duration::from_millis(10)).await;
}
