//! A subscriber that reads, however slowly, slows its publisher down instead of
//! losing messages, whether the publisher's connection is on the subscriber's
//! shard (its reader stops while the subscriber is congested) or on the other
//! one (its forwarding credits are held until the subscriber drains).
//!
//! Each case sends everything in large writes, as fast as the socket takes it,
//! to a subscriber with an output bound of 100 packets: without flow control
//! nearly everything would be dropped (QoS 0), or queued in the broker's
//! memory (QoS 1: a reading subscriber's queue is not dropped).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use common::*;
use shardmq::protocol::{decode, encode, Packet, QoS, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MESSAGES: usize = 50_000;

/// Bytes per message: 100 MB in all, so a broker that queued what the
/// subscriber has not read yet, instead of slowing the publisher, would
/// blow the memory bound below.
const PAYLOAD: usize = 2_000;

/// Message `n`: its sequence number, then padding.
fn payload(n: usize) -> Vec<u8> {
    let mut p = format!("{n:08}").into_bytes();
    p.resize(PAYLOAD, b'.');
    p
}

/// Anonymous resident memory of this process (the broker included), in
/// bytes; nextest runs each test in a process of its own. Not VmRSS: in a
/// debug build glommio's stall detector may log a backtrace, and symbolizing
/// it pages in about 90 MB of the binary's debug info (file-backed) and
/// parses some 45 MB of it (anonymous, once).
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// A publisher that writes every message in large writes and reads (and
/// throws away) its acknowledgements meanwhile, so its own socket never fills.
async fn flood(addr: SocketAddr, id: &str, qos: QoS) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut bytes = BytesMut::new();
    let connect = connect(Version::V3_1_1, id, true, 60);
    encode(
        &Packet::Connect(Box::new(connect)),
        Version::V3_1_1,
        &mut bytes,
    )
    .unwrap();
    stream.write_all(&bytes).await.unwrap();
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK for {id}");
    let (mut rd, mut wr) = stream.into_split();
    let acks = tokio::spawn(async move {
        let mut sink = vec![0u8; 64 * 1024];
        while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    bytes.clear();
    for n in 0..MESSAGES {
        let id = match qos {
            QoS::AtMostOnce => 0,
            _ => u16::try_from(n % 65_535 + 1).unwrap(),
        };
        let p = publish("bp/t", qos, id, &payload(n));
        encode(&Packet::Publish(p), Version::V3_1_1, &mut bytes).unwrap();
    }
    wr.write_all(&bytes).await.unwrap();
    drop((wr, acks));
}

/// Reads until every message arrived or nothing came for 5 s, acknowledging
/// QoS 1 ones, pausing now and then like a slow phone. Returns the payloads'
/// sequence numbers in arrival order.
async fn read_slowly(mut sub: Raw, qos: QoS) -> Vec<usize> {
    let mut got = Vec::with_capacity(MESSAGES);
    while got.len() < MESSAGES {
        match sub.recv_within(Duration::from_secs(5)).await {
            Recv::Packet(Packet::Publish(p)) => {
                assert_eq!(p.qos, qos);
                if let Some(id) = p.packet_id {
                    sub.puback(id).await;
                }
                assert_eq!(p.payload.len(), PAYLOAD);
                let n = std::str::from_utf8(&p.payload[..8])
                    .unwrap()
                    .parse()
                    .unwrap();
                got.push(n);
                if got.len() % 5_000 == 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Recv::Packet(other) => panic!("unexpected {other:?}"),
            Recv::Timeout | Recv::Closed => break,
        }
    }
    got
}

async fn loses_nothing(pub_shard: usize, sub_shard: usize, qos: QoS) {
    // An output bound of 100 packets: without back-pressure a publisher
    // sending faster than the subscriber reads drops nearly everything.
    let b = TestBroker::with(|c| c.mqtt.max_online_messages = 100);
    let addr = b.addr();
    let mut sub = Raw::connect(
        addr,
        Version::V3_1_1,
        &id_on_shard("bp-sub", sub_shard),
        true,
    )
    .await;
    sub.sub("bp/t", qos).await;
    settle().await;
    let before = rss();
    let reader = tokio::spawn(read_slowly(sub, qos));
    flood(addr, &id_on_shard("bp-pub", pub_shard), qos).await;

    let got = tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .expect("subscriber finishes")
        .unwrap();
    let grown = rss().saturating_sub(before);
    assert_eq!(got.len(), MESSAGES, "messages lost on the way");
    assert!(got.iter().enumerate().all(|(i, &n)| i == n), "out of order");
    // 100 MB went through; the bound leaves room for the stall detector's
    // symbolizer (see `rss`).
    assert!(
        grown < 64 << 20,
        "memory grew by {grown} bytes for a subscriber that reads"
    );
}

#[tokio::test]
async fn same_shard_qos0_loses_nothing_to_a_reading_subscriber() {
    loses_nothing(0, 0, QoS::AtMostOnce).await;
}

#[tokio::test]
async fn cross_shard_qos0_loses_nothing_to_a_reading_subscriber() {
    loses_nothing(0, 1, QoS::AtMostOnce).await;
}

#[tokio::test]
async fn same_shard_qos1_loses_nothing_to_a_reading_subscriber() {
    loses_nothing(1, 1, QoS::AtLeastOnce).await;
}

#[tokio::test]
async fn cross_shard_qos1_loses_nothing_to_a_reading_subscriber() {
    loses_nothing(1, 0, QoS::AtLeastOnce).await;
}

#[test]
fn the_flood_decodes() {
    // The publisher's bytes are what the broker parses: a sanity check of
    // the encoding used above, packet ids included.
    let mut bytes = BytesMut::new();
    let p = publish("bp/t", QoS::AtLeastOnce, 65_535, &payload(1));
    encode(&Packet::Publish(p), Version::V3_1_1, &mut bytes).unwrap();
    let Ok(Some(Packet::Publish(p))) = decode(&mut bytes, Version::V3_1_1, 1 << 20) else {
        panic!("not a PUBLISH");
    };
    assert_eq!(p.packet_id.map(|id| id.get()), Some(65_535));
}
