//! CONNECT and CONNACK.

use bytes::Bytes;
use bytestring::ByteString;

use super::property::*;
use super::read::Reader;
use super::write::{put_binary, put_str, Sink};
use super::{DecodeError, EncodeError, QoS, ReasonCode, ReasonPacket, Version};
use crate::topic::TopicName;

/// CONNECT: the first packet a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Which protocol the client speaks; every later packet is read in it.
    pub version: Version,
    /// Clean session (3.x) or clean start (5).
    pub clean_start: bool,
    /// Seconds; 0 disables keepalive.
    pub keep_alive: u16,
    /// May be empty: the server then assigns one (5) or decides (3.1.1).
    pub client_id: ByteString,
    pub will: Option<LastWill>,
    pub username: Option<ByteString>,
    /// Binary: a JWT for Courier clients.
    pub password: Option<Bytes>,
    /// MQTT 5 properties. For 3.1.1, `user_properties` holds Courier's extension.
    pub properties: ConnectProperties,
}

/// The will message a CONNECT asks the server to publish on abnormal close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    pub qos: QoS,
    pub retain: bool,
    pub topic: TopicName,
    pub payload: Bytes,
    pub properties: WillProperties,
}

/// MQTT 5 CONNECT properties (section 3.1.2.11).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectProperties {
    pub session_expiry_interval: Option<u32>,
    /// Never 0.
    pub receive_maximum: Option<u16>,
    /// Never 0.
    pub maximum_packet_size: Option<u32>,
    pub topic_alias_maximum: Option<u16>,
    pub request_response_information: Option<bool>,
    pub request_problem_information: Option<bool>,
    /// Also carries Courier's 3.1.1 user properties.
    pub user_properties: UserProperties,
    pub authentication_method: Option<ByteString>,
    pub authentication_data: Option<Bytes>,
}

/// MQTT 5 will properties (section 3.1.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WillProperties {
    pub will_delay_interval: Option<u32>,
    pub payload_format_indicator: Option<bool>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<ByteString>,
    pub response_topic: Option<TopicName>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: UserProperties,
}

