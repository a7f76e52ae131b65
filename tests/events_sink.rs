//! The event sinks over real sockets: the broker in-process connects out to a
//! consumer played by a std `TcpListener` in the test, which decodes frames
//! with the crate's own decoders and the generated protobuf types.
//!
//! Fault cases: the consumer killed mid-stream (reconnect, and with acks a
//! replay without loss), a consumer that stops reading (drops counted, MQTT
//! delivery unharmed), and no consumer at all. No assertion is on speed:
//! waits are bounded, and only for things that must happen.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use prost::Message;
use shardmq::config::{Config, Cores, SinkConfig, SinkFormat};
use shardmq::events::frame::{decode_native, decode_vmq, encode_ack, Ack};
use shardmq::events::schema::{native, vmq};

use common::{http_get, v3_options, V3};

const PATIENCE: Duration = Duration::from_secs(10);
const MAX_FRAME: usize = 16 << 20;

fn broker(sinks: Vec<SinkConfig>) -> shardmq::Server {
    let mut config = Config::embedded_default().expect("default config");
    config.set_bind("127.0.0.1:0".parse().unwrap());
    config.http.bind = "127.0.0.1:0".parse().unwrap();
    config.shards.cores = Cores::List(vec![0, 1]);
    config.events.sinks = sinks;
    config.validate().expect("valid test config");
    shardmq::start(&config, shards::ShutdownHandle::new(), false).expect("broker starts")
}

fn stop(server: shardmq::Server) {
    server.shutdown_handle().trigger();
    server.join().expect("clean stop");
}

fn sink(addr: SocketAddr, hooks: &[&str]) -> SinkConfig {
    let mut sink = SinkConfig::new(addr.to_string());
    sink.hooks = hooks.iter().map(|h| h.to_string()).collect();
    sink.connections = 2;
    sink
}

/// What a consumer got: each native event with its shard and sequence
/// number, or each vmq `Any`.
#[derive(Debug, Clone)]
struct Got {
    shard: u16,
    seq: u64,
    bytes: Bytes,
}

