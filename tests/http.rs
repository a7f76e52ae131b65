//! `/health`, `/metrics`, `$SYS` topics and `max-connections`, on the broker
//! in-process, with raw HTTP and raw MQTT bytes over loopback sockets.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::http_get;
use shardmq::config::{Config, Cores};

/// How long any wait in these tests may take before it is a failure.
const PATIENCE: Duration = Duration::from_secs(10);

fn broker(edit: impl FnOnce(&mut Config)) -> shardmq::Server {
    let mut config = Config::embedded_default().expect("default config");
    config.set_bind("127.0.0.1:0".parse().unwrap());
    config.http.bind = "127.0.0.1:0".parse().unwrap();
    config.shards.cores = Cores::List(vec![0, 1]);
    edit(&mut config);
    shardmq::start(&config, shards::ShutdownHandle::new(), false).expect("broker starts")
}

fn stop(server: shardmq::Server) {
    server.shutdown_handle().trigger();
    server.join().expect("clean stop");
}

/// The sum of the samples of `name` whose labels include every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name && labels.iter().all(|label| rest.contains(label))
        })
        .map(|(_, value)| value.parse::<f64>().expect("numeric sample") as u64)
        .sum()
}

/// Polls `/metrics` until `done` holds for it, within [`PATIENCE`].
fn metrics_until(addr: SocketAddr, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, text) = http_get(addr, "/metrics");
        assert_eq!(status, 200);
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what}; last /metrics:\n{text}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// CONNECT for MQTT 3.1.1 (`level` 4) or 5, clean session, keepalive 60.
fn connect_packet(level: u8, id: &str) -> Vec<u8> {
    let mut p = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', level, 0x02, 0x00, 0x3c];
    if level == 5 {
        p.push(0x00); // no properties
    }
    p.extend_from_slice(&(id.len() as u16).to_be_bytes());
    p.extend_from_slice(id.as_bytes());
    let mut packet = vec![0x10, p.len() as u8];
    packet.extend(p);
    packet
}

/// Connects and sends CONNECT; returns the stream and the CONNACK packet.
fn try_connect(addr: SocketAddr, level: u8, id: &str) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(&connect_packet(level, id)).unwrap();
    let connack = read_packet(&mut s).expect("CONNACK");
    assert_eq!(connack[0], 0x20, "CONNACK, got {connack:?}");
    (s, connack)
}

/// A connected MQTT 3.1.1 client.
fn connect(addr: SocketAddr, id: &str) -> TcpStream {
    let (s, connack) = try_connect(addr, 4, id);
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "accepted");
    s
}

/// One whole packet (fixed header included), or `None` at end of stream.
fn read_packet(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut first = [0u8; 1];
    match s.read_exact(&mut first) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return None,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
        Err(e) => panic!("read: {e}"),
    }
    let mut packet = first.to_vec();
    let mut len = 0usize;
    for shift in (0..28).step_by(7) {
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).expect("remaining length");
        packet.push(byte[0]);
        len |= usize::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    let start = packet.len();
    packet.resize(start + len, 0);
    s.read_exact(&mut packet[start..]).expect("packet body");
    Some(packet)
}

/// SUBSCRIBE packet id 1 to `filter` at QoS 0, and its SUBACK.
fn subscribe(s: &mut TcpStream, filter: &str) {
    let mut p = vec![0x00, 0x01];
    p.extend_from_slice(&(filter.len() as u16).to_be_bytes());
    p.extend_from_slice(filter.as_bytes());
    p.push(0x00);
    let mut packet = vec![0x82, p.len() as u8];
    packet.extend(p);
    s.write_all(&packet).unwrap();
    let ack = read_packet(s).expect("SUBACK");
    assert_eq!(ack, [0x90, 0x03, 0x00, 0x01, 0x00], "SUBACK granted QoS 0");
}

/// A v3.1.1 PUBLISH's topic and payload.
fn topic_and_payload(packet: &[u8]) -> (String, String) {
    assert_eq!(packet[0] & 0xf0, 0x30, "PUBLISH, got {packet:?}");
    let mut at = 1;
    while packet[at] & 0x80 != 0 {
        at += 1;
    }
    at += 1;
    let len = usize::from(u16::from_be_bytes([packet[at], packet[at + 1]]));
    let topic = String::from_utf8(packet[at + 2..at + 2 + len].to_vec()).unwrap();
    let mut rest = at + 2 + len;
    if packet[0] & 0x06 != 0 {
        rest += 2; // packet id
    }
    let payload = String::from_utf8(packet[rest..].to_vec()).unwrap();
    (topic, payload)
}

