//! Loss, duplicate and reorder detection against a scripted in-process broker: a tiny
//! fake MQTT broker on 127.0.0.1 (std threads and shardmq's codec) that acknowledges
//! every publish and forwards each to the subscriber as its script says. The main
//! script drops sequence 5, sends 10 twice and swaps 20 and 21; others drop
//! everything after some point. The load tester must report exactly that.

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

/// What the scripted broker does with the publish of one sequence number.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Forward,
    Drop,
    Twice,
    /// Kept until the next [`Fate::ForwardThenHeld`].
    Hold,
    /// Forwarded, then the held one after it.
    ForwardThenHeld,
}

/// The fate of each sequence number.
type Script = fn(u64) -> Fate;

/// Drops [`DROP`], sends [`DUPLICATE`] twice, swaps [`SWAP`] and the next.
fn faults(seq: u64) -> Fate {
    match seq {
        DROP => Fate::Drop,
        DUPLICATE => Fate::Twice,
        SWAP => Fate::Hold,
        s if s == SWAP + 1 => Fate::ForwardThenHeld,
        _ => Fate::Forward,
    }
}

/// The subscriber's socket, once it has subscribed.
type Subscriber = Arc<Mutex<Option<TcpStream>>>;

fn start_scripted_broker(script: Script) -> std::net::SocketAddr {
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
            thread::spawn(move || serve(stream, &subscriber, script));
        }
    });
    addr
}

fn send(stream: &mut TcpStream, packet: &Packet) {
    common::send(stream, Version::V3_1_1, packet);
}

fn serve(stream: TcpStream, subscriber: &Subscriber, script: Script) {
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
                match script(seq) {
                    Fate::Drop => {}
                    Fate::Twice => {
                        send(sub, &Packet::Publish(out.clone()));
                        send(sub, &Packet::Publish(out));
                    }
                    Fate::Hold => held = Some(out),
                    Fate::ForwardThenHeld => {
                        send(sub, &Packet::Publish(out));
                        send(sub, &Packet::Publish(held.take().unwrap()));
                    }
                    Fate::Forward => send(sub, &Packet::Publish(out)),
                }
            }
            Packet::PubRel(rel) => send(&mut stream, &Packet::PubComp(Ack::new(rel.packet_id))),
            Packet::Disconnect(_) => return,
            _ => {}
        }
    }
}

fn run(qos: &str, script: Script) -> loadtest::Report {
    let addr = start_scripted_broker(script);
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
        let report = run(qos, faults);
        // 200 msgs/s for 1 s: intended at 0, 5, ... 995 ms, every one sent.
        assert_eq!(report.sent, 200, "QoS {qos}: {report:?}");
        assert_eq!(report.lost, 1, "QoS {qos}: {report:?}");
        assert_eq!(report.not_arrived, 0, "QoS {qos}: {report:?}");
        assert_eq!(report.missing(), 1, "QoS {qos}: {report:?}");
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
            "not_arrived",
            "expected",
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

/// Regression (issue 11): the real-broker test "loses nothing" checked `lost`, which
/// counts only gaps, so a broker that acknowledged everything and delivered only the
/// first message passed it. The loss is there, in `not_arrived`.
#[test]
fn losses_after_the_last_arrival_are_not_arrived_and_missing() {
    for qos in ["0", "1", "2"] {
        let report = run(qos, |seq| if seq == 0 { Fate::Forward } else { Fate::Drop });
        assert_eq!(
            (report.sent, report.expected),
            (200, 200),
            "QoS {qos}: {report:?}"
        );
        if qos != "0" {
            assert_eq!(report.acked, 200, "QoS {qos}: {report:?}");
        }
        assert_eq!(report.received, 1, "QoS {qos}: {report:?}");
        // No gap: nothing arrived after the loss began.
        assert_eq!(report.lost, 0, "QoS {qos}: {report:?}");
        assert_eq!(report.not_arrived, 199, "QoS {qos}: {report:?}");
        assert_eq!(report.missing(), 199, "QoS {qos}: {report:?}");
        assert!(
            report
                .table()
                .contains("missing        199 (lost + not arrived)"),
            "{}",
            report.table()
        );
    }
}

/// Regression: `received` counts a duplicate each time, and `not_arrived` was
/// `expected - received - lost`, so a broker sending the first half twice and the
/// rest never showed nothing missing.
#[test]
fn duplicates_do_not_hide_what_did_not_arrive() {
    let report = run("1", |seq| if seq < 100 { Fate::Twice } else { Fate::Drop });
    assert_eq!(report.sent, 200, "{report:?}");
    assert_eq!(
        (report.received, report.duplicated),
        (200, 100),
        "{report:?}"
    );
    assert_eq!((report.lost, report.not_arrived), (0, 100), "{report:?}");
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
