//! The MQTT codec: packet types, decoding and encoding for MQTT 3.1, 3.1.1 and 5.0.
//!
//! Sans-IO: [`decode`] takes bytes from a `BytesMut` and [`encode`] appends bytes
//! to one; neither knows about sockets or runtimes. The broker uses it as a server
//! and the load tester as a client, so every packet goes both ways.
//!
//! - Decoding is incremental: `Ok(None)` means "read more bytes". A declared length
//!   over the caller's maximum is refused before any memory is reserved for it.
//! - Every spec violation is its own [`DecodeError`] variant naming the clause.
//! - Strings and payloads are `Bytes` views of the read buffer. Anything kept past
//!   the packet (retained, queued, stored) must be copied out, or it pins the whole
//!   read buffer (rumqttd issue #1001).
//! - Courier's 3.1.1 extensions are accepted: user properties after the password
//!   in CONNECT, and the non_retry / non_persistence bits in SUBSCRIBE options.
//! - MQTT 5 properties are dropped when encoding for MQTT 3, so the broker can build
//!   one packet and send it to clients of either version.

mod ack;
mod codec;
mod connect;
mod error;
mod property;
mod publish;
mod read;
mod reason;
mod subscribe;
mod write;

#[cfg(any(test, feature = "arbitrary"))]
pub mod generate;

use std::num::NonZeroU16;

pub use ack::{Ack, AckProperties, Auth, AuthProperties, Disconnect, DisconnectProperties};
pub use codec::{decode, encode, encoded_len, publish_encoded_len};
pub use connect::{
    ConnAck, ConnAckProperties, Connect, ConnectProperties, LastWill, WillProperties,
};
pub use error::{DecodeError, EncodeError};
pub use property::{UserProperties, MAX_SUBSCRIPTION_ID};
pub use publish::{Publish, PublishProperties};
pub use reason::{ReasonCode, ReasonPacket};
pub use subscribe::{
    RetainHandling, SubAck, Subscribe, SubscribeProperties, SubscriptionOptions, UnsubAck,
    Unsubscribe,
};
pub use write::MAX_VAR_INT;

/// A packet identifier; zero is never valid [MQTT-2.2.1-3].
pub type PacketId = NonZeroU16;

/// The largest packet MQTT can describe: 1 header byte, 4 length bytes, 268435455.
pub const MAX_PACKET_SIZE: usize = 1 + 4 + MAX_VAR_INT;

/// Protocol version, by the level byte of CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Version {
    /// MQTT 3.1, protocol name `MQIsdp`.
    V3_1 = 3,
    /// MQTT 3.1.1, protocol name `MQTT`.
    V3_1_1 = 4,
    /// MQTT 5.0, protocol name `MQTT`.
    V5 = 5,
}

impl Version {
    pub fn is_v5(self) -> bool {
        self == Version::V5
    }

    /// For messages: "3.1", "3.1.1" or "5".
    pub fn name(self) -> &'static str {
        match self {
            Version::V3_1 => "3.1",
            Version::V3_1_1 => "3.1.1",
            Version::V5 => "5",
        }
    }
}

/// Quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum QoS {
    #[default]
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for bits `v` (0..=2); 3 and above are not a QoS.
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// One MQTT control packet, of any version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    /// MQTT 5 only.
    Auth(Auth),
}

impl Packet {
    /// The packet's name as the spec writes it, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod malformed;
#[cfg(test)]
mod tests;
