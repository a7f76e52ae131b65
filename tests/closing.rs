//! Closing with a reason (issue 12): when the broker closes a connection right
//! after a CONNACK refusal or a DISCONNECT, the client reads that packet and
//! then the end of the stream, even while it is still sending; and a client
//! that never stops sending cannot keep the socket open past the broker's
//! linger bound.
//!
//! A socket closed with unread input makes the kernel answer with a reset
//! instead of a FIN: the client's next read fails with ECONNRESET, or its next
//! write with a broken pipe, and a client library reports a lost connection
//! instead of the reason code. So each client here is a plain socket split in
//! two halves, a writer that keeps sending while the reader reads what the
//! broker says, and both halves are checked: the reader ends at end of stream
//! (not a reset), the writer's writes all went through. `Raw` cannot tell end
//! of stream from a reset, hence the socket of its own.
//!
//! Every case runs with the client's session on each shard: a connection
//! accepted on the other shard is handed over with its unread input, so a
//! refusal happens on the session's shard.

mod common;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use shardmq::protocol::{decode, encode, ConnAck, Packet, QoS, ReasonCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// The broker's Receive Maximum (`max-inflight`), small so that exceeding it
/// takes a small burst.
const MAX_INFLIGHT: u16 = 10;

/// `max-client-id-len`: a longer client id is refused at CONNACK (0x02 in
/// MQTT 3.1.1).
const MAX_ID: u16 = 24;

/// How soon a client that never stops sending must find its socket closed
/// after the broker's reason code: the broker's linger (1 s, `LINGER` in
/// src/connection/socket.rs) plus slack for a loaded 2-core machine.
const CLOSE_BOUND: Duration = Duration::from_secs(3);

/// How long the flooding client sends at most: past this the socket is taken
/// to be held open for good.
const FLOOD_CAP: Duration = Duration::from_secs(10);

/// Bytes sent after a refused CONNECT, in the same write.
const AFTER_CONNECT: usize = 256 * 1024;

fn broker() -> TestBroker {
    TestBroker::with(|c| {
        c.mqtt.max_inflight = MAX_INFLIGHT;
        c.mqtt.max_client_id_len = MAX_ID;
    })
}

fn encoded(packets: impl IntoIterator<Item = Packet>, version: Version) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for p in packets {
        encode(&p, version, &mut buf).expect("encodable");
    }
    buf.to_vec()
}

/// At least `len` bytes of QoS 0 PUBLISHes (1 KB payloads): input the broker
/// never gets to read once it has decided to close.
fn filler(len: usize, version: Version) -> Vec<u8> {
    let one = encoded(
        [Packet::Publish(publish(
            "closing/filler",
            QoS::AtMostOnce,
            0,
            &[b'f'; 1000],
        ))],
        version,
    );
    one.repeat(len.div_ceil(one.len()))
}

/// The client's receiving half, decoding what the broker sends.
struct Inbox {
    read: OwnedReadHalf,
    buf: BytesMut,
    version: Version,
    /// How the broker's side ended, once it has: `Ok` at end of stream, the
    /// error (a reset) otherwise.
    end: Option<io::Result<()>>,
}

impl Inbox {
    fn new(read: OwnedReadHalf, version: Version) -> Inbox {
        Inbox {
            read,
            buf: BytesMut::new(),
            version,
            end: None,
        }
    }

    /// The next packet, or `None` once the broker's side has ended; panics
    /// after [`WAIT`] without either.
    async fn next(&mut self) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match decode(&mut self.buf, self.version, 1 << 20) {
                Ok(Some(p)) => return Some(p),
                Ok(None) => {}
                Err(e) => panic!("the broker sent a packet that does not decode: {e}"),
            }
            if self.end.is_some() {
                assert!(
                    self.buf.is_empty(),
                    "the broker's side ended inside a packet: {:?}",
                    &self.buf[..]
                );
                return None;
            }
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout_at(deadline, self.read.read(&mut chunk)).await {
                Err(_) => panic!("nothing from the broker within {WAIT:?}"),
                Ok(Ok(0)) => self.end = Some(Ok(())),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => self.end = Some(Err(e)),
            }
        }
    }

    /// Every packet until the broker's side ends, and how it ended.
    async fn until_end(&mut self) -> (Vec<Packet>, io::Result<()>) {
        let mut packets = Vec::new();
        while let Some(p) = self.next().await {
            packets.push(p);
        }
        (packets, self.end.take().expect("ended"))
    }
}