impl Connect {
    pub(crate) fn decode(mut r: Reader) -> Result<Connect, DecodeError> {
        let name = r.binary("protocol name")?;
        let level = r.u8("protocol level")?;
        let version = match (&name[..], level) {
            (b"MQTT", 4) => Version::V3_1_1,
            (b"MQTT", 5) => Version::V5,
            (b"MQIsdp", 3) => Version::V3_1,
            (b"MQTT" | b"MQIsdp", level) => {
                return Err(DecodeError::UnsupportedProtocolLevel(level))
            }
            _ => return Err(DecodeError::InvalidProtocolName),
        };
        let flags = r.u8("connect flags")?;
        if flags & 0x01 != 0 {
            return Err(DecodeError::ConnectReservedFlag);
        }
        let has_will = flags & 0x04 != 0;
        let will_qos = QoS::from_u8((flags >> 3) & 0x03).ok_or(DecodeError::InvalidWillQos)?;
        let will_retain = flags & 0x20 != 0;
        if !has_will && will_qos != QoS::AtMostOnce {
            return Err(DecodeError::WillQosWithoutWill);
        }
        if !has_will && will_retain {
            return Err(DecodeError::WillRetainWithoutWill);
        }
        let has_password = flags & 0x40 != 0;
        let has_username = flags & 0x80 != 0;
        if has_password && !has_username && !version.is_v5() {
            return Err(DecodeError::PasswordWithoutUsername);
        }
        let keep_alive = r.u16("keep alive")?;
        let mut properties = if version.is_v5() {
            ConnectProperties::decode(&mut r)?
        } else {
            ConnectProperties::default()
        };
        let client_id = r.string("client identifier")?;
        let will = if has_will {
            let properties = if version.is_v5() {
                WillProperties::decode(&mut r)?
            } else {
                Default::default()
            };
            let topic = r.string("will topic")?;
            let topic = TopicName::new(topic).map_err(DecodeError::InvalidTopicName)?;
            let payload = r.binary("will payload")?;
            Some(LastWill {
                qos: will_qos,
                retain: will_retain,
                topic,
                payload,
                properties,
            })
        } else {
            None
        };
        let username = if has_username {
            Some(r.string("user name")?)
        } else {
            None
        };
        let password = if has_password {
            Some(r.binary("password")?)
        } else {
            None
        };
        if version == Version::V3_1_1 {
            decode_courier_properties(&mut r, &mut properties.user_properties)?;
        }
        r.finish()?;
        Ok(Connect {
            version,
            clean_start: flags & 0x02 != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    pub(crate) fn emit(&self, s: &mut impl Sink) -> Result<(), EncodeError> {
        let version = self.version;
        let name: &[u8] = if version == Version::V3_1 {
            b"MQIsdp"
        } else {
            b"MQTT"
        };
        put_binary(s, name)?;
        s.put_u8(version as u8);
        let mut flags = 0u8;
        if self.clean_start {
            flags |= 0x02;
        }
        if let Some(will) = &self.will {
            flags |= 0x04 | (will.qos as u8) << 3;
            if will.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        s.put_u8(flags);
        s.put_u16(self.keep_alive);
        if version.is_v5() {
            self.properties.emit(s)?;
        }
        put_str(s, &self.client_id)?;
        if let Some(will) = &self.will {
            if version.is_v5() {
                will.properties.emit(s)?;
            }
            put_str(s, &will.topic)?;
            put_binary(s, &will.payload)?;
        }
        if let Some(username) = &self.username {
            put_str(s, username)?;
        }
        if let Some(password) = &self.password {
            put_binary(s, password)?;
        }
        if version == Version::V3_1_1 {
            for (k, v) in &self.properties.user_properties {
                s.put_u8(USER_PROPERTY);
                put_str(s, k)?;
                put_str(s, v)?;
            }
        }
        Ok(())
    }
}

/// Courier's extension: after the last CONNECT field, a 3.1.1 client may send
/// MQTT 5-style user properties (`0x26`, name, value), with no length prefix; the
/// remaining length covers them.
fn decode_courier_properties(r: &mut Reader, into: &mut UserProperties) -> Result<(), DecodeError> {
    while !r.is_empty() {
        let id = r.u8("user property")?;
        if id != USER_PROPERTY {
            return Err(DecodeError::InvalidCourierProperty(id));
        }
        let name = r.string("user property name")?;
        let value = r.string("user property value")?;
        into.push((name, value));
    }
    Ok(())
}

impl ConnectProperties {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        let mut pr = PropertyReader::new(r)?;
        while let Some(id) = pr.next_id()? {
            match id {
                SESSION_EXPIRY_INTERVAL => p.session_expiry_interval = Some(pr.u32()?),
                RECEIVE_MAXIMUM => p.receive_maximum = Some(pr.non_zero_u16()?),
                MAXIMUM_PACKET_SIZE => p.maximum_packet_size = Some(pr.non_zero_u32()?),
                TOPIC_ALIAS_MAXIMUM => p.topic_alias_maximum = Some(pr.u16()?),
                REQUEST_RESPONSE_INFORMATION => p.request_response_information = Some(pr.bool()?),
                REQUEST_PROBLEM_INFORMATION => p.request_problem_information = Some(pr.bool()?),
                USER_PROPERTY => pr.user_property(&mut p.user_properties)?,
                AUTHENTICATION_METHOD => p.authentication_method = Some(pr.string()?),
                AUTHENTICATION_DATA => p.authentication_data = Some(pr.binary()?),
                _ => return Err(pr.unexpected()),
            }
        }
        if p.authentication_data.is_some() && p.authentication_method.is_none() {
            return Err(DecodeError::AuthDataWithoutMethod);
        }
        Ok(p)
    }

    fn emit(&self, s: &mut impl Sink) -> Result<(), EncodeError> {
        put_properties(s, |p| {
            p.opt_four(SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
            p.opt_two(RECEIVE_MAXIMUM, self.receive_maximum);
            p.opt_four(MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
            p.opt_two(TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
            p.opt_bool(
                REQUEST_RESPONSE_INFORMATION,
                self.request_response_information,
            );
            p.opt_bool(
                REQUEST_PROBLEM_INFORMATION,
                self.request_problem_information,
            );
            p.users(&self.user_properties)?;
            p.opt_str(AUTHENTICATION_METHOD, self.authentication_method.as_ref())?;
            p.opt_binary(AUTHENTICATION_DATA, self.authentication_data.as_deref())
        })
    }
}

impl WillProperties {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        let mut pr = PropertyReader::new(r)?;
        while let Some(id) = pr.next_id()? {
            match id {
                WILL_DELAY_INTERVAL => p.will_delay_interval = Some(pr.u32()?),
                PAYLOAD_FORMAT_INDICATOR => p.payload_format_indicator = Some(pr.bool()?),
                MESSAGE_EXPIRY_INTERVAL => p.message_expiry_interval = Some(pr.u32()?),
                CONTENT_TYPE => p.content_type = Some(pr.string()?),
                RESPONSE_TOPIC => p.response_topic = Some(pr.response_topic()?),
                CORRELATION_DATA => p.correlation_data = Some(pr.binary()?),
                USER_PROPERTY => pr.user_property(&mut p.user_properties)?,
                _ => return Err(pr.unexpected()),
            }
        }
        Ok(p)
    }

    fn emit(&self, s: &mut impl Sink) -> Result<(), EncodeError> {
        put_properties(s, |p| {
            p.opt_four(WILL_DELAY_INTERVAL, self.will_delay_interval);
            p.opt_bool(PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
            p.opt_four(MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
            p.opt_str(CONTENT_TYPE, self.content_type.as_ref())?;
            p.opt_str(
                RESPONSE_TOPIC,
                self.response_topic.as_ref().map(|t| t.as_bytestring()),
            )?;
            p.opt_binary(CORRELATION_DATA, self.correlation_data.as_deref())?;
            p.users(&self.user_properties)
        })
    }
}

/// CONNACK: the server's answer to CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    /// For MQTT 3 this maps to and from return codes 0..=5
    /// ([`ReasonCode::to_v3_connack`]).
    pub reason_code: ReasonCode,
    pub properties: ConnAckProperties,
}

/// MQTT 5 CONNACK properties (section 3.2.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAckProperties {
    pub session_expiry_interval: Option<u32>,
    /// Never 0.
    pub receive_maximum: Option<u16>,
    /// Only QoS 0 or 1: a server supporting QoS 2 leaves it out.
    pub maximum_qos: Option<QoS>,
    pub retain_available: Option<bool>,
    /// Never 0.
    pub maximum_packet_size: Option<u32>,
    pub assigned_client_identifier: Option<ByteString>,
    pub topic_alias_maximum: Option<u16>,
    pub reason_string: Option<ByteString>,
    pub user_properties: UserProperties,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifiers_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
    pub server_keep_alive: Option<u16>,
    pub response_information: Option<ByteString>,
    pub server_reference: Option<ByteString>,
    pub authentication_method: Option<ByteString>,
    pub authentication_data: Option<Bytes>,
}

const CONNACK: &str = "CONNACK";

impl ConnAck {
    pub(crate) fn decode(mut r: Reader, version: Version) -> Result<ConnAck, DecodeError> {
        let flags = r.u8("acknowledge flags")?;
        if flags & 0xfe != 0 {
            return Err(DecodeError::ConnAckReservedFlags);
        }
        let code = r.u8("reason code")?;
        let invalid = DecodeError::InvalidReasonCode {
            packet: CONNACK,
            code,
        };
        let (reason_code, properties) = if version.is_v5() {
            let reason = ReasonCode::from_u8(code)
                .filter(|c| c.allowed_in(ReasonPacket::ConnAck))
                .ok_or(invalid)?;
            (reason, ConnAckProperties::decode(&mut r)?)
        } else {
            (
                ReasonCode::from_v3_connack(code).ok_or(invalid)?,
                ConnAckProperties::default(),
            )
        };
        r.finish()?;
        Ok(ConnAck {
            session_present: flags & 0x01 != 0 && version != Version::V3_1,
            reason_code,
            properties,
        })
    }

    pub(crate) fn emit(&self, version: Version, s: &mut impl Sink) -> Result<(), EncodeError> {
        // 3.1 has no session present flag: its first byte is reserved.
        s.put_u8(u8::from(self.session_present && version != Version::V3_1));
        if version.is_v5() {
            s.put_u8(self.reason_code as u8);
            self.properties.emit(s)
        } else {
            s.put_u8(self.reason_code.to_v3_connack());
            Ok(())
        }
    }
}

impl ConnAckProperties {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        let mut pr = PropertyReader::new(r)?;
        while let Some(id) = pr.next_id()? {
            match id {
                SESSION_EXPIRY_INTERVAL => p.session_expiry_interval = Some(pr.u32()?),
                RECEIVE_MAXIMUM => p.receive_maximum = Some(pr.non_zero_u16()?),
                MAXIMUM_QOS => {
                    let one = pr.bool()?;
                    p.maximum_qos = Some(if one {
                        QoS::AtLeastOnce
                    } else {
                        QoS::AtMostOnce
                    });
                }
                RETAIN_AVAILABLE => p.retain_available = Some(pr.bool()?),
                MAXIMUM_PACKET_SIZE => p.maximum_packet_size = Some(pr.non_zero_u32()?),
                ASSIGNED_CLIENT_IDENTIFIER => p.assigned_client_identifier = Some(pr.string()?),
                TOPIC_ALIAS_MAXIMUM => p.topic_alias_maximum = Some(pr.u16()?),
                REASON_STRING => p.reason_string = Some(pr.string()?),
                USER_PROPERTY => pr.user_property(&mut p.user_properties)?,
                WILDCARD_SUBSCRIPTION_AVAILABLE => {
                    p.wildcard_subscription_available = Some(pr.bool()?)
                }
                SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                    p.subscription_identifiers_available = Some(pr.bool()?)
                }
                SHARED_SUBSCRIPTION_AVAILABLE => p.shared_subscription_available = Some(pr.bool()?),
                SERVER_KEEP_ALIVE => p.server_keep_alive = Some(pr.u16()?),
                RESPONSE_INFORMATION => p.response_information = Some(pr.string()?),
                SERVER_REFERENCE => p.server_reference = Some(pr.string()?),
                AUTHENTICATION_METHOD => p.authentication_method = Some(pr.string()?),
                AUTHENTICATION_DATA => p.authentication_data = Some(pr.binary()?),
                _ => return Err(pr.unexpected()),
            }
        }
        Ok(p)
    }

    fn emit(&self, s: &mut impl Sink) -> Result<(), EncodeError> {
        put_properties(s, |p| {
            p.opt_four(SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
            p.opt_two(RECEIVE_MAXIMUM, self.receive_maximum);
            // Only 0 or 1 can be sent: leaving the property out means QoS 2.
            let max_qos = self.maximum_qos.filter(|&q| q != QoS::ExactlyOnce);
            p.opt_byte(MAXIMUM_QOS, max_qos.map(|q| q as u8));
            p.opt_bool(RETAIN_AVAILABLE, self.retain_available);
            p.opt_four(MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
            p.opt_str(
                ASSIGNED_CLIENT_IDENTIFIER,
                self.assigned_client_identifier.as_ref(),
            )?;
            p.opt_two(TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
            p.opt_str(REASON_STRING, self.reason_string.as_ref())?;
            p.users(&self.user_properties)?;
            p.opt_bool(
                WILDCARD_SUBSCRIPTION_AVAILABLE,
                self.wildcard_subscription_available,
            );
            p.opt_bool(
                SUBSCRIPTION_IDENTIFIER_AVAILABLE,
                self.subscription_identifiers_available,
            );
            p.opt_bool(
                SHARED_SUBSCRIPTION_AVAILABLE,
                self.shared_subscription_available,
            );
            p.opt_two(SERVER_KEEP_ALIVE, self.server_keep_alive);
            p.opt_str(RESPONSE_INFORMATION, self.response_information.as_ref())?;
            p.opt_str(SERVER_REFERENCE, self.server_reference.as_ref())?;
            p.opt_str(AUTHENTICATION_METHOD, self.authentication_method.as_ref())?;
            p.opt_binary(AUTHENTICATION_DATA, self.authentication_data.as_deref())
        })
    }
}