#[test]
fn health_is_ok_while_serving_and_503_while_stopping() {
    let server = broker(|_| {});
    let http = server.http_addr();
    assert!(http.ip().is_loopback() && http.port() != 0);
    assert_eq!(http_get(http, "/health"), (200, "ok\n".to_owned()));
    assert_eq!(http_get(http, "/nope").0, 404);

    // A connected client keeps the shards busy closing it while stopping.
    let _client = connect(server.local_addrs()[0], "held");
    server.shutdown_handle().trigger();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = http_get(http, "/health");
        if status == 503 {
            assert_eq!(body, "stopping\n");
            break;
        }
        assert_eq!(status, 200);
        assert!(Instant::now() < deadline, "/health never said 503");
        thread::sleep(Duration::from_millis(20));
    }
    server.join().expect("clean stop");
    assert!(
        TcpStream::connect(http).is_err(),
        "the HTTP listener is closed after join"
    );
}

#[test]
fn metrics_count_connections_and_messages() {
    let server = broker(|_| {});
    let (mqtt, http) = (server.local_addrs()[0], server.http_addr());

    let (status, text) = http_get(http, "/metrics");
    assert_eq!(status, 200);
    for name in [
        "shardmq_build_info",
        "shardmq_connections",
        "shardmq_sessions",
        "shardmq_subscriptions",
        "shardmq_retained_messages",
        "shardmq_queued_messages",
        "shardmq_inflight_messages",
        "shardmq_connects_total",
        "shardmq_connections_refused_total",
        "shardmq_messages_received_total",
        "shardmq_messages_sent_total",
        "shardmq_messages_dropped_total",
        "shardmq_event_loop_lag_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "no {name} in\n{text}"
        );
    }
    for shard in ["0", "1"] {
        let label = format!("shard=\"{shard}\"");
        assert!(
            text.lines()
                .any(|l| l.starts_with("shardmq_connections{") && l.contains(&label)),
            "a series for shard {shard}"
        );
    }
    assert_eq!(metric(&text, "shardmq_messages_received_total", &[]), 0);

    let mut sub = connect(mqtt, "metrics-sub");
    subscribe(&mut sub, "m/t");
    let mut publ = connect(mqtt, "metrics-pub");
    // PUBLISH QoS 1, "m/t", packet id 7, retained, payload "hi".
    publ.write_all(&[
        0x33, 0x09, 0x00, 0x03, b'm', b'/', b't', 0x00, 0x07, b'h', b'i',
    ])
    .unwrap();
    assert_eq!(read_packet(&mut publ).unwrap(), [0x40, 0x02, 0x00, 0x07]);
    let (topic, payload) = topic_and_payload(&read_packet(&mut sub).unwrap());
    assert_eq!((topic.as_str(), payload.as_str()), ("m/t", "hi"));

    let text = metrics_until(http, "counts after one publish", |t| {
        metric(t, "shardmq_messages_received_total", &["qos=\"1\""]) == 1
            && metric(t, "shardmq_messages_sent_total", &[]) == 1
            && metric(t, "shardmq_connections", &[]) == 2
            && metric(t, "shardmq_subscriptions", &[]) == 1
            && metric(t, "shardmq_retained_messages", &["shard=\"0\""]) == 1
    });
    assert_eq!(metric(&text, "shardmq_connects_total", &[]), 2);
    assert_eq!(metric(&text, "shardmq_messages_received_total", &[]), 1);
    assert_eq!(metric(&text, "shardmq_sessions", &[]), 2);
    assert!(metric(&text, "shardmq_event_loop_lag_seconds_count", &[]) > 0);

    // DISCONNECT: the connection gauge goes back down.
    sub.write_all(&[0xe0, 0x00]).unwrap();
    metrics_until(http, "one connection after a DISCONNECT", |t| {
        metric(t, "shardmq_connections", &[]) == 1
    });
    stop(server);
}

