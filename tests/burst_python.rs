//! A burst into a real client library (issue 12): two publishers send 5,000
//! QoS 1 messages each, as fast as the broker takes them, to one paho-mqtt
//! subscriber (tests/python/burst_subscriber.py) on the default two-shard
//! config. Every message arrives, in order per publisher.
//!
//! The subscriber reads as fast as Python does, far slower than the
//! publishers send: the broker must slow the publishers down for it, not drop
//! its messages past `max-online-messages` nor disconnect it. One publisher's
//! session is on the subscriber's shard, the other's on the other shard, so
//! both kinds of flow control are at work.
//!
//! The interpreter is `$SHARDMQ_PYTHON`, else `target/pyenv/bin/python`
//! (what `.ci/run` sets up, with `paho-mqtt`). Without it the test fails: it
//! never skips.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::*;
use shardmq::protocol::{Packet, QoS, Version};

/// Messages each publisher sends.
const PER_PUBLISHER: u16 = 5_000;

/// Unacknowledged messages a publisher keeps in flight: paho's default.
const WINDOW: u16 = 20;

/// The whole test, Python's start-up included.
const BOUND: Duration = Duration::from_secs(120);

/// How long the subscriber may receive nothing, once the publishers are done,
/// before the messages it lacks are taken to be lost.
const STALLED: Duration = Duration::from_secs(10);

const PUBLISHERS: [&str; 2] = ["a", "b"];

/// The subscriber's process, killed (by its PID) if the test ends first.
struct Subscriber {
    child: Child,
    lines: Receiver<String>,
    errors: Receiver<String>,
}

impl Subscriber {
    fn spawn(addr: std::net::SocketAddr, id: &str, expected: usize) -> Subscriber {
        let python = python("paho-mqtt");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/burst_subscriber.py");
        let mut child = Command::new(&python)
            .arg(script)
            .args([&addr.ip().to_string(), &addr.port().to_string(), id])
            .args(["burst/#", &expected.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
        let lines = lines_of(child.stdout.take().unwrap());
        let errors = lines_of(child.stderr.take().unwrap());
        Subscriber {
            child,
            lines,
            errors,
        }
    }

    /// What the script said on stderr (why it failed), once it has exited.
    fn stderr(&self) -> String {
        let mut text = String::new();
        while let Ok(line) = self.errors.recv_timeout(Duration::from_secs(1)) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    }

    /// The next line before `deadline`; panics, with the script's stderr, if
    /// it exits or stays silent until then.
    fn line(&self, deadline: Instant, waiting_for: &str) -> String {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("no {waiting_for} within {left:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "the subscriber exited before {waiting_for}: {}",
                self.stderr()
            ),
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn payload(publisher: &str, n: u16) -> String {
    format!("{publisher}:{n}")
}

/// Connects as `id` and sends [`PER_PUBLISHER`] QoS 1 messages on
/// `burst/<publisher>`, with at most [`WINDOW`] unacknowledged: the next goes
/// out as soon as a PUBACK comes back.
async fn publish_all(addr: std::net::SocketAddr, id: String, publisher: &'static str) {
    let mut raw = Raw::connect(addr, Version::V3_1_1, &id, true).await;
    let topic = format!("burst/{publisher}");
    let (mut sent, mut acked) = (0u16, 0u16);
    while acked < PER_PUBLISHER {
        while sent < PER_PUBLISHER && sent - acked < WINDOW {
            let message = payload(publisher, sent);
            raw.publish(publish(
                &topic,
                QoS::AtLeastOnce,
                sent + 1,
                message.as_bytes(),
            ))
            .await;
            sent += 1;
        }
        match raw.recv_within(WAIT).await {
            Recv::Packet(Packet::PubAck(ack)) => {
                assert_eq!(ack.packet_id.get(), acked + 1, "{id}: PUBACKs in order");
                acked += 1;
            }
            other => panic!(
                "{id}: expected PUBACK {} of {PER_PUBLISHER}, got {other:?}",
                acked + 1
            ),
        }
    }
    raw.disconnect().await;
}

#[tokio::test]
async fn paho_subscriber_gets_a_two_publisher_qos1_burst_in_order() {
    let deadline = Instant::now() + BOUND;
    let b = TestBroker::start();
    let expected = PUBLISHERS.len() * usize::from(PER_PUBLISHER);
    let mut sub = Subscriber::spawn(b.addr(), &id_on_shard("paho-burst-sub", 0), expected);
    let ready = sub.line(deadline, "its \"subscribed\" line");
    assert_eq!(ready, "subscribed");

    // One publisher on the subscriber's shard, one on the other.
    let publishers: Vec<_> = PUBLISHERS
        .iter()
        .enumerate()
        .map(|(shard, &name)| {
            let id = id_on_shard(&format!("burst-pub-{name}"), shard);
            tokio::spawn(publish_all(b.addr(), id, name))
        })
        .collect();
    for publisher in publishers {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, publisher)
            .await
            .expect("the publishers finish within the bound")
            .expect("publisher");
    }

    // Every publisher's sequence numbers, as they arrived.
    let mut got: Vec<Vec<u16>> = vec![Vec::new(); PUBLISHERS.len()];
    let mut received = 0;
    while received < expected {
        let stalled = (Instant::now() + STALLED).min(deadline);
        let left = stalled.saturating_duration_since(Instant::now());
        let line = match sub.lines.recv_timeout(left) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                panic!("the subscriber got {received} of {expected} messages and nothing more for {left:?}")
            }
            Err(RecvTimeoutError::Disconnected) => panic!(
                "the subscriber exited after {received} of {expected} messages: {}",
                sub.stderr()
            ),
        };
        let (name, n) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("not a payload: {line:?}"));
        let publisher = PUBLISHERS
            .iter()
            .position(|&p| p == name)
            .unwrap_or_else(|| panic!("no publisher {name:?}: {line:?}"));
        got[publisher].push(n.parse().expect("a sequence number"));
        received += 1;
    }
    for (name, seqs) in PUBLISHERS.iter().zip(&got) {
        let first_out_of_order = seqs
            .iter()
            .zip(0..)
            .find(|&(&got, want)| got != want)
            .map(|(&got, want)| format!("message {want} was {name}:{got}"));
        assert_eq!(
            (seqs.len(), first_out_of_order),
            (usize::from(PER_PUBLISHER), None),
            "publisher {name}: every message once, in order"
        );
    }

    let status = loop {
        if let Some(status) = sub.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the subscriber does not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "the subscriber: {status}: {}",
        sub.stderr()
    );
}
