//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK.

use super::ack::{read_packet_id, read_reason_code, AckProperties};
use super::property::*;
use super::read::Reader;
use super::write::{put_str, Sink};
use super::{DecodeError, EncodeError, PacketId, QoS, ReasonCode, ReasonPacket, Version};
use crate::topic::TopicFilter;

/// SUBSCRIBE: one or more filters, each with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: PacketId,
    /// Never empty [MQTT-3.8.3-2].
    pub filters: Vec<(TopicFilter, SubscriptionOptions)>,
    pub properties: SubscribeProperties,
}

/// MQTT 5 SUBSCRIBE properties (section 3.8.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeProperties {
    /// 1..=268435455.
    pub subscription_identifier: Option<u32>,
    pub user_properties: UserProperties,
}

/// What a subscriber asked for with one filter.
///
/// `no_local`, `retain_as_published` and `retain_handling` exist in MQTT 5;
/// `non_retry` and `non_persistence` are Courier's 3.1.1 extension. Each is
/// silently left out when encoding for a version that lacks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    /// Don't send this client its own publishes.
    pub no_local: bool,
    /// Keep the RETAIN flag as published instead of clearing it on delivery.
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
    /// Courier bit 3: deliver QoS 1 once, never retransmit; drop if not acked.
    pub non_retry: bool,
    /// Courier bit 2: don't queue while offline, don't redeliver after reconnect.
    pub non_persistence: bool,
}

/// When retained messages are sent on subscribe (MQTT 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum RetainHandling {
    #[default]
    OnSubscribe = 0,
    /// Only if the subscription did not exist before.
    OnNewSubscribe = 1,
    Never = 2,
}

impl SubscriptionOptions {
    fn decode(byte: u8, version: Version, shared: bool) -> Result<Self, DecodeError> {
        let reserved = match version {
            Version::V5 => 0xc0,
            Version::V3_1_1 => 0xf0,
            Version::V3_1 => 0xfc,
        };
        if byte & reserved != 0 {
            return Err(DecodeError::SubscriptionReservedBits(byte & reserved));
        }
        let qos = QoS::from_u8(byte & 0x03).ok_or(DecodeError::InvalidSubscriptionQos)?;
        let mut o = SubscriptionOptions {
            qos,
            ..Default::default()
        };
        if version.is_v5() {
            o.no_local = byte & 0x04 != 0;
            o.retain_as_published = byte & 0x08 != 0;
            o.retain_handling = match (byte >> 4) & 0x03 {
                0 => RetainHandling::OnSubscribe,
                1 => RetainHandling::OnNewSubscribe,
                2 => RetainHandling::Never,
                _ => return Err(DecodeError::InvalidRetainHandling),
            };
            if o.no_local && shared {
                return Err(DecodeError::NoLocalOnSharedSubscription);
            }
        } else {
            o.non_retry = byte & 0x08 != 0;
            o.non_persistence = byte & 0x04 != 0;
        }
        Ok(o)
    }

    fn encode(&self, version: Version) -> u8 {
        let mut byte = self.qos as u8;
        match version {
            Version::V5 => {
                byte |= u8::from(self.no_local) << 2
                    | u8::from(self.retain_as_published) << 3
                    | (self.retain_handling as u8) << 4;
            }
            Version::V3_1_1 => {
                byte |= u8::from(self.non_retry) << 3 | u8::from(self.non_persistence) << 2;
            }
            Version::V3_1 => {}
        }
        byte
    }
}

fn read_filter(r: &mut Reader) -> Result<TopicFilter, DecodeError> {
    let filter = r.string("topic filter")?;
    TopicFilter::new(filter).map_err(DecodeError::InvalidTopicFilter)
}

impl Subscribe {
    pub(crate) fn decode(mut r: Reader, version: Version) -> Result<Subscribe, DecodeError> {
        let packet_id = read_packet_id(&mut r)?;
        let mut properties = SubscribeProperties::default();
        if version.is_v5() {
            let mut pr = PropertyReader::new(&mut r)?;
            while let Some(id) = pr.next_id()? {
                match id {
                    SUBSCRIPTION_IDENTIFIER => {
                        properties.subscription_identifier = Some(pr.subscription_id()?)
                    }
                    USER_PROPERTY => pr.user_property(&mut properties.user_properties)?,
                    _ => return Err(pr.unexpected()),
                }
            }
        }
        let mut filters = Vec::new();
        while !r.is_empty() {
            let filter = read_filter(&mut r)?;
            let byte = r.u8("subscription options")?;
            let options =
                SubscriptionOptions::decode(byte, version, filter.share_group().is_some())?;
            filters.push((filter, options));
        }
        if filters.is_empty() {
            return Err(DecodeError::EmptySubscribe);
        }
        Ok(Subscribe {
            packet_id,
            filters,
            properties,
        })
    }

    pub(crate) fn emit(&self, version: Version, s: &mut impl Sink) -> Result<(), EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::Empty {
                packet: "SUBSCRIBE",
            });
        }
        s.put_u16(self.packet_id.get());
        if version.is_v5() {
            let p = &self.properties;
            put_properties(s, |w| {
                if let Some(id) = p.subscription_identifier {
                    w.var(SUBSCRIPTION_IDENTIFIER, id)?;
                }
                w.users(&p.user_properties)
            })?;
        }
        for (filter, options) in &self.filters {
            put_str(s, filter.as_str())?;
            s.put_u8(options.encode(version));
        }
        Ok(())
    }
}

