//! Valid packets built from arbitrary bytes, for the round-trip fuzz target and
//! the round-trip tests: `decode(encode(p)) == p` for every packet made here.
//!
//! "Valid" means valid for the version: no MQTT 5 fields on MQTT 3 packets, no
//! Courier bits on MQTT 5, reason codes the packet may carry, and so on.

use ::arbitrary::{Result, Unstructured};
use bytes::Bytes;
use bytestring::ByteString;

use super::*;
use crate::topic::{TopicFilter, TopicName};

/// Any protocol version.
pub fn version(u: &mut Unstructured) -> Result<Version> {
    Ok(*u.choose(&[Version::V3_1, Version::V3_1_1, Version::V5])?)
}

/// A packet that is valid in `version` (a CONNECT also takes `version` as its own).
pub fn packet(u: &mut Unstructured, version: Version) -> Result<Packet> {
    let v5 = version.is_v5();
    let kind = u.int_in_range(1..=if v5 { 15 } else { 14 })?;
    Ok(match kind {
        1 => Packet::Connect(Box::new(connect(u, version)?)),
        2 => Packet::ConnAck(connack(u, version)?),
        3 => Packet::Publish(publish(u, version)?),
        4 => Packet::PubAck(ack(u, version, ReasonPacket::PubAck)?),
        5 => Packet::PubRec(ack(u, version, ReasonPacket::PubRec)?),
        6 => Packet::PubRel(ack(u, version, ReasonPacket::PubRel)?),
        7 => Packet::PubComp(ack(u, version, ReasonPacket::PubComp)?),
        8 => Packet::Subscribe(subscribe(u, version)?),
        9 => Packet::SubAck(suback(u, version)?),
        10 => Packet::Unsubscribe(Unsubscribe {
            packet_id: packet_id(u)?,
            filters: non_empty(u, topic_filter)?,
            user_properties: if v5 { user_properties(u)? } else { Vec::new() },
        }),
        11 => Packet::UnsubAck(UnsubAck {
            packet_id: packet_id(u)?,
            reason_codes: if v5 {
                non_empty(u, |u| reason(u, ReasonPacket::UnsubAck))?
            } else {
                Vec::new()
            },
            properties: if v5 {
                ack_properties(u)?
            } else {
                Default::default()
            },
        }),
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        14 => Packet::Disconnect(if v5 {
            Disconnect {
                reason_code: reason(u, ReasonPacket::Disconnect)?,
                properties: DisconnectProperties {
                    session_expiry_interval: u.arbitrary()?,
                    reason_string: opt(u, string)?,
                    user_properties: user_properties(u)?,
                    server_reference: opt(u, string)?,
                },
            }
        } else {
            Disconnect::default()
        }),
        _ => Packet::Auth(Auth {
            reason_code: reason(u, ReasonPacket::Auth)?,
            properties: AuthProperties {
                authentication_method: Some(string(u)?),
                authentication_data: opt(u, binary)?,
                reason_string: opt(u, string)?,
                user_properties: user_properties(u)?,
            },
        }),
    })
}

fn connect(u: &mut Unstructured, version: Version) -> Result<Connect> {
    let v5 = version.is_v5();
    let username = opt(u, string)?;
    // MQTT 3 allows a password only with a user name [MQTT-3.1.2-22].
    let password = if username.is_some() || v5 {
        opt(u, binary)?
    } else {
        None
    };
    let mut properties = ConnectProperties::default();
    if v5 {
        let method = opt(u, string)?;
        properties = ConnectProperties {
            session_expiry_interval: u.arbitrary()?,
            receive_maximum: opt(u, non_zero_u16)?,
            maximum_packet_size: opt(u, |u| u.int_in_range(1..=u32::MAX))?,
            topic_alias_maximum: u.arbitrary()?,
            request_response_information: u.arbitrary()?,
            request_problem_information: u.arbitrary()?,
            user_properties: user_properties(u)?,
            authentication_data: if method.is_some() {
                opt(u, binary)?
            } else {
                None
            },
            authentication_method: method,
        };
    } else if version == Version::V3_1_1 {
        // Courier's extension.
        properties.user_properties = user_properties(u)?;
    }
    let will = if u.arbitrary()? {
        Some(LastWill {
            qos: qos(u)?,
            retain: u.arbitrary()?,
            topic: topic_name(u)?,
            payload: binary(u)?,
            properties: if v5 {
                WillProperties {
                    will_delay_interval: u.arbitrary()?,
                    payload_format_indicator: u.arbitrary()?,
                    message_expiry_interval: u.arbitrary()?,
                    content_type: opt(u, string)?,
                    response_topic: opt(u, topic_name)?,
                    correlation_data: opt(u, binary)?,
                    user_properties: user_properties(u)?,
                }
            } else {
                Default::default()
            },
        })
    } else {
        None
    };
    Ok(Connect {
        version,
        clean_start: u.arbitrary()?,
        keep_alive: u.arbitrary()?,
        client_id: string(u)?,
        will,
        username,
        password,
        properties,
    })
}

