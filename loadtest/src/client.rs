//! A minimal MQTT client over a glommio socket, on the broker's sans-IO codec: connect,
//! subscribe, and a buffered read side. Writers get a second descriptor of the same
//! socket ([`Conn::writer`]), as the broker's own connections do, so one task can read
//! acks while another publishes.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use bytestring::ByteString;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use shardmq::protocol::{
    decode, encode, Connect, ConnectProperties, Packet, QoS, ReasonCode, Subscribe,
    SubscribeProperties, SubscriptionOptions, Version,
};
use shardmq::topic::TopicFilter;

/// Largest packet accepted from the broker.
const MAX_PACKET: usize = 1 << 24;
const READ_CHUNK: usize = 64 << 10;
/// How long CONNACK and SUBACK may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection failed; [`ConnError::reason`] is what the error table counts.
#[derive(Debug)]
pub enum ConnError {
    Io(&'static str, io::Error),
    /// The broker closed the socket.
    Closed(&'static str),
    /// CONNACK or SUBACK with a failure code.
    Refused(&'static str, ReasonCode),
    /// A DISCONNECT from the broker (MQTT 5).
    Disconnected(ReasonCode),
    Protocol(String),
}

impl ConnError {
    /// A short, stable key: what failed and why, without per-connection detail.
    pub fn reason(&self) -> String {
        match self {
            ConnError::Io(stage, e) => format!("{stage}: {:?}", e.kind()),
            ConnError::Closed(stage) => format!("{stage}: closed by broker"),
            ConnError::Refused(packet, code) => {
                format!("{packet} 0x{:02x} {code:?}", *code as u8)
            }
            ConnError::Disconnected(code) => format!("DISCONNECT 0x{:02x} {code:?}", *code as u8),
            ConnError::Protocol(what) => format!("protocol: {what}"),
        }
    }
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Io(stage, e) => write!(f, "{stage}: {e}"),
            _ => f.write_str(&self.reason()),
        }
    }
}

/// One connected MQTT client: the socket and what has been read but not decoded.
pub struct Conn {
    pub stream: TcpStream,
    rbuf: BytesMut,
    pub version: Version,
    /// The broker's Receive Maximum (MQTT 5), bounding QoS 1 inflight.
    pub receive_maximum: Option<u16>,
}

impl Conn {
    /// Connects, sends CONNECT (clean session, no keep-alive) and waits for CONNACK.
    pub async fn connect(
        addr: SocketAddr,
        client_id: &str,
        version: Version,
    ) -> Result<Conn, ConnError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ConnError::Io("connect", io::Error::from(e)))?;
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
        let _ = stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT));
        let mut conn = Conn {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            version,
            receive_maximum: None,
        };
        let connect = Connect {
            version,
            clean_start: true,
            // Not 0: rumqttd refuses keepalive 0 (ZeroKeepAlive). The longest
            // MQTT allows, so no run needs PINGREQs to stay connected.
            keep_alive: u16::MAX,
            client_id: ByteString::from(client_id),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        };
        conn.send(&Packet::Connect(Box::new(connect))).await?;
        match conn.recv("CONNACK").await? {
            Packet::ConnAck(ack) if ack.reason_code.is_error() => {
                Err(ConnError::Refused("CONNACK", ack.reason_code))
            }
            Packet::ConnAck(ack) => {
                conn.receive_maximum = ack.properties.receive_maximum;
                Ok(conn)
            }
            other => Err(ConnError::Protocol(format!(
                "{} before CONNACK",
                other.name()
            ))),
        }
    }

    /// Subscribes to one filter and waits for a SUBACK that grants it.
    pub async fn subscribe(&mut self, filter: TopicFilter, qos: QoS) -> Result<(), ConnError> {
        let subscribe = Subscribe {
            packet_id: NonZeroU16::MIN,
            filters: vec![(
                filter,
                SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                },
            )],
            properties: SubscribeProperties::default(),
        };
        self.send(&Packet::Subscribe(subscribe)).await?;
        match self.recv("SUBACK").await? {
            Packet::SubAck(ack) => match ack.reason_codes.first() {
                Some(code) if code.is_error() => Err(ConnError::Refused("SUBACK", *code)),
                Some(_) => Ok(()),
                None => Err(ConnError::Protocol("SUBACK without reason codes".into())),
            },
            other => Err(ConnError::Protocol(format!(
                "{} before SUBACK",
                other.name()
            ))),
        }
    }

    pub async fn send(&mut self, packet: &Packet) -> Result<(), ConnError> {
        let mut buf = BytesMut::new();
        encode(packet, self.version, &mut buf)
            .map_err(|e| ConnError::Protocol(format!("cannot encode: {e}")))?;
        self.stream
            .write_all(&buf)
            .await
            .map_err(|e| ConnError::Io("write", e))
    }

    /// The next packet already buffered, if a whole one is.
    pub fn try_decode(&mut self) -> Result<Option<Packet>, ConnError> {
        decode(&mut self.rbuf, self.version, MAX_PACKET)
            .map_err(|e| ConnError::Protocol(e.to_string()))
    }

    /// Reads once more into the buffer; `stage` names the wait in errors.
    pub async fn read_more(&mut self, stage: &'static str) -> Result<(), ConnError> {
        let len = self.rbuf.len();
        self.rbuf.resize(len + READ_CHUNK, 0);
        let result = self.stream.read(&mut self.rbuf[len..]).await;
        self.rbuf.truncate(len + *result.as_ref().unwrap_or(&0));
        match result {
            Ok(0) => Err(ConnError::Closed(stage)),
            Ok(_) => Ok(()),
            Err(e) => Err(ConnError::Io(stage, e)),
        }
    }

    /// The next packet, reading as needed.
    pub async fn recv(&mut self, stage: &'static str) -> Result<Packet, ConnError> {
        loop {
            if let Some(packet) = self.try_decode()? {
                return Ok(packet);
            }
            self.read_more(stage).await?;
        }
    }

    /// A second stream on the same socket, for a writer task.
    ///
    /// Bound its writes with [`bound_writes`]: a broker that stops reading must not
    /// keep the run from ending.
    pub fn writer(&self) -> io::Result<TcpStream> {
        // SAFETY: the descriptor belongs to `self.stream`, which outlives this borrow.
        let fd = unsafe { BorrowedFd::borrow_raw(self.stream.as_raw_fd()) };
        let owned = fd.try_clone_to_owned()?;
        // SAFETY: `owned` is a freshly duplicated descriptor that nothing else owns.
        Ok(unsafe { TcpStream::from_raw_fd(owned.into_raw_fd()) })
    }
}

/// Makes the next writes on `stream` fail (TimedOut) once `deadline` has passed.
pub fn bound_writes(stream: &TcpStream, deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    let _ = stream.set_write_timeout(Some(left.max(Duration::from_millis(1))));
}
