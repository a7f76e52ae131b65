//! Shared helpers for the integration tests: an in-process broker on port 0
//! with two shards, a raw-bytes MQTT client (for what a real client library
//! will not do: withhold acks, break the protocol, time a keepalive), and
//! wrappers that run `rumqttc` event loops (MQTT 3.1.1 and 5) in tasks.
//!
//! Each test file uses part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use shardmq::config::{Config, Cores};
use shardmq::protocol::{
    decode, encode, Ack, ConnAck, Connect, ConnectProperties, Disconnect, Packet, PacketId,
    Publish, PublishProperties, QoS, ReasonCode, Subscribe, SubscribeProperties,
    SubscriptionOptions, Version,
};
use shardmq::topic::{TopicFilter, TopicName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

pub mod broker_process;
pub mod redis;
pub mod scenarios;

/// How long to wait for something that must happen. Generous: the suite runs
/// on a 2-core machine beside other tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long to watch for something that must not happen.
pub const QUIET: Duration = Duration::from_millis(400);

/// The largest packet the raw client decodes.
const MAX_PACKET: usize = 16 << 20;

/// A broker started in-process on 127.0.0.1, port 0, with shards on cores 0
/// and 1, shut down and joined on drop.
pub struct TestBroker {
    server: Option<shardmq::Server>,
    addr: SocketAddr,
}

impl TestBroker {
    pub fn start() -> TestBroker {
        TestBroker::with(|_| {})
    }

    /// Starts with the default config changed by `tweak`.
    ///
    /// glommio's stall detection is off: the backtrace of a stall on this
    /// busy machine costs over 100 MB to symbolize, which tests measuring
    /// memory would count.
    pub fn with(tweak: impl FnOnce(&mut Config)) -> TestBroker {
        std::env::set_var(shards::NO_STALL_DETECTION, "1");
        let mut config = Config::embedded_default().expect("default config");
        config.set_bind("127.0.0.1:0".parse().unwrap());
        config.http.bind = "127.0.0.1:0".parse().unwrap();
        config.shards.cores = Cores::List(vec![0, 1]);
        tweak(&mut config);
        let server =
            shardmq::start(&config, shards::ShutdownHandle::new(), false).expect("broker starts");
        let addr = server.local_addrs()[0];
        TestBroker {
            server: Some(server),
            addr,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The `/health` and `/metrics` listener.
    pub fn http_addr(&self) -> SocketAddr {
        self.server.as_ref().expect("running").http_addr()
    }

    /// The sum of every sample of metric `name` whose labels contain all of
    /// `labels` (`reason="queue_full"`, say), from `/metrics` now. Shards
    /// publish their counters every 250 ms: wait that long after the fact.
    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let (status, text) = http_get(self.http_addr(), "/metrics");
        assert_eq!(status, 200, "GET /metrics");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(series, _)| {
                series.split('{').next() == Some(name) && labels.iter().all(|x| series.contains(x))
            })
            .map(|(_, v)| v.parse::<f64>().expect("a number"))
            .sum()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown_handle().trigger();
            let joined = server.join();
            if !std::thread::panicking() {
                joined.expect("broker stops cleanly");
            }
        }
    }
}

/// A client id with `prefix` whose session lives on `shard` (of 2).
pub fn id_on_shard(prefix: &str, shard: usize) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|id| shards::shard_for(id.as_bytes(), 2) == shard)
        .unwrap()
}

/// Lets what shards tell each other asynchronously arrive: share-group
/// members, messages forwarded to an offline session. (Not needed after a
/// SUBACK: it waits until every shard has the filter.)
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

// ---------------------------------------------------------------------------
// Packet builders
// ---------------------------------------------------------------------------

pub fn topic(s: &str) -> TopicName {
    TopicName::new(s.to_owned()).unwrap()
}

pub fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s.to_owned()).unwrap()
}

pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

