//! Loss, duplicate and reorder detection against a scripted in-process broker: a tiny
//! fake MQTT broker on 127.0.0.1 (std threads and shardmq's codec) that forwards every
//! publish to the subscriber except that it drops sequence 5, sends 10 twice and swaps
//! 20 and 21. The load tester must report exactly that.

mod common;

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use clap::Parser;
use common::Peer;
use loadtest::payload::Header;
use shardmq::protocol::{
    Ack, AckProperties, ConnAck, ConnAckProperties, Packet, Publish, QoS, ReasonCode, SubAck,
    Version,
};

const DROP: u64 = 5;
const DUPLICATE: u64 = 10;
const SWAP: u64 = 20;

/// The subscriber's socket, once it has subscribed.
type Subscriber = Arc<Mutex<Option<TcpStream>>>;

fn start_scripted_broker() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let subscriber: Subscriber = Arc::default();
    thread::spawn(move || {
        // One subscriber and one publisher.
        for _ in 0..2 {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let subscriber = subscriber.clone();
            thread::spawn(move || serve(stream, &subscriber));
        }
    });
    addr
}

fn send(stream: &mut TcpStream, packet: &Packet) {
    common::send(stream, Version::V3_1_1, packet);
}

fn serve(stream: TcpStream, subscriber: &Subscriber) {
    let mut conn = Peer::new(stream, Version::V3_1_1);
    // Answers go out on a second handle while `conn` reads.
    let mut stream = conn.stream.try_clone().unwrap();
    let mut held: Option<Publish> = None;
    while let Some(packet) = conn.next() {
        match packet {
            Packet::Connect(_) => send(
                &mut stream,
                &Packet::ConnAck(ConnAck {
                    session_present: false,
                    reason_code: ReasonCode::Success,
                    properties: ConnAckProperties::default(),
                }),
            ),
            Packet::Subscribe(s) => {
                send(
                    &mut stream,
                    &Packet::SubAck(SubAck {
                        packet_id: s.packet_id,
                        reason_codes: vec![ReasonCode::Success],
                        properties: AckProperties::default(),
                    }),
                );
                *subscriber.lock().unwrap() = Some(stream.try_clone().unwrap());
            }
            Packet::Publish(p) => {
                match (p.qos, p.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => {
                        send(&mut stream, &Packet::PubAck(Ack::new(id)))
                    }
                    (QoS::ExactlyOnce, Some(id)) => {
                        send(&mut stream, &Packet::PubRec(Ack::new(id)))
                    }
                    _ => {}
                }
                let seq = Header::decode(&p.payload).unwrap().seq;
                let out = Publish {
                    qos: QoS::AtMostOnce,
                    packet_id: None,
                    ..p
                };
                let mut guard = subscriber.lock().unwrap();
                let sub = guard.as_mut().expect("publishing starts after SUBACK");
                match seq {
                    DROP => {}
                    DUPLICATE => {
                        send(sub, &Packet::Publish(out.clone()));
                        send(sub, &Packet::Publish(out));
                    }
                    SWAP => held = Some(out),
                    s if s == SWAP + 1 => {
                        send(sub, &Packet::Publish(out));
                        send(sub, &Packet::Publish(held.take().unwrap()));
                    }
                    _ => send(sub, &Packet::Publish(out)),
                }
            }
            Packet::PubRel(rel) => send(&mut stream, &Packet::PubComp(Ack::new(rel.packet_id))),
            Packet::Disconnect(_) => return,
            _ => {}
        }
    }
}

fn run(qos: &str) -> loadtest::Report {
    let addr = start_scripted_broker();
    let args = loadtest::Args::try_parse_from([
        "loadtest",
        "--broker",
        &addr.to_string(),
        "--scenario",
        "p2p",
        "--clients",
        "1",
        "--qos",
        qos,
        "--rate",
        "200",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--cores",
        "0",
    ])
    .unwrap();
    loadtest::execute(&args, false).unwrap()
}

#[test]
fn loss_duplicate_and_reorder_are_reported_exactly() {
    for qos in ["0", "1", "2"] {
        let report = run(qos);
        // 200 msgs/s for 1 s: intended at 0, 5, ... 995 ms, every one sent.
        assert_eq!(report.sent, 200, "QoS {qos}: {report:?}");
        assert_eq!(report.lost, 1, "QoS {qos}: {report:?}");
        assert_eq!(report.duplicated, 1, "QoS {qos}: {report:?}");
        assert_eq!(report.reordered, 1, "QoS {qos}: {report:?}");
        // One dropped, one twice.
        assert_eq!(report.received, 200, "QoS {qos}: {report:?}");
        assert_eq!(report.errors, 0, "QoS {qos}: {report:?}");
        if qos != "0" {
            assert_eq!(report.acked, 200, "{report:?}");
        }
        assert!(report.latency_us.max >= report.latency_us.p50);
        let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
        for key in [
            "sent",
            "received",
            "lost",
            "duplicated",
            "reordered",
            "sent_per_sec",
            "received_per_sec",
            "errors",
        ] {
            assert!(json[key].is_number(), "{key} in {json}");
        }
        for key in ["p50", "p90", "p99", "p999", "max"] {
            assert!(
                json["latency_us"][key].is_number(),
                "latency_us.{key} in {json}"
            );
        }
    }
}

#[test]
fn a_refused_connection_is_counted_not_a_panic() {
    // A port nobody listens on: bind, learn the port, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let args = loadtest::Args::try_parse_from([
        "loadtest",
        "--broker",
        &format!("127.0.0.1:{port}"),
        "--scenario",
        "p2p",
        "--duration",
        "100ms",
        "--warmup",
        "0s",
        "--cores",
        "0",
    ])
    .unwrap();
    let report = loadtest::execute(&args, false).unwrap();
    assert_eq!(report.errors, 2, "{report:?}");
    assert_eq!(
        report.error_reasons.get("connect: ConnectionRefused"),
        Some(&2),
        "{report:?}"
    );
}