/// A connection's writer task lives while it writes and for at most two
/// retire ticks (0.1 s) after, and its reader task only while it has input
/// or must wait: a subscriber that reads nothing keeps a writer, idle
/// connections on both shards keep no task, and still answer and receive
/// (issue 15, memory per idle connection).
#[test]
fn idle_connections_keep_no_task() {
    let server = broker(|_| {});
    let (mqtt, http) = (server.local_addrs()[0], server.http_addr());
    let writers = |t: &str| metric(t, "shardmq_writer_tasks", &[]);

    // A subscriber that reads nothing while a publisher floods it: its writer
    // is stuck in a write until `send-timeout` (30 s).
    let mut stuck = connect(mqtt, "writers-stuck");
    subscribe(&mut stuck, "w/flood");
    let mut flood = connect(mqtt, "writers-flood");
    flood.set_write_timeout(Some(PATIENCE)).unwrap();
    // PUBLISH QoS 0 to "w/flood", remaining length 16,384 (80 80 01).
    let mut publish = vec![0x30, 0x80, 0x80, 0x01, 0x00, 0x07];
    publish.extend_from_slice(b"w/flood");
    publish.resize(4 + 16_384, b'x');
    let flooder = thread::spawn(move || {
        for _ in 0..2_000 {
            if flood.write_all(&publish).is_err() {
                break;
            }
        }
        flood
    });
    metrics_until(
        http,
        "a writer stuck on a subscriber that reads nothing",
        |t| writers(t) >= 1,
    );
    drop(stuck);

    // Idle connections on both shards, each sent a CONNACK and a SUBACK.
    let mut idle: Vec<TcpStream> = (0..20)
        .map(|i| {
            let mut s = connect(mqtt, &format!("writers-idle-{i}"));
            subscribe(&mut s, &format!("w/idle/{i}"));
            s
        })
        .collect();
    metrics_until(http, "no task once every connection is idle", |t| {
        metric(t, "shardmq_connections", &["shard=\"0\""]) > 0
            && metric(t, "shardmq_connections", &["shard=\"1\""]) > 0
            && metric(t, "shardmq_connections", &[]) == 21
            && writers(t) == 0
            && metric(t, "shardmq_reader_tasks", &[]) == 0
    });

    // Asleep, they still answer and receive: PINGREQ, and a PUBLISH from
    // one to the others' topics (on both shards).
    idle[0].write_all(&[0xc0, 0x00]).unwrap();
    assert_eq!(read_packet(&mut idle[0]).unwrap(), [0xd0, 0x00], "PINGRESP");
    for i in 2..20 {
        let topic = format!("w/idle/{i}");
        let mut publish = vec![0x30, (2 + topic.len() + 2) as u8, 0x00, topic.len() as u8];
        publish.extend_from_slice(topic.as_bytes());
        publish.extend_from_slice(b"hi");
        idle[1].write_all(&publish).unwrap();
    }
    for (i, sub) in idle.iter_mut().enumerate().skip(2) {
        let (topic, payload) = topic_and_payload(&read_packet(sub).unwrap());
        assert_eq!((topic, payload.as_str()), (format!("w/idle/{i}"), "hi"));
    }
    // A PUBLISH in two halves, far apart: the reader goes back to sleep with
    // the first half kept, and the whole packet goes through.
    let topic = "w/idle/2";
    let mut publish = vec![0x30, (2 + topic.len() + 5) as u8, 0x00, topic.len() as u8];
    publish.extend_from_slice(topic.as_bytes());
    publish.extend_from_slice(b"split");
    let (first, rest) = publish.split_at(6);
    idle[1].write_all(first).unwrap();
    thread::sleep(Duration::from_millis(300));
    idle[1].write_all(rest).unwrap();
    let (got, payload) = topic_and_payload(&read_packet(&mut idle[2]).unwrap());
    assert_eq!((got.as_str(), payload.as_str()), (topic, "split"));
    drop(idle);
    drop(flooder.join().expect("the flooder ends"));
    stop(server);
}

