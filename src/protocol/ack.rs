//! The packets made of a reason code and properties: PUBACK, PUBREC, PUBREL,
//! PUBCOMP, DISCONNECT and AUTH.

use bytestring::ByteString;

use bytes::Bytes;

use super::property::*;
use super::read::Reader;
use super::write::Sink;
use super::{DecodeError, EncodeError, PacketId, ReasonCode, ReasonPacket, Version};

/// PUBACK, PUBREC, PUBREL or PUBCOMP: the QoS 1 and 2 acknowledgements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub packet_id: PacketId,
    /// MQTT 5 only; always `Success` from an MQTT 3 peer.
    pub reason_code: ReasonCode,
    pub properties: AckProperties,
}

impl Ack {
    /// A successful acknowledgement with no properties.
    pub fn new(packet_id: PacketId) -> Ack {
        Ack {
            packet_id,
            reason_code: ReasonCode::Success,
            properties: AckProperties::default(),
        }
    }

    pub(crate) fn decode(
        mut r: Reader,
        kind: ReasonPacket,
        version: Version,
    ) -> Result<Ack, DecodeError> {
        let packet_id = read_packet_id(&mut r)?;
        let mut ack = Ack::new(packet_id);
        // MQTT 5 lets the sender omit a Success code and empty properties.
        if version.is_v5() && !r.is_empty() {
            ack.reason_code = read_reason_code(&mut r, kind)?;
            if !r.is_empty() {
                ack.properties = AckProperties::decode(&mut r)?;
            }
        }
        r.finish()?;
        Ok(ack)
    }

    pub(crate) fn emit(&self, version: Version, s: &mut impl Sink) -> Result<(), EncodeError> {
        s.put_u16(self.packet_id.get());
        if version.is_v5() {
            let props = !self.properties.is_empty();
            if props || self.reason_code != ReasonCode::Success {
                s.put_u8(self.reason_code as u8);
            }
            if props {
                self.properties.emit(s)?;
            }
        }
        Ok(())
    }
}

/// Reads a packet identifier that must not be zero [MQTT-2.2.1-3].
pub(crate) fn read_packet_id(r: &mut Reader) -> Result<PacketId, DecodeError> {
    let id = r.u16("packet identifier")?;
    PacketId::new(id).ok_or(DecodeError::ZeroPacketId { packet: r.packet })
}

/// Reads a reason code that `kind` may carry.
pub(crate) fn read_reason_code(
    r: &mut Reader,
    kind: ReasonPacket,
) -> Result<ReasonCode, DecodeError> {
    let code = r.u8("reason code")?;
    ReasonCode::from_u8(code)
        .filter(|c| c.allowed_in(kind))
        .ok_or(DecodeError::InvalidReasonCode {
            packet: r.packet,
            code,
        })
}

/// The properties of acknowledgements (PUBACK..PUBCOMP, SUBACK, UNSUBACK):
/// a reason string and user properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AckProperties {
    pub reason_string: Option<ByteString>,
    pub user_properties: UserProperties,
}

impl AckProperties {
    pub fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        let mut pr = PropertyReader::new(r)?;
        while let Some(id) = pr.next_id()? {
            match id {
                REASON_STRING => p.reason_string = Some(pr.string()?),
                USER_PROPERTY => pr.user_property(&mut p.user_properties)?,
                _ => return Err(pr.unexpected()),
            }
        }
        Ok(p)
    }

    pub(crate) fn emit(&self, s: &mut impl Sink) -> Result<(), EncodeError> {
        put_properties(s, |p| {
            p.opt_str(REASON_STRING, self.reason_string.as_ref())?;
            p.users(&self.user_properties)
        })
    }
}

/// DISCONNECT. MQTT 3 has no body; MQTT 5 may carry a reason and properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// `Success` is "Normal disconnection".
    pub reason_code: ReasonCode,
    pub properties: DisconnectProperties,
}

