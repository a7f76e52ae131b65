//! PUBLISH.

use bytes::Bytes;
use bytestring::ByteString;

use super::property::*;
use super::read::Reader;
use super::write::{put_str, Sink};
use super::{DecodeError, EncodeError, PacketId, QoS, Version};
use crate::topic::TopicName;

/// PUBLISH: an application message, in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Empty only in MQTT 5 when `properties.topic_alias` names the topic instead.
    pub topic: TopicName,
    /// Present exactly when `qos` is 1 or 2.
    pub packet_id: Option<PacketId>,
    /// A view of the read buffer: copy it before keeping it past this packet.
    pub payload: Bytes,
    pub properties: PublishProperties,
}

/// MQTT 5 PUBLISH properties (section 3.3.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishProperties {
    pub payload_format_indicator: Option<bool>,
    pub message_expiry_interval: Option<u32>,
    /// Never 0 [MQTT-3.3.2-8].
    pub topic_alias: Option<u16>,
    pub response_topic: Option<TopicName>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: UserProperties,
    /// Server to client only: one per matching subscription that had one.
    pub subscription_identifiers: Vec<u32>,
    pub content_type: Option<ByteString>,
}

impl PublishProperties {
    pub fn is_empty(&self) -> bool {
        *self == PublishProperties::default()
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        let mut pr = PropertyReader::new(r)?.repeatable(SUBSCRIPTION_IDENTIFIER);
        while let Some(id) = pr.next_id()? {
            match id {
                PAYLOAD_FORMAT_INDICATOR => p.payload_format_indicator = Some(pr.bool()?),
                MESSAGE_EXPIRY_INTERVAL => p.message_expiry_interval = Some(pr.u32()?),
                TOPIC_ALIAS => {
                    let alias = pr.u16()?;
                    if alias == 0 {
                        return Err(DecodeError::ZeroTopicAlias);
                    }
                    p.topic_alias = Some(alias);
                }
                RESPONSE_TOPIC => p.response_topic = Some(pr.response_topic()?),
                CORRELATION_DATA => p.correlation_data = Some(pr.binary()?),
                USER_PROPERTY => pr.user_property(&mut p.user_properties)?,
                SUBSCRIPTION_IDENTIFIER => p.subscription_identifiers.push(pr.subscription_id()?),
                CONTENT_TYPE => p.content_type = Some(pr.string()?),
                _ => return Err(pr.unexpected()),
            }
        }
        Ok(p)
    }

    fn emit(&self, s: &mut impl Sink) -> Result<(), EncodeError> {
        if self.is_empty() {
            s.put_u8(0);
            return Ok(());
        }
        put_properties(s, |p| {
            p.opt_bool(PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
            p.opt_four(MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
            p.opt_two(TOPIC_ALIAS, self.topic_alias);
            p.opt_str(
                RESPONSE_TOPIC,
                self.response_topic.as_ref().map(|t| t.as_bytestring()),
            )?;
            p.opt_binary(CORRELATION_DATA, self.correlation_data.as_deref())?;
            p.users(&self.user_properties)?;
            for &id in &self.subscription_identifiers {
                p.var(SUBSCRIPTION_IDENTIFIER, id)?;
            }
            p.opt_str(CONTENT_TYPE, self.content_type.as_ref())
        })
    }
}

impl Publish {
    /// The fixed header's flag bits: DUP, QoS, RETAIN.
    pub(crate) fn flags(&self) -> u8 {
        (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain)
    }

    pub(crate) fn decode(
        mut r: Reader,
        flags: u8,
        version: Version,
    ) -> Result<Publish, DecodeError> {
        let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::InvalidPublishQos)?;
        let dup = flags & 0x08 != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::DupOnQos0);
        }
        let topic = r.string("topic name")?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            let id = r.u16("packet identifier")?;
            Some(PacketId::new(id).ok_or(DecodeError::ZeroPacketId { packet: "PUBLISH" })?)
        };
        let properties = if version.is_v5() {
            PublishProperties::decode(&mut r)?
        } else {
            Default::default()
        };
        let topic = if topic.is_empty() && version.is_v5() {
            if properties.topic_alias.is_none() {
                return Err(DecodeError::EmptyTopicWithoutAlias);
            }
            TopicName::alias_only()
        } else {
            TopicName::new(topic).map_err(DecodeError::InvalidTopicName)?
        };
        Ok(Publish {
            dup,
            qos,
            retain: flags & 0x01 != 0,
            topic,
            packet_id,
            payload: r.rest(),
            properties,
        })
    }

    pub(crate) fn emit(&self, version: Version, s: &mut impl Sink) -> Result<(), EncodeError> {
        put_str(s, &self.topic)?;
        match (self.qos, self.packet_id) {
            (QoS::AtMostOnce, None) => {}
            (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(id)) => s.put_u16(id.get()),
            (qos, _) => return Err(EncodeError::PacketIdMismatch { qos: qos as u8 }),
        }
        if version.is_v5() {
            self.properties.emit(s)?;
        }
        s.put_slice(&self.payload);
        Ok(())
    }
}
