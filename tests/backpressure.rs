//! A subscriber that reads, however slowly, slows its publisher down instead of
//! losing messages: the publisher's reader stops while the subscriber's output
//! is past half of `max-online-messages`.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::*;
use shardmq::protocol::{encode, Packet, QoS, Version};
use tokio::io::AsyncWriteExt;

const MESSAGES: usize = 50_000;

#[tokio::test]
async fn a_flooding_publisher_loses_nothing_to_a_reading_subscriber() {
    // An output bound of 100 packets: without back-pressure a publisher
    // sending faster than the subscriber reads drops nearly everything.
    let b = TestBroker::with(|c| c.mqtt.max_online_messages = 100);
    let addr = b.addr();
    let mut sub = Raw::connect(addr, Version::V3_1_1, &id_on_shard("bp-sub", 0), true).await;
    sub.sub("bp/t", QoS::AtMostOnce).await;
    let mut publisher = Raw::connect(addr, Version::V3_1_1, &id_on_shard("bp-pub", 0), true).await;

    let reader = tokio::spawn(async move {
        let mut received = 0;
        while received < MESSAGES {
            match sub.recv_within(Duration::from_secs(5)).await {
                Recv::Packet(Packet::Publish(_)) => received += 1,
                Recv::Packet(other) => panic!("unexpected {other:?}"),
                Recv::Timeout | Recv::Closed => break,
            }
        }
        received
    });

    // All of it in large writes, as fast as the socket takes it.
    let mut bytes = BytesMut::new();
    for n in 0..MESSAGES {
        let p = publish("bp/t", QoS::AtMostOnce, 0, format!("{n:08}").as_bytes());
        encode(&Packet::Publish(p), Version::V3_1_1, &mut bytes).unwrap();
    }
    publisher.stream_mut().write_all(&bytes).await.unwrap();

    let received = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("subscriber finishes")
        .unwrap();
    assert_eq!(received, MESSAGES, "messages lost on the way");
}