fn connack(u: &mut Unstructured, version: Version) -> Result<ConnAck> {
    if !version.is_v5() {
        let code = u.int_in_range(0..=5)?;
        return Ok(ConnAck {
            session_present: version == Version::V3_1_1 && u.arbitrary()?,
            reason_code: ReasonCode::from_v3_connack(code).unwrap_or_default(),
            properties: Default::default(),
        });
    }
    let method = opt(u, string)?;
    Ok(ConnAck {
        session_present: u.arbitrary()?,
        reason_code: reason(u, ReasonPacket::ConnAck)?,
        properties: ConnAckProperties {
            session_expiry_interval: u.arbitrary()?,
            receive_maximum: opt(u, non_zero_u16)?,
            maximum_qos: opt(u, |u| Ok(*u.choose(&[QoS::AtMostOnce, QoS::AtLeastOnce])?))?,
            retain_available: u.arbitrary()?,
            maximum_packet_size: opt(u, |u| u.int_in_range(1..=u32::MAX))?,
            assigned_client_identifier: opt(u, string)?,
            topic_alias_maximum: u.arbitrary()?,
            reason_string: opt(u, string)?,
            user_properties: user_properties(u)?,
            wildcard_subscription_available: u.arbitrary()?,
            subscription_identifiers_available: u.arbitrary()?,
            shared_subscription_available: u.arbitrary()?,
            server_keep_alive: u.arbitrary()?,
            response_information: opt(u, string)?,
            server_reference: opt(u, string)?,
            authentication_data: if method.is_some() {
                opt(u, binary)?
            } else {
                None
            },
            authentication_method: method,
        },
    })
}

fn publish(u: &mut Unstructured, version: Version) -> Result<Publish> {
    let qos = qos(u)?;
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(packet_id(u)?)
    };
    let mut properties = PublishProperties::default();
    let mut topic = topic_name(u)?;
    if version.is_v5() {
        properties = PublishProperties {
            payload_format_indicator: u.arbitrary()?,
            message_expiry_interval: u.arbitrary()?,
            topic_alias: opt(u, non_zero_u16)?,
            response_topic: opt(u, topic_name)?,
            correlation_data: opt(u, binary)?,
            user_properties: user_properties(u)?,
            subscription_identifiers: u
                .arbitrary_iter::<u32>()?
                .take(3)
                .map(|id| id.map(|id| id % MAX_SUBSCRIPTION_ID + 1))
                .collect::<Result<_>>()?,
            content_type: opt(u, string)?,
        };
        if properties.topic_alias.is_some() && u.arbitrary()? {
            topic = TopicName::alias_only();
        }
    }
    Ok(Publish {
        dup: qos != QoS::AtMostOnce && u.arbitrary()?,
        qos,
        retain: u.arbitrary()?,
        topic,
        packet_id,
        payload: Bytes::from(u.arbitrary::<Vec<u8>>()?),
        properties,
    })
}

fn ack(u: &mut Unstructured, version: Version, kind: ReasonPacket) -> Result<Ack> {
    let mut ack = Ack::new(packet_id(u)?);
    if version.is_v5() {
        ack.reason_code = reason(u, kind)?;
        ack.properties = ack_properties(u)?;
    }
    Ok(ack)
}

fn subscribe(u: &mut Unstructured, version: Version) -> Result<Subscribe> {
    let filters = non_empty(u, |u| {
        let filter = topic_filter(u)?;
        let mut o = SubscriptionOptions {
            qos: qos(u)?,
            ..Default::default()
        };
        match version {
            Version::V5 => {
                o.no_local = filter.share_group().is_none() && u.arbitrary()?;
                o.retain_as_published = u.arbitrary()?;
                o.retain_handling = *u.choose(&[
                    RetainHandling::OnSubscribe,
                    RetainHandling::OnNewSubscribe,
                    RetainHandling::Never,
                ])?;
            }
            Version::V3_1_1 => {
                o.non_retry = u.arbitrary()?;
                o.non_persistence = u.arbitrary()?;
            }
            Version::V3_1 => {}
        }
        Ok((filter, o))
    })?;
    let properties = if version.is_v5() {
        SubscribeProperties {
            subscription_identifier: opt(u, |u| u.int_in_range(1..=MAX_SUBSCRIPTION_ID))?,
            user_properties: user_properties(u)?,
        }
    } else {
        Default::default()
    };
    Ok(Subscribe {
        packet_id: packet_id(u)?,
        filters,
        properties,
    })
}

