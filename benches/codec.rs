//! Codec throughput: decoding and encoding PUBLISH at several payload sizes, and
//! CONNECT, in MQTT 3.1.1 and 5.
//!
//! Decoding is measured the way the broker does it: bytes arrive in a reused read
//! buffer (`extend_from_slice`, standing in for the socket read) and `decode`
//! takes one packet off its front.

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardmq::protocol::{
    decode, encode, Connect, ConnectProperties, Packet, Publish, PublishProperties, QoS, Version,
    MAX_PACKET_SIZE,
};
use shardmq::topic::TopicName;

fn publish(payload: usize, qos: QoS) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: TopicName::new("devices/4711/events").unwrap(),
        packet_id: (qos != QoS::AtMostOnce).then(|| 1.try_into().unwrap()),
        payload: Bytes::from(vec![0xa5; payload]),
        properties: PublishProperties::default(),
    })
}

fn connect(version: Version) -> Packet {
    Packet::Connect(Box::new(Connect {
        version,
        clean_start: false,
        keep_alive: 60,
        client_id: ByteString::from("device-1:owner-7:profile-42"),
        will: None,
        username: Some(ByteString::from("owner-7")),
        // A typical HS256 JWT is about 180 bytes.
        password: Some(Bytes::from(vec![b'j'; 180])),
        properties: ConnectProperties {
            user_properties: vec![(ByteString::from("app"), ByteString::from("courier/1.4"))],
            ..Default::default()
        },
    }))
}

fn wire(packet: &Packet, version: Version) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).unwrap();
    buf.to_vec()
}

fn bench_decode(c: &mut Criterion, name: &str, packet: &Packet, version: Version) {
    let bytes = wire(packet, version);
    let mut group = c.benchmark_group(format!("decode/{name}"));
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function(BenchmarkId::from_parameter(version.name()), |b| {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        b.iter(|| {
            buf.extend_from_slice(&bytes);
            black_box(decode(&mut buf, version, MAX_PACKET_SIZE).unwrap().unwrap());
        })
    });
    group.finish();
}

fn bench_encode(c: &mut Criterion, name: &str, packet: &Packet, version: Version) {
    let mut group = c.benchmark_group(format!("encode/{name}"));
    group.throughput(Throughput::Bytes(wire(packet, version).len() as u64));
    group.bench_function(BenchmarkId::from_parameter(version.name()), |b| {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        b.iter(|| {
            encode(black_box(packet), version, &mut buf).unwrap();
            buf.clear();
        })
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    for version in [Version::V3_1_1, Version::V5] {
        for size in [16, 256, 4096] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
                let name = format!("publish-{size}B-qos{}", qos as u8);
                let packet = publish(size, qos);
                bench_decode(c, &name, &packet, version);
                bench_encode(c, &name, &packet, version);
            }
        }
        let packet = connect(version);
        bench_decode(c, "connect", &packet, version);
        bench_encode(c, "connect", &packet, version);
    }

    // The target: decode plus encode of a 64-byte QoS 0 PUBLISH under 100 ns.
    let mut group = c.benchmark_group("decode+encode/publish-64B-qos0");
    for version in [Version::V3_1_1, Version::V5] {
        let bytes = wire(&publish(64, QoS::AtMostOnce), version);
        group.bench_function(BenchmarkId::from_parameter(version.name()), |b| {
            let mut read = BytesMut::with_capacity(64 * 1024);
            let mut write = BytesMut::with_capacity(64 * 1024);
            b.iter(|| {
                read.extend_from_slice(&bytes);
                let packet = decode(&mut read, version, MAX_PACKET_SIZE)
                    .unwrap()
                    .unwrap();
                encode(&packet, version, &mut write).unwrap();
                write.clear();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
