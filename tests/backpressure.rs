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

use std::time::Duration;

use bytes::BytesMut;
use common::*;
use shardmq::protocol::{decode, encode, Packet, QoS, Version};

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
    let before = rss_anon();
    let reader = tokio::spawn(read_slowly(sub, qos));
    flood(
        addr,
        &id_on_shard("bp-pub", pub_shard),
        "bp/t",
        qos,
        MESSAGES,
        payload,
    )
    .await;

    let got = tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .expect("subscriber finishes")
        .unwrap();
    let grown = rss_anon().saturating_sub(before);
    assert_eq!(got.len(), MESSAGES, "messages lost on the way");
    assert!(got.iter().enumerate().all(|(i, &n)| i == n), "out of order");
    // 100 MB went through: without flow control the QoS 1 queue alone
    // would hold most of it (93 MB more was measured so).
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