fn suback(u: &mut Unstructured, version: Version) -> Result<SubAck> {
    let v3_codes = [
        ReasonCode::Success,
        ReasonCode::GrantedQos1,
        ReasonCode::GrantedQos2,
        ReasonCode::UnspecifiedError,
    ];
    let reason_codes = if version.is_v5() {
        non_empty(u, |u| reason(u, ReasonPacket::SubAck))?
    } else {
        non_empty(u, |u| Ok(*u.choose(&v3_codes)?))?
    };
    Ok(SubAck {
        packet_id: packet_id(u)?,
        reason_codes,
        properties: if version.is_v5() {
            ack_properties(u)?
        } else {
            Default::default()
        },
    })
}

fn ack_properties(u: &mut Unstructured) -> Result<AckProperties> {
    Ok(AckProperties {
        reason_string: opt(u, string)?,
        user_properties: user_properties(u)?,
    })
}

fn reason(u: &mut Unstructured, kind: ReasonPacket) -> Result<ReasonCode> {
    let allowed: Vec<ReasonCode> = (0..=255)
        .filter_map(ReasonCode::from_u8)
        .filter(|c| c.allowed_in(kind))
        .collect();
    Ok(*u.choose(&allowed)?)
}

fn qos(u: &mut Unstructured) -> Result<QoS> {
    Ok(*u.choose(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])?)
}

fn packet_id(u: &mut Unstructured) -> Result<PacketId> {
    Ok(PacketId::new(u.int_in_range(1..=u16::MAX)?).unwrap_or(PacketId::MIN))
}

fn non_zero_u16(u: &mut Unstructured) -> Result<u16> {
    u.int_in_range(1..=u16::MAX)
}

fn opt<T>(
    u: &mut Unstructured,
    f: impl FnOnce(&mut Unstructured) -> Result<T>,
) -> Result<Option<T>> {
    if u.arbitrary()? {
        Ok(Some(f(u)?))
    } else {
        Ok(None)
    }
}

/// One to four items.
fn non_empty<T>(
    u: &mut Unstructured,
    mut f: impl FnMut(&mut Unstructured) -> Result<T>,
) -> Result<Vec<T>> {
    let n = u.int_in_range(1..=4)?;
    (0..n).map(|_| f(u)).collect()
}

/// A string without U+0000, which MQTT strings may not carry.
fn string(u: &mut Unstructured) -> Result<ByteString> {
    let s: String = u.arbitrary()?;
    Ok(ByteString::from(s.replace('\0', "")))
}

fn binary(u: &mut Unstructured) -> Result<Bytes> {
    Ok(Bytes::from(u.arbitrary::<Vec<u8>>()?))
}

fn user_properties(u: &mut Unstructured) -> Result<UserProperties> {
    let n = u.int_in_range(0..=2)?;
    (0..n).map(|_| Ok((string(u)?, string(u)?))).collect()
}

const LEVELS: &[&str] = &["a", "b", "", "$SYS", "dev-1", "ü", "x y"];

fn topic_name(u: &mut Unstructured) -> Result<TopicName> {
    let n = u.int_in_range(1..=4)?;
    let levels: Vec<&str> = (0..n)
        .map(|_| u.choose(LEVELS).copied())
        .collect::<Result<_>>()?;
    let name = levels.join("/");
    Ok(TopicName::new(if name.is_empty() {
        "/".to_owned()
    } else {
        name
    })
    .unwrap_or_else(|_| TopicName::new("a").expect("'a' is a valid topic name")))
}

fn topic_filter(u: &mut Unstructured) -> Result<TopicFilter> {
    let n = u.int_in_range(1..=4)?;
    let mut levels: Vec<&str> = Vec::with_capacity(n + 1);
    for _ in 0..n {
        levels.push(*u.choose(&["a", "", "+", "$SYS", "dev-1"])?);
    }
    if u.arbitrary()? {
        levels.push("#");
    }
    let mut filter = levels.join("/");
    if filter.is_empty() {
        filter.push('+');
    }
    if u.ratio(1, 4)? {
        filter = format!("$share/{}/{filter}", u.choose(&["g1", "group-2"])?);
    }
    Ok(TopicFilter::new(filter)
        .unwrap_or_else(|_| TopicFilter::new("a").expect("'a' is a valid topic filter")))
}