/// A consumer listening on 127.0.0.1: accepts the broker's connections and
/// decodes what they carry, acking each native frame when `ack` is set, or
/// reading nothing at all while `read` is off (until [`Consumer::resume`]).
/// Stopped (every socket closed) on [`Consumer::kill`] or drop.
struct Consumer {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    /// Whether the connections read: `mode.read`, then on after `resume`.
    reading: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

#[derive(Clone, Copy)]
struct Mode {
    format: SinkFormat,
    ack: bool,
    read: bool,
}

const NATIVE: Mode = Mode {
    format: SinkFormat::Native,
    ack: false,
    read: true,
};

impl Consumer {
    fn start(addr: &str, mode: Mode) -> Consumer {
        let listener = TcpListener::bind(addr).expect("consumer binds");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let reading = Arc::new(AtomicBool::new(mode.read));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (got, reading, stop) = (got.clone(), reading.clone(), stop.clone());
            thread::spawn(move || {
                let mut readers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (got, reading, stop) = (got.clone(), reading.clone(), stop.clone());
                            readers.push(thread::spawn(move || {
                                serve(stream, mode, &got, &reading, &stop)
                            }));
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(5))
                        }
                        Err(e) => panic!("accept: {e}"),
                    }
                }
                for reader in readers {
                    let _ = reader.join();
                }
            })
        };
        Consumer {
            addr,
            got,
            reading,
            stop,
            threads: vec![accept],
        }
    }

    /// Starts reading, on every connection, for a consumer started with
    /// `read` off.
    fn resume(&self) {
        self.reading.store(true, Ordering::Relaxed);
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `enough` holds for what arrived, up to [`PATIENCE`].
    fn wait_for(&self, what: &str, enough: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let got = self.got();
            if enough(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; got {} events",
                got.len()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Closes the listener and every connection at once.
    fn kill(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One broker connection: decode (and ack) until stopped or closed, reading
/// only while `reading` is on.
fn serve(
    mut stream: TcpStream,
    mode: Mode,
    got: &Mutex<Vec<Got>>,
    reading: &AtomicBool,
    stop: &AtomicBool,
) {
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        if !reading.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(10));
            continue;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
        loop {
            match mode.format {
                SinkFormat::Native => match decode_native(&mut buf, MAX_FRAME) {
                    Ok(Some(frame)) => {
                        let last = frame.first_seq + frame.events.len() as u64 - 1;
                        let mut got = got.lock().unwrap();
                        for (i, bytes) in frame.events.into_iter().enumerate() {
                            got.push(Got {
                                shard: frame.shard,
                                seq: frame.first_seq + i as u64,
                                bytes,
                            });
                        }
                        drop(got);
                        if mode.ack {
                            let mut out = BytesMut::new();
                            encode_ack(
                                Ack {
                                    shard: frame.shard,
                                    seq: last,
                                },
                                &mut out,
                            );
                            if stream.write_all(&out).is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => panic!("bad native frame: {e}"),
                },
                SinkFormat::VmqCompat => match decode_vmq(&mut buf, MAX_FRAME) {
                    Ok(Some(any)) => got.lock().unwrap().push(Got {
                        shard: 0,
                        seq: 0,
                        bytes: any,
                    }),
                    Ok(None) => break,
                    Err(e) => panic!("bad vmq frame: {e}"),
                },
            }
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// The `on_publish` topics among native events.
fn published_topics(got: &[Got]) -> Vec<String> {
    got.iter()
        .filter_map(|g| {
            let event = native::Event::decode(g.bytes.clone()).expect("a native Event");
            match event.event? {
                native::event::Event::OnPublish(p) => Some(p.topic),
                _ => None,
            }
        })
        .collect()
}

/// Sequence numbers per shard.
fn seqs(got: &[Got]) -> BTreeMap<u16, Vec<u64>> {
    let mut by_shard: BTreeMap<u16, Vec<u64>> = BTreeMap::new();
    for g in got {
        by_shard.entry(g.shard).or_default().push(g.seq);
    }
    by_shard
}

/// Publishes `n` QoS 1 messages on `t/<tag>/<i>` and checks that a subscriber to
/// `t/#` receives every one: MQTT delivery is whole, whatever the sinks do.
async fn publish_and_check_delivery(addr: SocketAddr, tag: &str, n: usize, payload: usize) {
    let mut sub = V3::connect(v3_options(addr, &format!("{tag}-sub"))).await;
    sub.subscribe("t/#", rumqttc::QoS::AtLeastOnce).await;
    common::settle().await;
    let publisher = V3::connect(v3_options(addr, &format!("{tag}-pub"))).await;
    let body = vec![b'x'; payload];
    for i in 0..n {
        publisher
            .publish(
                &format!("t/{tag}/{i}"),
                rumqttc::QoS::AtLeastOnce,
                false,
                &body,
            )
            .await;
    }
    let mut seen = BTreeSet::new();
    while seen.len() < n {
        let p = sub.recv().await;
        seen.insert(p.topic);
    }
    publisher.disconnect().await;
    sub.disconnect().await;
}

/// A free port on 127.0.0.1 nobody listens on.
fn unused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn native_events_arrive_in_order_without_gaps() {
    let consumer = Consumer::start("127.0.0.1:0", NATIVE);
    let server = broker(vec![sink(consumer.addr, &["on_publish"])]);
    let addr = server.local_addrs()[0];
    publish_and_check_delivery(addr, "order", 50, 10).await;
    let mut got = consumer.wait_for("50 on_publish events", |g| g.len() >= 50);
    // Frames of one shard arrive over two connections, interleaved; the
    // sequence numbers give the order the shard produced the events in,
    // which for one publisher is the order it published in.
    got.sort_by_key(|g| (g.shard, g.seq));
    let topics = published_topics(&got);
    let want: Vec<String> = (0..50).map(|i| format!("t/order/{i}")).collect();
    assert_eq!(topics, want, "on_publish events in sequence order");
    for (shard, seqs) in seqs(&got) {
        let want: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, want, "shard {shard}: from 1, no gap, no repeat");
    }
    let sinks = server.metrics().event_sinks();
    assert_eq!(sinks[0].sent(), 50);
    assert!(
        sinks[0].connects() >= 2,
        "one connection per shard at least"
    );
    assert_eq!(sinks[0].dropped_total(), 0);
    stop(server);
}

#[tokio::test]
async fn vmq_compat_frames_carry_one_any_each() {
    let consumer = Consumer::start(
        "127.0.0.1:0",
        Mode {
            format: SinkFormat::VmqCompat,
            ..NATIVE
        },
    );
    let mut config = sink(consumer.addr, &["on_publish"]);
    config.format = SinkFormat::VmqCompat;
    let server = broker(vec![config]);
    publish_and_check_delivery(server.local_addrs()[0], "vmq", 20, 10).await;
    let got = consumer.wait_for("20 vmq frames", |g| g.len() >= 20);
    assert_eq!(got.len(), 20);
    for g in &got {
        let any = prost_types::Any::decode(g.bytes.clone()).expect("an Any");
        assert_eq!(
            any.type_url,
            "type.googleapis.com/eventssidecar.v1.OnPublish"
        );
        let p = vmq::OnPublish::decode(any.value.as_slice()).expect("an OnPublish");
        assert!(p.topic.starts_with("t/"), "{p:?}");
    }
    stop(server);
}

#[tokio::test]
async fn with_acks_a_killed_consumer_loses_nothing_after_reconnect() {
    // The first consumer reads but never acks, then dies; events published
    // while it is gone wait in the buffer. The second acks: it must see
    // every event, the unacked ones again.
    let first = Consumer::start("127.0.0.1:0", NATIVE);
    let listen = first.addr;
    let mut config = sink(listen, &["on_publish"]);
    config.acks = true;
    let server = broker(vec![config]);
    let addr = server.local_addrs()[0];
    publish_and_check_delivery(addr, "ack1", 30, 10).await;
    first.wait_for("30 events before the kill", |g| g.len() >= 30);
    first.kill();
    publish_and_check_delivery(addr, "ack2", 30, 10).await;
    let second = Consumer::start(
        &listen.to_string(),
        Mode {
            ack: true,
            ..NATIVE
        },
    );
    let got = second.wait_for("60 distinct events after the reconnect", |g| {
        g.iter()
            .map(|e| (e.shard, e.seq))
            .collect::<BTreeSet<_>>()
            .len()
            >= 60
    });
    let topics: BTreeSet<String> = published_topics(&got).into_iter().collect();
    assert_eq!(topics.len(), 60, "every publish of both rounds");
    for (shard, seqs) in seqs(&got) {
        let distinct: BTreeSet<u64> = seqs.into_iter().collect();
        let want: BTreeSet<u64> = (1..=distinct.len() as u64).collect();
        assert_eq!(distinct, want, "shard {shard}: replayed from 1, no gap");
    }
    let sinks = server.metrics().event_sinks();
    assert!(sinks[0].disconnects() >= 1, "the kill was seen");
    assert_eq!(sinks[0].dropped_total(), 0, "within the buffer: no loss");
    // Once everything is acked, nothing is held.
    let deadline = Instant::now() + PATIENCE;
    while sinks[0].buffered() > 0 {
        assert!(Instant::now() < deadline, "acked frames are released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(server);
}

#[tokio::test]
async fn a_consumer_that_stops_reading_costs_counted_drops_not_delivery() {
    let consumer = Consumer::start(
        "127.0.0.1:0",
        Mode {
            read: false,
            ..NATIVE
        },
    );
    let mut config = sink(consumer.addr, &["on_publish", "on_deliver"]);
    config.max_batch_bytes = 4096;
    config.buffer_bytes = 16 * 1024;
    let server = broker(vec![config]);
    let addr = server.local_addrs()[0];
    // 400 publishes of 2 KiB, each an on_publish and an on_deliver event:
    // about 1.6 MB of events against 16 KiB of buffer and the socket buffers.
    publish_and_check_delivery(addr, "stuck", 400, 2048).await;
    let sinks = server.metrics().event_sinks();
    let deadline = Instant::now() + PATIENCE;
    while sinks[0].dropped_total() == 0 {
        assert!(Instant::now() < deadline, "drops are counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The publishes are over, so no event is produced any more, and each of
    // the 800 is sent, dropped, or held. What is held is counted in bytes,
    // not events: the consumer reads again until nothing is, and then every
    // event is sent (and read by the consumer) or dropped.
    consumer.resume();
    let deadline = Instant::now() + PATIENCE;
    while sinks[0].buffered() > 0 || (consumer.got().len() as u64) < sinks[0].sent() {
        assert!(
            Instant::now() < deadline,
            "the backlog drains once the consumer reads: {} bytes held, {} of {} sent events read",
            sinks[0].buffered(),
            consumer.got().len(),
            sinks[0].sent()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = consumer.got();
    let (_, text) = http_get(server.http_addr(), "/metrics");
    let name = format!("sink=\"{}\"", consumer.addr);
    let counter = |family: &str, hook: Option<&str>| {
        text.lines()
            .find(|l| {
                l.starts_with(&format!("{family}{{"))
                    && l.contains(&name)
                    && hook.is_none_or(|h| l.contains(&format!("hook=\"{h}\"")))
            })
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {family} {hook:?} for the sink in:\n{text}"))
    };
    let sent = counter("shardmq_events_sent_total", None);
    assert_eq!(got.len() as u64, sent, "the consumer read what was sent");
    assert_eq!(counter("shardmq_events_buffered_bytes", None), 0);
    for hook in ["on_publish", "on_deliver"] {
        let read = got.iter().filter(|g| hook_of(g) == hook).count() as u64;
        let dropped = counter("shardmq_events_dropped_total", Some(hook));
        assert_eq!(
            read + dropped,
            400,
            "{hook}: each of 400 events read ({read}) or counted dropped ({dropped})"
        );
    }
    // A dropped event uses up its sequence number: each shard's numbers are
    // distinct and within what it produced.
    for (shard, seqs) in seqs(&got) {
        let produced = seqs.len() as u64 + sink_drops_on(&sinks[0], shard);
        let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
        assert_eq!(distinct.len(), seqs.len(), "shard {shard}: no repeat");
        assert!(
            distinct.iter().all(|s| (1..=produced).contains(s)),
            "shard {shard}: sequence numbers within 1..={produced}: {distinct:?}"
        );
    }
    consumer.kill();
    stop(server);
}

/// The hook name of a native event.
fn hook_of(g: &Got) -> &'static str {
    use native::event::Event as E;
    match native::Event::decode(g.bytes.clone())
        .expect("a native Event")
        .event
    {
        Some(E::OnPublish(_)) => "on_publish",
        Some(E::OnDeliver(_)) => "on_deliver",
        other => panic!("an event no sink asked for: {other:?}"),
    }
}

/// Events `sink` dropped on `shard`, every hook.
fn sink_drops_on(sink: &shardmq::metrics::EventSinkMetrics, shard: u16) -> u64 {
    sink.shard(usize::from(shard))
        .dropped
        .iter()
        .map(|d| d.load(Ordering::Relaxed))
        .sum()
}

#[tokio::test]
async fn without_a_consumer_delivery_works_and_shutdown_is_prompt() {
    let nowhere = unused_addr();
    let mut config = sink(nowhere, &["on_register", "on_publish", "on_deliver"]);
    config.buffer_bytes = 65536;
    let server = broker(vec![config]);
    publish_and_check_delivery(server.local_addrs()[0], "absent", 200, 100).await;
    let sinks = server.metrics().event_sinks();
    assert_eq!(sinks[0].connects(), 0);
    assert_eq!(sinks[0].sent(), 0);
    let started = Instant::now();
    stop(server);
    assert!(
        started.elapsed() < PATIENCE,
        "shutdown does not wait on the absent consumer"
    );
}

/// A `shardmq events tail` process, killed on drop.
struct Tail {
    child: std::process::Child,
    addr: SocketAddr,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Tail {
    fn start(extra: &[&str]) -> Tail {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_shardmq"))
            .args(["events", "tail", "--connect", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("shardmq events tail starts");
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        stderr.read_line(&mut first).unwrap();
        let addr = first
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        thread::spawn(move || for _ in stderr.lines() {});
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Tail { child, addr, lines }
    }

    /// The next line, within [`PATIENCE`].
    fn line(&self) -> serde_json::Value {
        let line = self
            .lines
            .recv_timeout(PATIENCE)
            .expect("a line from events tail");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn events_tail_prints_json_lines_and_counts() {
    let tail = Tail::start(&["--ack"]);
    let counter = Tail::start(&["--count"]);
    let mut acked = sink(tail.addr, &["on_publish"]);
    acked.acks = true;
    let server = broker(vec![acked, sink(counter.addr, &["on_publish"])]);
    publish_and_check_delivery(server.local_addrs()[0], "tail", 3, 5).await;
    let mut topics = BTreeSet::new();
    for _ in 0..3 {
        let line = tail.line();
        assert!(line["seq"].as_u64().is_some_and(|s| s >= 1), "{line}");
        assert_eq!(line["on_publish"]["payload"], "xxxxx", "{line}");
        topics.insert(line["on_publish"]["topic"].as_str().unwrap().to_owned());
    }
    assert_eq!(topics.len(), 3);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let line = counter.line();
        let shards = line["shards"].as_object().expect("shards");
        let last: u64 = shards
            .values()
            .map(|s| s["last_seq"].as_u64().unwrap())
            .sum();
        let missing: u64 = shards
            .values()
            .map(|s| s["missing"].as_u64().unwrap())
            .sum();
        assert_eq!(missing, 0, "{line}");
        if last == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "counted: {line}");
    }
    let sinks = server.metrics().event_sinks();
    let deadline = Instant::now() + PATIENCE;
    while sinks[0].buffered() > 0 {
        assert!(
            Instant::now() < deadline,
            "the tail's acks release the frames"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(server);
}

#[tokio::test]
async fn the_events_of_a_shutdown_still_reach_the_consumer() {
    let consumer = Consumer::start("127.0.0.1:0", NATIVE);
    let server = broker(vec![sink(consumer.addr, &["on_client_offline"])]);
    let client = V3::connect(v3_options(server.local_addrs()[0], "leaving")).await;
    stop(server);
    let got = consumer.wait_for("on_client_offline at shutdown", |g| !g.is_empty());
    let event = native::Event::decode(got[0].bytes.clone()).unwrap();
    match event.event {
        Some(native::event::Event::OnClientOffline(e)) => assert_eq!(e.client_id, "leaving"),
        other => panic!("{other:?}"),
    }
    drop(client);
}