/// SUBACK: one reason code per filter, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: PacketId,
    /// MQTT 3 can carry only `Success` (QoS 0), `GrantedQos1`, `GrantedQos2` and
    /// `UnspecifiedError` (0x80); other failures are sent as 0x80.
    pub reason_codes: Vec<ReasonCode>,
    pub properties: AckProperties,
}

impl SubAck {
    pub(crate) fn decode(mut r: Reader, version: Version) -> Result<SubAck, DecodeError> {
        let packet_id = read_packet_id(&mut r)?;
        let properties = if version.is_v5() {
            AckProperties::decode(&mut r)?
        } else {
            Default::default()
        };
        let mut reason_codes = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            let code = read_reason_code(&mut r, ReasonPacket::SubAck)?;
            if !version.is_v5() && !is_v3_suback_code(code) {
                return Err(DecodeError::InvalidReasonCode {
                    packet: r.packet,
                    code: code as u8,
                });
            }
            reason_codes.push(code);
        }
        if reason_codes.is_empty() {
            return Err(DecodeError::Truncated {
                packet: r.packet,
                field: "reason codes",
            });
        }
        Ok(SubAck {
            packet_id,
            reason_codes,
            properties,
        })
    }

    pub(crate) fn emit(&self, version: Version, s: &mut impl Sink) -> Result<(), EncodeError> {
        if self.reason_codes.is_empty() {
            return Err(EncodeError::Empty { packet: "SUBACK" });
        }
        s.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.emit(s)?;
        }
        for &code in &self.reason_codes {
            let code = if version.is_v5() || is_v3_suback_code(code) {
                code
            } else {
                ReasonCode::UnspecifiedError
            };
            s.put_u8(code as u8);
        }
        Ok(())
    }
}

fn is_v3_suback_code(code: ReasonCode) -> bool {
    use ReasonCode::*;
    matches!(code, Success | GrantedQos1 | GrantedQos2 | UnspecifiedError)
}

/// UNSUBSCRIBE: one or more filters to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: PacketId,
    /// Never empty [MQTT-3.10.3-2].
    pub filters: Vec<TopicFilter>,
    /// MQTT 5 user properties, the only UNSUBSCRIBE property.
    pub user_properties: UserProperties,
}

impl Unsubscribe {
    pub(crate) fn decode(mut r: Reader, version: Version) -> Result<Unsubscribe, DecodeError> {
        let packet_id = read_packet_id(&mut r)?;
        let mut user_properties = UserProperties::new();
        if version.is_v5() {
            let mut pr = PropertyReader::new(&mut r)?;
            while let Some(id) = pr.next_id()? {
                match id {
                    USER_PROPERTY => pr.user_property(&mut user_properties)?,
                    _ => return Err(pr.unexpected()),
                }
            }
        }
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(read_filter(&mut r)?);
        }
        if filters.is_empty() {
            return Err(DecodeError::EmptyUnsubscribe);
        }
        Ok(Unsubscribe {
            packet_id,
            filters,
            user_properties,
        })
    }

    pub(crate) fn emit(&self, version: Version, s: &mut impl Sink) -> Result<(), EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::Empty {
                packet: "UNSUBSCRIBE",
            });
        }
        s.put_u16(self.packet_id.get());
        if version.is_v5() {
            put_properties(s, |w| w.users(&self.user_properties))?;
        }
        for filter in &self.filters {
            put_str(s, filter.as_str())?;
        }
        Ok(())
    }
}

/// UNSUBACK. MQTT 3 carries only the packet identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub packet_id: PacketId,
    /// MQTT 5: one per filter, in order. Empty for MQTT 3.
    pub reason_codes: Vec<ReasonCode>,
    pub properties: AckProperties,
}

impl UnsubAck {
    pub(crate) fn decode(mut r: Reader, version: Version) -> Result<UnsubAck, DecodeError> {
        let packet_id = read_packet_id(&mut r)?;
        let mut ack = UnsubAck {
            packet_id,
            reason_codes: Vec::new(),
            properties: Default::default(),
        };
        if version.is_v5() {
            ack.properties = AckProperties::decode(&mut r)?;
            while !r.is_empty() {
                ack.reason_codes
                    .push(read_reason_code(&mut r, ReasonPacket::UnsubAck)?);
            }
            if ack.reason_codes.is_empty() {
                return Err(DecodeError::Truncated {
                    packet: r.packet,
                    field: "reason codes",
                });
            }
        }
        r.finish()?;
        Ok(ack)
    }

    pub(crate) fn emit(&self, version: Version, s: &mut impl Sink) -> Result<(), EncodeError> {
        s.put_u16(self.packet_id.get());
        if version.is_v5() {
            if self.reason_codes.is_empty() {
                return Err(EncodeError::Empty { packet: "UNSUBACK" });
            }
            self.properties.emit(s)?;
            for &code in &self.reason_codes {
                s.put_u8(code as u8);
            }
        }
        Ok(())
    }
}