#[test]
fn sys_topics_reach_subscribers_on_every_shard() {
    let server = broker(|c| c.sys.interval = Duration::from_secs(1));
    let mqtt = server.local_addrs()[0];
    // Several subscribers, so that both shards have some (sessions live on the
    // shard their client id hashes to).
    let mut subs: Vec<TcpStream> = (0..4)
        .map(|i| {
            let mut s = connect(mqtt, &format!("sys-{i}"));
            subscribe(&mut s, "$SYS/#");
            s
        })
        .collect();
    // A `#` subscription does not match `$` topics [MQTT-4.7.2-1].
    let mut all = connect(mqtt, "sys-all");
    subscribe(&mut all, "#");

    for s in &mut subs {
        let mut seen = std::collections::HashMap::new();
        let deadline = Instant::now() + PATIENCE;
        while seen.len() < 5 {
            assert!(Instant::now() < deadline, "$SYS topics seen: {seen:?}");
            let (topic, payload) = topic_and_payload(&read_packet(s).expect("a $SYS message"));
            assert!(topic.starts_with("$SYS/broker/"), "{topic}");
            if [
                "$SYS/broker/version",
                "$SYS/broker/uptime",
                "$SYS/broker/clients/connected",
                "$SYS/broker/messages/received",
                "$SYS/broker/messages/sent",
            ]
            .contains(&topic.as_str())
            {
                seen.insert(topic, payload);
            }
        }
        assert!(seen["$SYS/broker/version"].starts_with("shardmq "));
        assert!(seen["$SYS/broker/uptime"].ends_with(" seconds"));
        let connected: u64 = seen["$SYS/broker/clients/connected"].parse().unwrap();
        assert!((1..=5).contains(&connected), "{connected} connected");
        seen["$SYS/broker/messages/sent"]
            .parse::<u64>()
            .expect("a number");
    }

    all.write_all(&[0xc0, 0x00]).unwrap(); // PINGREQ
    assert_eq!(
        read_packet(&mut all).unwrap(),
        [0xd0, 0x00],
        "PINGRESP, no $SYS message, for a `#` subscriber"
    );
    stop(server);
}

#[test]
fn sys_interval_zero_publishes_nothing() {
    let server = broker(|c| c.sys.interval = Duration::ZERO);
    let mut sub = connect(server.local_addrs()[0], "sys-off");
    subscribe(&mut sub, "$SYS/#");
    thread::sleep(Duration::from_millis(1500));
    sub.write_all(&[0xc0, 0x00]).unwrap();
    assert_eq!(
        read_packet(&mut sub).unwrap(),
        [0xd0, 0x00],
        "only PINGRESP"
    );
    stop(server);
}

#[test]
fn max_connections_refuses_the_next_client_until_one_leaves() {
    let server = broker(|c| c.mqtt.max_connections = 2);
    let (mqtt, http) = (server.local_addrs()[0], server.http_addr());
    let mut first = connect(mqtt, "limit-a");
    let _second = connect(mqtt, "limit-b");

    // MQTT 3.1.1: return code 3, "server unavailable"; then the socket closes.
    let (mut s, connack) = try_connect(mqtt, 4, "limit-c");
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x03]);
    assert_eq!(read_packet(&mut s), None, "closed after the refusal");
    // MQTT 5: reason 0x97, "quota exceeded".
    let (mut s, connack) = try_connect(mqtt, 5, "limit-d");
    assert_eq!(connack[3], 0x97, "CONNACK {connack:?}");
    assert_eq!(read_packet(&mut s), None, "closed after the refusal");

    // At the limit, a client may still take over its own session.
    let (_again, connack) = try_connect(mqtt, 4, "limit-a");
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "takeover admitted");
    assert_eq!(
        read_packet(&mut first),
        None,
        "the old connection is closed"
    );

    let text = metrics_until(http, "two refusals, two connections", |t| {
        metric(t, "shardmq_connections_refused_total", &[]) == 2
            && metric(t, "shardmq_connections", &[]) == 2
    });
    assert_eq!(metric(&text, "shardmq_max_connections", &[]), 2);

    // Once a client leaves, a new one gets its place.
    drop(_again);
    let deadline = Instant::now() + PATIENCE;
    let _third = loop {
        let (s, connack) = try_connect(mqtt, 4, "limit-e");
        if connack == [0x20, 0x02, 0x00, 0x00] {
            break s;
        }
        assert_eq!(connack, [0x20, 0x02, 0x00, 0x03]);
        assert!(Instant::now() < deadline, "the slot was never released");
        thread::sleep(Duration::from_millis(20));
    };
    stop(server);
}
