//! A minimal MQTT client over a glommio socket, on the broker's sans-IO codec: connect,
//! subscribe, and a buffered read side. Writers get a second descriptor of the same
//! socket ([`Conn::writer`]), as the broker's own connections do, so one task can read
//! acks while another publishes.
//!
//! Sockets are made with socket2 rather than `TcpStream::connect`, which can neither
//! bind a source address (`--bind-ips`, to get past the ~28k ephemeral ports of one
//! address) nor size the send buffer before connecting (see [`SocketOpts`]).

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU16;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use shardmq::protocol::{
    decode, encode, Connect, ConnectProperties, Packet, QoS, ReasonCode, Subscribe,
    SubscribeProperties, SubscriptionOptions, Version,
};
use shardmq::topic::TopicFilter;
use socket2::{Domain, SockAddr, Socket, Type};

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

/// What one client says in its CONNECT.
#[derive(Clone)]
pub struct Hello {
    pub client_id: String,
    pub username: Option<String>,
    /// A password or a JWT; never printed.
    pub password: Option<Bytes>,
    /// false: a persistent session, kept by the broker across connections.
    pub clean_start: bool,
    /// MQTT 5 Session Expiry Interval in seconds; a persistent MQTT 5 session needs
    /// one above 0, or the broker ends it at disconnect anyway.
    pub session_expiry: Option<u32>,
}

impl Hello {
    /// A clean session with no credentials.
    pub fn anonymous(client_id: impl Into<String>) -> Hello {
        Hello {
            client_id: client_id.into(),
            username: None,
            password: None,
            clean_start: true,
            session_expiry: None,
        }
    }
}

impl fmt::Debug for Hello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hello")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("clean_start", &self.clean_start)
            .field("session_expiry", &self.session_expiry)
            .finish()
    }
}

/// How the socket under a connection is set up.
#[derive(Debug, Clone, Copy, Default)]
pub struct SocketOpts {
    /// Source address to bind before connecting (`--bind-ips`); the port is still
    /// chosen by the kernel, at connect time, per destination.
    pub source: Option<IpAddr>,
    /// SO_SNDBUF in bytes. Publishers use a small one: under `--rate max` the kernel
    /// would otherwise queue megabytes of stamped messages behind a busy broker (3.9 MB,
    /// 25 s of a 1→1000 fan-out), so nothing sent in the measured window arrived
    /// before the run ended.
    pub send_buffer: Option<usize>,
}

/// One connected MQTT client: the socket and what has been read but not decoded.
pub struct Conn {
    pub stream: TcpStream,
    rbuf: BytesMut,
    pub version: Version,
    /// The broker's Receive Maximum (MQTT 5), bounding QoS 1 inflight.
    pub receive_maximum: Option<u16>,
    /// The broker had a session for this client id (persistent sessions).
    pub session_present: bool,
}

impl Conn {
    /// Connects, sends CONNECT (no keep-alive) and waits for CONNACK.
    pub async fn connect(
        addr: SocketAddr,
        hello: &Hello,
        version: Version,
        opts: SocketOpts,
    ) -> Result<Conn, ConnError> {
        let socket = open_socket(addr, opts).map_err(|e| ConnError::Io("connect", e))?;
        // SAFETY: a fresh descriptor, owned by nothing else once `into_raw_fd` gives
        // it up. (glommio's `From<Socket>` is for its own socket2 0.4.)
        let stream = unsafe { TcpStream::from_raw_fd(socket.into_raw_fd()) };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
        let _ = stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT));
        let mut conn = Conn {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            version,
            receive_maximum: None,
            session_present: false,
        };
        let connect = Connect {
            version,
            clean_start: hello.clean_start,
            // Not 0: rumqttd refuses keepalive 0 (ZeroKeepAlive). The longest
            // MQTT allows, so no run needs PINGREQs to stay connected.
            keep_alive: u16::MAX,
            client_id: ByteString::from(hello.client_id.as_str()),
            will: None,
            username: hello.username.as_deref().map(ByteString::from),
            password: hello.password.clone(),
            properties: ConnectProperties {
                session_expiry_interval: hello.session_expiry,
                ..ConnectProperties::default()
            },
        };
        // The connect completes in the background (non-blocking connect below); the
        // first write waits for it, so its failure is the connect's failure.
        conn.send(&Packet::Connect(Box::new(connect)))
            .await
            .map_err(|e| match e {
                ConnError::Io(_, e) => ConnError::Io("connect", e),
                other => other,
            })?;
        match conn.recv("CONNACK").await? {
            Packet::ConnAck(ack) if ack.reason_code.is_error() => {
                Err(ConnError::Refused("CONNACK", ack.reason_code))
            }
            Packet::ConnAck(ack) => {
                conn.receive_maximum = ack.properties.receive_maximum;
                conn.session_present = ack.session_present;
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

/// A TCP socket connecting to `addr`: bound to `opts.source` if given, the connect
/// started but not waited for (glommio's own `connect` cannot bind first). The socket
/// is back in blocking mode, as glommio's sockets are; glommio writes with
/// MSG_DONTWAIT and polls for writability, which is also when the connect completes.
fn open_socket(addr: SocketAddr, opts: SocketOpts) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if let Some(send_buffer) = opts.send_buffer {
        socket.set_send_buffer_size(send_buffer)?;
    }
    if let Some(ip) = opts.source {
        if ip.is_ipv4() {
            bind_address_no_port(&socket)?;
        }
        socket
            .bind(&SockAddr::from(SocketAddr::new(ip, 0)))
            .map_err(|e| io::Error::new(e.kind(), format!("bind {ip}: {e}")))?;
    }
    socket.set_nonblocking(true)?;
    match socket.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    socket.set_nonblocking(false)?;
    Ok(socket)
}

/// IP_BIND_ADDRESS_NO_PORT: with a source address bound, the kernel picks the port at
/// connect time and only needs the whole 4-tuple to be unique, rather than reserving
/// a port of that address for good at bind time.
fn bind_address_no_port(socket: &Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a pointer to a live c_int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes the next writes on `stream` fail (TimedOut) once `deadline` has passed.
pub fn bound_writes(stream: &TcpStream, deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    let _ = stream.set_write_timeout(Some(left.max(Duration::from_millis(1))));
}