/// Writes each chunk with one write, a millisecond apart, as a client that
/// goes on sending while the broker answers; stops at the first error.
async fn send(mut write: OwnedWriteHalf, chunks: Vec<Vec<u8>>) -> io::Result<()> {
    for chunk in chunks {
        write.write_all(&chunk).await?;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Writes `first`, then filler every millisecond, until a write fails (the
/// broker closed the socket) or [`FLOOD_CAP`] has passed: when the writes
/// started failing, if they did, and how many bytes went through.
async fn flood(
    mut write: OwnedWriteHalf,
    first: Vec<u8>,
    version: Version,
) -> (Option<Instant>, usize) {
    let filler = filler(16 * 1024, version);
    let start = Instant::now();
    let mut sent = 0;
    let mut chunk = &first[..];
    while start.elapsed() < FLOOD_CAP {
        let write = tokio::time::timeout(FLOOD_CAP, write.write_all(chunk)).await;
        match write {
            Ok(Ok(())) => sent += chunk.len(),
            Ok(Err(_)) => return (Some(Instant::now()), sent),
            Err(_) => break,
        }
        chunk = &filler[..];
        // 16 KB a millisecond: never stopping, without taking a core of the
        // 2-core machine from the broker.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    (None, sent)
}

/// Opens a socket and connects an MQTT 5 client: its halves, after a
/// successful CONNACK that announced Receive Maximum [`MAX_INFLIGHT`].
async fn connect_v5(addr: SocketAddr, id: &str) -> (Inbox, OwnedWriteHalf) {
    let stream = TcpStream::connect(addr).await.expect("connect to broker");
    stream.set_nodelay(true).unwrap();
    let (read, mut write) = stream.into_split();
    let hello = encoded(
        [Packet::Connect(Box::new(connect(
            Version::V5,
            id,
            true,
            60,
        )))],
        Version::V5,
    );
    write.write_all(&hello).await.unwrap();
    let mut inbox = Inbox::new(read, Version::V5);
    match inbox.next().await {
        Some(Packet::ConnAck(ack)) => {
            assert_eq!(ack.reason_code, ReasonCode::Success, "CONNACK for {id}");
            assert_eq!(
                ack.properties.receive_maximum,
                Some(MAX_INFLIGHT),
                "the broker's Receive Maximum"
            );
        }
        other => panic!("expected CONNACK for {id}, got {other:?}"),
    }
    (inbox, write)
}

/// Receive Maximum + 1 QoS 2 PUBLISHes whose PUBREL never comes, in one
/// buffer: the last one exceeds the broker's Receive Maximum.
fn qos2_burst() -> Vec<u8> {
    let publishes = (1..=MAX_INFLIGHT + 1)
        .map(|id| Packet::Publish(publish("closing/q2", QoS::ExactlyOnce, id, b"x")));
    encoded(publishes, Version::V5)
}

/// What an MQTT 5 client reads for [`qos2_burst`]: DISCONNECT 0x93 last.
/// Before it, PUBRECs of the first publishes, in order, if any: the broker
/// drops the output it had not written when the reader fails, so the PUBRECs
/// of publishes read in the same batch as the one that exceeded the maximum
/// are not sent (their session ends: a clean-start client sends them again).
fn assert_receive_maximum_exceeded(packets: &[Packet], who: &str) {
    let names: Vec<&str> = packets.iter().map(Packet::name).collect();
    let (last, pubrecs) = packets
        .split_last()
        .unwrap_or_else(|| panic!("{who}: nothing before the end of stream"));
    match last {
        Packet::Disconnect(d) => assert_eq!(
            d.reason_code,
            ReasonCode::ReceiveMaximumExceeded,
            "{who}: DISCONNECT's reason"
        ),
        _ => panic!("{who}: the last packet is not DISCONNECT: {names:?}"),
    }
    let ids: Vec<u16> = pubrecs
        .iter()
        .map(|p| match p {
            Packet::PubRec(ack) => ack.packet_id.get(),
            _ => panic!("{who}: expected PUBRECs then DISCONNECT, got {names:?}"),
        })
        .collect();
    assert!(
        ids.iter().copied().eq(1..=ids.len() as u16) && ids.len() <= usize::from(MAX_INFLIGHT),
        "{who}: PUBRECs before the DISCONNECT: {ids:?}"
    );
}

/// A refused MQTT 3.1.1 CONNECT: its client id is longer than [`MAX_ID`].
fn refused_connect(id: &str) -> Vec<u8> {
    assert!(id.len() > usize::from(MAX_ID), "{id} must be too long");
    encoded(
        [Packet::Connect(Box::new(connect(
            Version::V3_1_1,
            id,
            true,
            60,
        )))],
        Version::V3_1_1,
    )
}

/// The CONNACK that refuses [`refused_connect`]: "identifier rejected".
fn refusal() -> Packet {
    Packet::ConnAck(ConnAck {
        session_present: false,
        reason_code: ReasonCode::ClientIdentifierNotValid,
        properties: Default::default(),
    })
}

#[tokio::test]
async fn receive_maximum_exceeded_reads_disconnect_then_end_of_stream() {
    let b = broker();
    for shard in 0..2 {
        let id = id_on_shard("rm-over", shard);
        let (mut inbox, write) = connect_v5(b.addr(), &id).await;
        // The burst in one write, then more input the broker will not read,
        // in writes that go on while it answers and closes.
        let mut chunks = vec![qos2_burst()];
        chunks.extend((0..16).map(|_| filler(4 * 1024, Version::V5)));
        let writer = tokio::spawn(send(write, chunks));

        let (packets, end) = inbox.until_end().await;
        assert_receive_maximum_exceeded(&packets, &id);
        if let Err(e) = end {
            panic!("{id}: the connection ended with an error, not end of stream, after {packets:?}: {e}");
        }
        if let Err(e) = writer.await.unwrap() {
            panic!("{id}: a write after the burst failed (the broker reset the connection): {e}");
        }
    }
}

#[tokio::test]
async fn refused_v3_client_still_sending_reads_connack_then_end_of_stream() {
    let b = broker();
    for shard in 0..2 {
        let id = id_on_shard("refused-at-connack-with-a-long-id", shard);
        let stream = TcpStream::connect(b.addr()).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (read, write) = stream.into_split();
        // CONNECT and 256 KiB of PUBLISHes in one write, then more, in
        // writes that go on while the broker refuses and closes.
        let mut bytes = refused_connect(&id);
        bytes.extend(filler(AFTER_CONNECT, Version::V3_1_1));
        let mut chunks = vec![bytes];
        chunks.extend((0..16).map(|_| filler(4 * 1024, Version::V3_1_1)));
        let writer = tokio::spawn(send(write, chunks));

        let mut inbox = Inbox::new(read, Version::V3_1_1);
        let (packets, end) = inbox.until_end().await;
        assert_eq!(packets, [refusal()], "{id}: all the broker sent");
        if let Err(e) = end {
            panic!("{id}: the connection ended with an error, not end of stream, after the CONNACK: {e}");
        }
        if let Err(e) = writer.await.unwrap() {
            panic!("{id}: writing after the CONNECT failed (the broker reset the connection): {e}");
        }
    }
}

/// A client that keeps sending after its reason code: it reads the code, and
/// its writes fail (the broker closed the socket) within [`CLOSE_BOUND`].
async fn flooder_is_closed(
    who: &str,
    mut inbox: Inbox,
    write: OwnedWriteHalf,
    first: Vec<u8>,
    check: impl FnOnce(&[Packet]),
) {
    let version = inbox.version;
    let writer = tokio::spawn(flood(write, first, version));
    let mut packets = Vec::new();
    while let Some(p) = inbox.next().await {
        packets.push(p);
        if matches!(
            packets.last(),
            Some(Packet::ConnAck(_) | Packet::Disconnect(_))
        ) {
            break;
        }
    }
    let reason_read = Instant::now();
    check(&packets);
    let (failed, sent) = writer.await.unwrap();
    let failed = failed.unwrap_or_else(|| {
        panic!("{who}: the socket still took writes {FLOOD_CAP:?} after the client began ({sent} bytes)")
    });
    let open = failed.saturating_duration_since(reason_read);
    assert!(
        open < CLOSE_BOUND,
        "{who}: the socket took writes for {open:?} after the reason code ({sent} bytes)"
    );
}

#[tokio::test]
async fn a_client_that_never_stops_sending_is_closed_within_the_linger_bound() {
    let b = broker();
    for shard in 0..2 {
        // Refused at CONNACK (the connection's refusal path).
        let id = id_on_shard("refused-flooder-with-a-long-id", shard);
        let stream = TcpStream::connect(b.addr()).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (read, write) = stream.into_split();
        let inbox = Inbox::new(read, Version::V3_1_1);
        flooder_is_closed(&id, inbox, write, refused_connect(&id), |packets| {
            assert_eq!(packets, [refusal()], "{id}: the refusal");
        })
        .await;

        // Disconnected after CONNACK (the writer's closing path).
        let id = id_on_shard("rm-flooder", shard);
        let (inbox, write) = connect_v5(b.addr(), &id).await;
        flooder_is_closed(&id, inbox, write, qos2_burst(), |packets| {
            assert_receive_maximum_exceeded(packets, &id)
        })
        .await;
    }
}
