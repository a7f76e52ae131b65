//! A subscriber that stops reading costs bounded memory and counted drops,
//! holds its publishers up for at most about `stall-timeout`, and is
//! disconnected once its socket has taken nothing for `send-timeout`; a
//! subscriber beside it that reads gets every message. QoS 0 and QoS 1, the
//! stalled subscriber on the other shard from the publisher.

mod common;

use std::time::{Duration, Instant};

use common::*;
use shardmq::protocol::{Packet, QoS, Version};
use tokio::net::TcpSocket;

const STALL: Duration = Duration::from_millis(500);
/// Longer than the flood takes even on a loaded machine: a stalled subscriber
/// disconnected mid-flood takes no more drops, and the drop count below would
/// come out short (it did at 3 s with the machine's two cores shared).
const SEND_TIMEOUT: Duration = Duration::from_secs(8);

/// 60,000 messages of 2 KB: 120 MB for a subscriber that reads nothing.
const MESSAGES: usize = 60_000;
const PAYLOAD: usize = 2_000;

/// What a stalled subscriber may take without a drop: its inflight window and
/// online bound (110), what flow control lets through before it counts as
/// stalled, and what the kernel's socket buffers hold (a few MB).
const ABSORBED: usize = 4_000;

fn payload(n: usize) -> Vec<u8> {
    let mut p = format!("{n:08}").into_bytes();
    p.resize(PAYLOAD, b'.');
    p
}

/// A raw MQTT 5 client with a small socket receive buffer and no keepalive
/// that subscribes and then never reads.
async fn stalled(addr: std::net::SocketAddr, id: &str, qos: QoS) -> Raw {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut raw = Raw::from_stream(stream, Version::V5);
    raw.send(Packet::Connect(Box::new(connect(Version::V5, id, true, 0))))
        .await;
    assert!(matches!(raw.recv().await, Packet::ConnAck(_)));
    raw.sub("flood/#", qos).await;
    raw
}

/// Reads everything, acknowledging QoS 1; returns the sequence numbers in
/// arrival order once all arrived or nothing came for 10 s, and the client,
/// still connected.
async fn read_all(mut sub: Raw) -> (Vec<usize>, Raw) {
    let mut got = Vec::with_capacity(MESSAGES);
    while got.len() < MESSAGES {
        match sub.recv_within(Duration::from_secs(10)).await {
            Recv::Packet(Packet::Publish(p)) => {
                if let Some(id) = p.packet_id {
                    sub.puback(id).await;
                }
                got.push(
                    std::str::from_utf8(&p.payload[..8])
                        .unwrap()
                        .parse()
                        .unwrap(),
                );
            }
            Recv::Packet(other) => panic!("unexpected {other:?}"),
            Recv::Timeout | Recv::Closed => break,
        }
    }
    (got, sub)
}

async fn a_stalled_subscriber(qos: QoS) {
    let b = TestBroker::with(|c| {
        c.mqtt.max_inflight = 10;
        c.mqtt.max_online_messages = 100;
        c.mqtt.stall_timeout = STALL;
        c.mqtt.send_timeout = SEND_TIMEOUT;
    });
    let addr = b.addr();
    let mut slow = stalled(addr, &id_on_shard("slow", 1), qos).await;
    let mut reader = Raw::connect(addr, Version::V5, &id_on_shard("reader", 1), true).await;
    reader.sub("flood/#", qos).await;
    let connections = b.metric("shardmq_connections", &[]);
    assert_eq!(connections, 2.0);

    let before = rss_anon();
    let start = Instant::now();
    let reading = tokio::spawn(read_all(reader));
    // A stalled subscriber holds its publisher up for about stall-timeout at
    // most, not for the whole flood.
    let flooder = id_on_shard("flooder", 0);
    let flooding = flood(addr, &flooder, "flood/data", qos, MESSAGES, payload);
    tokio::time::timeout(Duration::from_secs(60), flooding)
        .await
        .expect("the publisher was held up by the stalled subscriber");
    let (got, _reader) = tokio::time::timeout(Duration::from_secs(120), reading)
        .await
        .expect("the reader finishes")
        .unwrap();
    let flooded = start.elapsed();
    assert_eq!(
        got.len(),
        MESSAGES,
        "the subscriber that reads lost messages"
    );
    assert!(got.iter().enumerate().all(|(i, &n)| i == n), "out of order");

    // Everything past what the stalled one absorbed is dropped and counted.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let dropped = b.metric("shardmq_messages_dropped_total", &["reason=\"queue_full\""]) as usize;
    assert!(
        (MESSAGES - ABSORBED..=MESSAGES).contains(&dropped),
        "{dropped} of {MESSAGES} counted dropped for a subscriber that reads nothing \
         (the flood took {flooded:?}; send-timeout {SEND_TIMEOUT:?})"
    );
    let grown = rss_anon().saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "memory grew by {grown} bytes while 120 MB went to a stalled subscriber"
    );

    // Disconnected once its socket has taken nothing for send-timeout (the
    // writer got stuck during the flood), checked once a second.
    let deadline = start + flooded + SEND_TIMEOUT + Duration::from_secs(3);
    let closed_at = loop {
        // The flooder has gone too: the reader is the one left.
        if b.metric("shardmq_connections", &[]) == 1.0 {
            break start.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "the stalled subscriber is still connected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        closed_at >= SEND_TIMEOUT,
        "disconnected after {closed_at:?}, before send-timeout"
    );
    // Its socket holds what was written before it stalled, then the end.
    slow.expect_closed_draining().await;
}

#[tokio::test]
async fn a_stalled_qos0_subscriber_is_bounded_counted_and_disconnected() {
    a_stalled_subscriber(QoS::AtMostOnce).await;
}

#[tokio::test]
async fn a_stalled_qos1_subscriber_is_bounded_counted_and_disconnected() {
    a_stalled_subscriber(QoS::AtLeastOnce).await;
}