/// MQTT 5 DISCONNECT properties (section 3.14.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisconnectProperties {
    pub session_expiry_interval: Option<u32>,
    pub reason_string: Option<ByteString>,
    pub user_properties: UserProperties,
    pub server_reference: Option<ByteString>,
}

impl Disconnect {
    pub(crate) fn decode(mut r: Reader, version: Version) -> Result<Disconnect, DecodeError> {
        let mut d = Disconnect::default();
        if version.is_v5() && !r.is_empty() {
            d.reason_code = read_reason_code(&mut r, ReasonPacket::Disconnect)?;
            if !r.is_empty() {
                let mut pr = PropertyReader::new(&mut r)?;
                let p = &mut d.properties;
                while let Some(id) = pr.next_id()? {
                    match id {
                        SESSION_EXPIRY_INTERVAL => p.session_expiry_interval = Some(pr.u32()?),
                        REASON_STRING => p.reason_string = Some(pr.string()?),
                        USER_PROPERTY => pr.user_property(&mut p.user_properties)?,
                        SERVER_REFERENCE => p.server_reference = Some(pr.string()?),
                        _ => return Err(pr.unexpected()),
                    }
                }
            }
        }
        r.finish()?;
        Ok(d)
    }

    pub(crate) fn emit(&self, version: Version, s: &mut impl Sink) -> Result<(), EncodeError> {
        if !version.is_v5() || *self == Disconnect::default() {
            return Ok(());
        }
        s.put_u8(self.reason_code as u8);
        let p = &self.properties;
        put_properties(s, |w| {
            w.opt_four(SESSION_EXPIRY_INTERVAL, p.session_expiry_interval);
            w.opt_str(REASON_STRING, p.reason_string.as_ref())?;
            w.users(&p.user_properties)?;
            w.opt_str(SERVER_REFERENCE, p.server_reference.as_ref())
        })
    }
}

/// AUTH (MQTT 5 only): extended authentication exchanges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// `Success`, `ContinueAuthentication` or `ReAuthenticate`.
    pub reason_code: ReasonCode,
    pub properties: AuthProperties,
}

/// MQTT 5 AUTH properties (section 3.15.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthProperties {
    pub authentication_method: Option<ByteString>,
    pub authentication_data: Option<Bytes>,
    pub reason_string: Option<ByteString>,
    pub user_properties: UserProperties,
}

impl Auth {
    pub(crate) fn decode(mut r: Reader) -> Result<Auth, DecodeError> {
        let mut a = Auth::default();
        if !r.is_empty() {
            a.reason_code = read_reason_code(&mut r, ReasonPacket::Auth)?;
        }
        if !r.is_empty() {
            let mut pr = PropertyReader::new(&mut r)?;
            let p = &mut a.properties;
            while let Some(id) = pr.next_id()? {
                match id {
                    AUTHENTICATION_METHOD => p.authentication_method = Some(pr.string()?),
                    AUTHENTICATION_DATA => p.authentication_data = Some(pr.binary()?),
                    REASON_STRING => p.reason_string = Some(pr.string()?),
                    USER_PROPERTY => pr.user_property(&mut p.user_properties)?,
                    _ => return Err(pr.unexpected()),
                }
            }
        }
        // Only the empty form (remaining length 0) may leave the method out.
        if a != Auth::default() && a.properties.authentication_method.is_none() {
            return Err(DecodeError::AuthWithoutMethod);
        }
        r.finish()?;
        Ok(a)
    }

    pub(crate) fn emit(&self, s: &mut impl Sink) -> Result<(), EncodeError> {
        if *self == Auth::default() {
            return Ok(());
        }
        s.put_u8(self.reason_code as u8);
        let p = &self.properties;
        put_properties(s, |w| {
            w.opt_str(AUTHENTICATION_METHOD, p.authentication_method.as_ref())?;
            w.opt_binary(AUTHENTICATION_DATA, p.authentication_data.as_deref())?;
            w.opt_str(REASON_STRING, p.reason_string.as_ref())?;
            w.users(&p.user_properties)
        })
    }
}