pub fn connect(version: Version, id: &str, clean: bool, keep_alive: u16) -> Connect {
    Connect {
        version,
        clean_start: clean,
        keep_alive,
        client_id: ByteString::from(id),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

pub fn publish(t: &str, qos: QoS, id: u16, payload: &[u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic(t),
        packet_id: PacketId::new(id),
        payload: Bytes::copy_from_slice(payload),
        properties: PublishProperties::default(),
    }
}

pub fn sub_options(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..Default::default()
    }
}

pub fn subscribe(id: u16, filters: &[(&str, SubscriptionOptions)]) -> Subscribe {
    Subscribe {
        packet_id: pid(id),
        filters: filters.iter().map(|(f, o)| (filter(f), *o)).collect(),
        properties: SubscribeProperties::default(),
    }
}

/// An MQTT 3.1.1 CONNECT as bytes: clean session as given, keepalive in seconds.
pub fn connect_v311_bytes(id: &str, clean: bool, keep_alive: u16) -> Vec<u8> {
    let mut body = b"\x00\x04MQTT\x04".to_vec();
    body.push(if clean { 0x02 } else { 0x00 });
    body.extend_from_slice(&keep_alive.to_be_bytes());
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

// ---------------------------------------------------------------------------
// Raw client
// ---------------------------------------------------------------------------

/// What one read from the broker gave.
#[allow(clippy::large_enum_variant)] // a test helper: size does not matter
#[derive(Debug)]
pub enum Recv {
    Packet(Packet),
    /// The broker closed the connection (end of stream or reset).
    Closed,
    /// Nothing within the time given.
    Timeout,
}

/// A client that speaks bytes: sends packets encoded with shardmq's codec or
/// literal bytes, and decodes what the broker sends.
pub struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    pub version: Version,
    eof: bool,
}

impl Raw {
    /// Opens a TCP connection and sends nothing.
    pub async fn open(addr: SocketAddr, version: Version) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect to broker");
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: BytesMut::new(),
            version,
            eof: false,
        }
    }

    /// Wraps a connected stream.
    pub fn from_stream(stream: TcpStream, version: Version) -> Raw {
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: BytesMut::new(),
            version,
            eof: false,
        }
    }

    /// Sends `connect` and returns the CONNACK.
    pub async fn connect_with(addr: SocketAddr, connect: Connect) -> (Raw, ConnAck) {
        let mut raw = Raw::open(addr, connect.version).await;
        raw.send(Packet::Connect(Box::new(connect))).await;
        match raw.recv().await {
            Packet::ConnAck(ack) => (raw, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects and asserts the CONNACK is a success.
    pub async fn connect(addr: SocketAddr, version: Version, id: &str, clean: bool) -> Raw {
        let (raw, ack) = Raw::connect_with(addr, connect(version, id, clean, 60)).await;
        assert_eq!(ack.reason_code, ReasonCode::Success, "CONNACK for {id}");
        raw
    }

    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to broker");
    }

    /// Sends bytes, ignoring a broker that already closed.
    pub async fn try_send_bytes(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    pub async fn send(&mut self, packet: Packet) {
        let mut buf = BytesMut::new();
        encode(&packet, self.version, &mut buf).expect("encodable");
        self.send_bytes(&buf).await;
    }

    pub async fn publish(&mut self, p: Publish) {
        self.send(Packet::Publish(p)).await;
    }

    /// Subscribes and returns the SUBACK's reason codes.
    pub async fn subscribe(&mut self, s: Subscribe) -> Vec<ReasonCode> {
        let id = s.packet_id;
        self.send(Packet::Subscribe(s)).await;
        match self.recv().await {
            Packet::SubAck(ack) => {
                assert_eq!(ack.packet_id, id);
                ack.reason_codes
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    pub async fn sub(&mut self, f: &str, qos: QoS) {
        let codes = self.subscribe(subscribe(1, &[(f, sub_options(qos))])).await;
        assert_eq!(codes.len(), 1);
        assert!(!codes[0].is_error(), "subscribe {f}: {codes:?}");
    }

    pub async fn puback(&mut self, id: PacketId) {
        self.send(Packet::PubAck(Ack::new(id))).await;
    }

    pub async fn disconnect(mut self) {
        self.send(Packet::Disconnect(Disconnect::default())).await;
        // Wait for the broker to close, so what follows sees the session offline.
        let _ = self.recv_within(WAIT).await;
    }

    /// The next packet within `timeout`.
    pub async fn recv_within(&mut self, timeout: Duration) -> Recv {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match decode(&mut self.buf, self.version, MAX_PACKET) {
                Ok(Some(p)) => return Recv::Packet(p),
                Ok(None) => {}
                Err(e) => panic!("broker sent a packet that does not decode: {e}"),
            }
            if self.eof {
                return Recv::Closed;
            }
            let mut chunk = [0u8; 16 * 1024];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk[..])).await;
            match read {
                Err(_) => return Recv::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => self.eof = true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next packet; panics if none comes within [`WAIT`].
    pub async fn recv(&mut self) -> Packet {
        match self.recv_within(WAIT).await {
            Recv::Packet(p) => p,
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    /// The next packet, which must be a PUBLISH.
    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Asserts nothing arrives for [`QUIET`].
    pub async fn assert_silent(&mut self) {
        match self.recv_within(QUIET).await {
            Recv::Timeout => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }

    /// Reads until the broker closes the connection (within [`WAIT`]) and
    /// returns the packets it sent before closing.
    pub async fn expect_closed(&mut self) -> Vec<Packet> {
        let mut packets = Vec::new();
        loop {
            match self.recv_within(WAIT).await {
                Recv::Packet(p) => packets.push(p),
                Recv::Closed => return packets,
                Recv::Timeout => panic!("connection not closed; got {packets:?}"),
            }
        }
    }

    /// Reads until the broker closes the connection, however much it sent
    /// before (a backlog), within [`WAIT`]; returns the last few packets.
    pub async fn expect_closed_draining(&mut self) -> Vec<Packet> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut last = std::collections::VecDeque::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_within(left).await {
                Recv::Packet(p) => {
                    last.push_back(p);
                    if last.len() > 4 {
                        last.pop_front();
                    }
                }
                Recv::Closed => return last.into(),
                Recv::Timeout => panic!(
                    "connection not closed; last packets {:?}",
                    last.iter().map(Packet::name).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Reads until closed and returns the reason of the DISCONNECT the broker
    /// sent last, if any.
    pub async fn expect_disconnect(&mut self) -> Option<ReasonCode> {
        let packets = self.expect_closed().await;
        match packets.last() {
            Some(Packet::Disconnect(d)) => Some(d.reason_code),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// rumqttc: MQTT 3.1.1
// ---------------------------------------------------------------------------

/// A rumqttc MQTT 3.1.1 client whose event loop runs in a task and reports
/// every event on a channel. The event loop stops at the first error (no
/// automatic reconnection), which is reported too.
pub struct V3 {
    pub client: rumqttc::AsyncClient,
    events: mpsc::UnboundedReceiver<Result<rumqttc::Event, String>>,
    task: tokio::task::JoinHandle<()>,
    /// The CONNACK.
    pub connack: Option<rumqttc::ConnAck>,
}

pub fn v3_options(addr: SocketAddr, id: &str) -> rumqttc::MqttOptions {
    let mut options = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    options
}

impl V3 {
    /// Connects with `options` and waits for CONNACK accepted.
    pub async fn connect(options: rumqttc::MqttOptions) -> V3 {
        let (mut v3, ack) = V3::start(options).await;
        assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
        v3.connack = Some(ack);
        v3
    }

    /// Starts the event loop and returns the CONNACK. rumqttc reports a
    /// refusal as an error, not a packet: that panics here.
    pub async fn start(options: rumqttc::MqttOptions) -> (V3, rumqttc::ConnAck) {
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 1000);
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await.map_err(|e| e.to_string());
                let stop = event.is_err();
                if tx.send(event).is_err() || stop {
                    return;
                }
            }
        });
        let mut v3 = V3 {
            client,
            events: rx,
            task,
            connack: None,
        };
        let ack = v3
            .next_incoming(|p| match p {
                rumqttc::Packet::ConnAck(a) => Some(a.clone()),
                _ => None,
            })
            .await
            .expect("CONNACK");
        (v3, ack)
    }

    /// Waits for an incoming packet `pick` accepts. `Err` if the connection
    /// ended first (with its error).
    pub async fn next_incoming<T>(
        &mut self,
        mut pick: impl FnMut(&rumqttc::Packet) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => panic!("timed out waiting for a packet"),
                Ok(None) => return Err("event loop stopped".into()),
                Ok(Some(Err(e))) => return Err(e),
                Ok(Some(Ok(rumqttc::Event::Incoming(p)))) => {
                    if let Some(t) = pick(&p) {
                        return Ok(t);
                    }
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    pub async fn subscribe(&mut self, f: &str, qos: rumqttc::QoS) {
        self.client.subscribe(f, qos).await.unwrap();
        let codes = self
            .next_incoming(|p| match p {
                rumqttc::Packet::SubAck(a) => Some(a.return_codes.clone()),
                _ => None,
            })
            .await
            .expect("SUBACK");
        assert!(
            matches!(codes[0], rumqttc::SubscribeReasonCode::Success(_)),
            "{codes:?}"
        );
    }

    pub async fn publish(&self, t: &str, qos: rumqttc::QoS, retain: bool, payload: &[u8]) {
        self.client
            .publish(t, qos, retain, payload.to_vec())
            .await
            .unwrap();
    }

    /// The next PUBLISH, or panics after [`WAIT`].
    pub async fn recv(&mut self) -> rumqttc::Publish {
        self.next_incoming(|p| match p {
            rumqttc::Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .await
        .expect("PUBLISH")
    }

    /// PUBLISHes that arrive within [`QUIET`], on a connection that stays up
    /// all that time: panics if it ends (as [`Raw::assert_silent`] does), since
    /// "nothing arrived" proves nothing about a dead connection.
    pub async fn drain(&mut self) -> Vec<rumqttc::Publish> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + QUIET;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => return got,
                Ok(None) => panic!("drain: the connection had already ended; got {got:?}"),
                Ok(Some(Err(e))) => panic!("drain: the connection ended ({e}); got {got:?}"),
                Ok(Some(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))))) => got.push(p),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Waits until the event loop stops, and returns its error.
    pub async fn closed(&mut self) -> String {
        self.next_incoming(|_| None::<()>).await.unwrap_err()
    }

    /// Sends DISCONNECT and waits for the event loop to end.
    pub async fn disconnect(mut self) {
        self.client.disconnect().await.unwrap();
        let _ = self.closed().await;
    }

    /// Drops the TCP connection without DISCONNECT: an abnormal close.
    pub fn kill(self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------
// rumqttc: MQTT 5
// ---------------------------------------------------------------------------

pub use rumqttc::v5::mqttbytes::v5 as mqtt5;
pub use rumqttc::v5::mqttbytes::QoS as QoS5;

/// A rumqttc MQTT 5 client, as [`V3`].
pub struct V5 {
    pub client: rumqttc::v5::AsyncClient,
    /// Errors stay typed, so a refusal CONNACK is told from a reset.
    events: mpsc::UnboundedReceiver<Result<rumqttc::v5::Event, rumqttc::v5::ConnectionError>>,
    task: tokio::task::JoinHandle<()>,
    /// The CONNACK, a success.
    pub connack: mqtt5::ConnAck,
}

pub fn v5_options(addr: SocketAddr, id: &str) -> rumqttc::v5::MqttOptions {
    let mut options = rumqttc::v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    options
}

impl V5 {
    /// Connects with `options` and waits for CONNACK accepted.
    pub async fn connect(options: rumqttc::v5::MqttOptions) -> V5 {
        match V5::start(options).await {
            Ok(v5) => v5,
            Err(code) => panic!("CONNACK refused: {code:?}"),
        }
    }

    /// Starts the event loop and waits for the CONNACK: `Ok` when accepted,
    /// `Err` with its reason code when refused. Anything else (a reset, a
    /// close without CONNACK, a packet rumqttc cannot decode) panics: none of
    /// them is a refusal.
    pub async fn start(options: rumqttc::v5::MqttOptions) -> Result<V5, mqtt5::ConnectReturnCode> {
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 1000);
        let (tx, mut events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let stop = event.is_err();
                if tx.send(event).is_err() || stop {
                    return;
                }
            }
        });
        let connack = loop {
            match tokio::time::timeout(WAIT, events.recv()).await {
                Err(_) => panic!("no CONNACK within {WAIT:?}"),
                Ok(None) => panic!("event loop stopped before CONNACK"),
                Ok(Some(Ok(rumqttc::v5::Event::Incoming(mqtt5::Packet::ConnAck(a))))) => break a,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)))) => {
                    return Err(code)
                }
                Ok(Some(Err(e))) => panic!("no CONNACK, the connection failed: {e:?}"),
            }
        };
        Ok(V5 {
            client,
            events,
            task,
            connack,
        })
    }

    pub async fn next_incoming<T>(
        &mut self,
        mut pick: impl FnMut(&mqtt5::Packet) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => panic!("timed out waiting for a packet"),
                Ok(None) => return Err("event loop stopped".into()),
                Ok(Some(Err(e))) => return Err(format!("{e:?}")),
                Ok(Some(Ok(rumqttc::v5::Event::Incoming(p)))) => {
                    if let Some(t) = pick(&p) {
                        return Ok(t);
                    }
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    pub async fn subscribe_with(
        &mut self,
        f: mqtt5::Filter,
        props: Option<mqtt5::SubscribeProperties>,
    ) {
        match props {
            Some(props) => self
                .client
                .subscribe_many_with_properties([f], props)
                .await
                .unwrap(),
            None => self.client.subscribe_many([f]).await.unwrap(),
        }
        let codes = self
            .next_incoming(|p| match p {
                mqtt5::Packet::SubAck(a) => Some(a.return_codes.clone()),
                _ => None,
            })
            .await
            .expect("SUBACK");
        assert!(
            matches!(codes[0], mqtt5::SubscribeReasonCode::Success(_)),
            "{codes:?}"
        );
    }

    pub async fn subscribe(&mut self, f: &str, qos: QoS5) {
        self.subscribe_with(mqtt5::Filter::new(f, qos), None).await;
    }

    pub async fn publish(&self, t: &str, qos: QoS5, retain: bool, payload: &[u8]) {
        self.client
            .publish(t, qos, retain, payload.to_vec())
            .await
            .unwrap();
    }

    pub async fn recv(&mut self) -> mqtt5::Publish {
        self.next_incoming(|p| match p {
            mqtt5::Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .await
        .expect("PUBLISH")
    }

    /// PUBLISHes that arrive within [`QUIET`]; panics if the connection ends
    /// meanwhile, as [`V3::drain`].
    pub async fn drain(&mut self) -> Vec<mqtt5::Publish> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + QUIET;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => return got,
                Ok(None) => panic!("drain: the connection had already ended; got {got:?}"),
                Ok(Some(Err(e))) => panic!("drain: the connection ended ({e:?}); got {got:?}"),
                Ok(Some(Ok(rumqttc::v5::Event::Incoming(mqtt5::Packet::Publish(p))))) => {
                    got.push(p)
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Waits until the event loop stops, and returns its error.
    pub async fn closed(&mut self) -> String {
        self.next_incoming(|_| None::<()>).await.unwrap_err()
    }

    pub async fn disconnect(mut self) {
        self.client.disconnect().await.unwrap();
        let _ = self.closed().await;
    }

    pub fn kill(self) {
        self.task.abort();
    }
}

/// `GET path` from the broker's HTTP listener, over HTTP/1.1 with
/// `Connection: close`: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the HTTP listener");
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).expect("HTTP response");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("status line in {head:?}"));
    (status, body.to_owned())
}

/// Lines of a child process's output, read on a thread of their own.
pub fn lines_of(out: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Anonymous resident memory of this process (the broker included), in
/// bytes; nextest runs each test in a process of its own. Not VmRSS, which
/// also counts the binary's pages as they are read (debug info, if anything
/// symbolizes a backtrace).
pub fn rss_anon() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("RssAnon in /proc/self/status");
    kb * 1024
}

/// A publisher that writes `n` messages to `topic` (payload `payload(i)`) in
/// large writes, as fast as the socket takes them, and reads (and throws away)
/// its acknowledgements meanwhile, so its own socket never fills.
pub async fn flood(
    addr: SocketAddr,
    id: &str,
    topic: &str,
    qos: QoS,
    n: usize,
    payload: impl Fn(usize) -> Vec<u8>,
) {
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
    for i in 0..n {
        let id = match qos {
            QoS::AtMostOnce => 0,
            _ => u16::try_from(i % 65_535 + 1).unwrap(),
        };
        let p = publish(topic, qos, id, &payload(i));
        encode(&Packet::Publish(p), Version::V3_1_1, &mut bytes).unwrap();
    }
    wr.write_all(&bytes).await.unwrap();
    drop((wr, acks));
}

/// The Python interpreter the tests run (`SHARDMQ_PYTHON`, else the venv that
/// `.ci/run` makes in target/pyenv), which must have `packages` installed
/// (pip names, for the message). A test that needs it fails without it.
pub fn python(packages: &str) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = match std::env::var_os("SHARDMQ_PYTHON") {
        Some(p) => std::path::PathBuf::from(p),
        None => root.join("target/pyenv/bin/python"),
    };
    assert!(
        python.exists(),
        "no Python interpreter at {}: set SHARDMQ_PYTHON to a python3 with {packages}, \
         or run `python3 -m venv target/pyenv && target/pyenv/bin/pip install {packages}` \
         (bash .ci/run does this)",
        python.display()
    );
    python
}
