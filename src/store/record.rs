//! How a session's parts are written as Redis values: compact bytes, decoded
//! without trusting them (another version of the broker, or a person with
//! redis-cli, may have written them).
//!
//! A message (a retained one, or a will) is the MQTT 5 PUBLISH packet it would
//! be sent as, through the broker's own codec: every property survives, and
//! there is one format to keep compatible, not two.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::message::Message;
use crate::protocol::{
    decode, encode, Packet, PacketId, Publish, QoS, RetainHandling, SubscriptionOptions, Version,
};
use crate::session::{Delivery, Subscription};
use crate::topic::TopicFilter;

/// A stored value that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("a stored subscription of {0} bytes is malformed")]
    Subscription(usize),
    #[error("a stored message is not an MQTT 5 PUBLISH ({0})")]
    Message(String),
}

/// The largest stored message decoded: MQTT's own packet size limit.
const MAX_RECORD: usize = crate::protocol::MAX_PACKET_SIZE;

/// `[options, courier bits]`, then the subscription identifier (4 bytes, big
/// endian) if it has one. Options as in an MQTT 5 SUBSCRIBE: QoS in bits 0-1,
/// no-local bit 2, retain-as-published bit 3, retain handling bits 4-5.
pub fn encode_subscription(sub: &Subscription) -> Bytes {
    let o = &sub.options;
    let mut buf = BytesMut::with_capacity(6);
    buf.put_u8(
        o.qos as u8
            | u8::from(o.no_local) << 2
            | u8::from(o.retain_as_published) << 3
            | (o.retain_handling as u8) << 4,
    );
    buf.put_u8(u8::from(o.non_retry) | u8::from(o.non_persistence) << 1);
    if let Some(id) = sub.id {
        buf.put_u32(id);
    }
    buf.freeze()
}

pub fn decode_subscription(bytes: &[u8]) -> Result<Subscription, RecordError> {
    let bad = || RecordError::Subscription(bytes.len());
    let (options, courier, id) = match *bytes {
        [o, c] => (o, c, None),
        [o, c, a, b, d, e] => (o, c, Some(u32::from_be_bytes([a, b, d, e]))),
        _ => return Err(bad()),
    };
    let qos = QoS::from_u8(options & 0x03).ok_or_else(bad)?;
    let retain_handling = match (options >> 4) & 0x03 {
        0 => RetainHandling::OnSubscribe,
        1 => RetainHandling::OnNewSubscribe,
        2 => RetainHandling::Never,
        _ => return Err(bad()),
    };
    if options & 0xc0 != 0 || courier & !0x03 != 0 {
        return Err(bad());
    }
    Ok(Subscription {
        options: SubscriptionOptions {
            qos,
            no_local: options & 0x04 != 0,
            retain_as_published: options & 0x08 != 0,
            retain_handling,
            non_retry: courier & 0x01 != 0,
            non_persistence: courier & 0x02 != 0,
        },
        id,
    })
}

/// `message` as the PUBLISH a v5 subscriber would get at `now`: the expiry
/// interval is what is left of it.
pub fn encode_message(message: &Message, now: Instant) -> Bytes {
    let mut buf = BytesMut::new();
    put_publish(&mut buf, message, message.qos, message.retain, &[], now);
    buf.freeze()
}

/// Appends `message` as an MQTT 5 PUBLISH with this QoS, RETAIN and
/// subscription identifiers, its expiry interval what is left at `now`.
fn put_publish(
    buf: &mut BytesMut,
    message: &Message,
    qos: QoS,
    retain: bool,
    subscription_ids: &[u32],
    now: Instant,
) {
    let mut properties = message.properties.as_deref().cloned().unwrap_or_default();
    properties.message_expiry_interval = message.expiry_left(now);
    properties.subscription_identifiers = subscription_ids.to_vec();
    let publish = Publish {
        dup: false,
        qos,
        retain,
        topic: message.topic.clone(),
        packet_id: (qos != QoS::AtMostOnce).then_some(PacketId::MIN),
        payload: message.payload.clone(),
        properties,
    };
    // A message the broker accepted always encodes: its parts came through
    // the same codec. Were one not to, the record is empty, and decoding it
    // reports it instead of storing half a packet.
    if encode(&Packet::Publish(publish), Version::V5, buf).is_err() {
        buf.clear();
    }
}

/// A stored message, as if `publisher` had just published it at `now`.
pub fn decode_message(
    bytes: &[u8],
    publisher: &ByteString,
    now: Instant,
) -> Result<Message, RecordError> {
    let mut buf = BytesMut::from(bytes);
    match decode(&mut buf, Version::V5, MAX_RECORD) {
        Ok(Some(Packet::Publish(publish))) if buf.is_empty() => {
            Ok(Message::from_publish(&publish, publisher, now))
        }
        Ok(Some(_)) => Err(RecordError::Message("another packet type".into())),
        Ok(None) => Err(RecordError::Message("truncated".into())),
        Err(e) => Err(RecordError::Message(e.to_string())),
    }
}

/// A delivery queued for a session (`durability = "messages"`): a flags
/// byte (bit 0 non_retry, bit 1 share group follows), the share group (2
/// bytes of length, big endian, then the filter) if it has one, then the
/// PUBLISH as the subscriber gets it (its QoS, RETAIN and subscription
/// identifiers) in MQTT 5. The Courier non_persistence bit is not kept: such
/// a delivery is never stored.
pub fn encode_delivery(delivery: &Delivery, now: Instant) -> Bytes {
    let mut buf = BytesMut::new();
    let group = delivery.share_group.as_ref().map(|g| g.as_str().as_bytes());
    buf.put_u8(u8::from(delivery.non_retry) | u8::from(group.is_some()) << 1);
    if let Some(group) = group {
        // A filter is at most 65,535 bytes: MQTT's own string limit.
        buf.put_u16(group.len() as u16);
        buf.extend_from_slice(group);
    }
    let (message, qos, retain) = (&delivery.message, delivery.qos, delivery.retain);
    put_publish(
        &mut buf,
        message,
        qos,
        retain,
        &delivery.subscription_ids,
        now,
    );
    buf.freeze()
}

/// A stored delivery, with `stored` as its number in the session's queue.
pub fn decode_delivery(bytes: &[u8], stored: u64, now: Instant) -> Result<Delivery, RecordError> {
    let bad = |why: &str| RecordError::Message(why.into());
    let (&flags, rest) = bytes.split_first().ok_or_else(|| bad("empty"))?;
    if flags & !0x03 != 0 {
        return Err(bad("unknown flags"));
    }
    let (share_group, rest) = if flags & 0x02 != 0 {
        let (len, rest) = rest
            .split_first_chunk::<2>()
            .ok_or_else(|| bad("truncated"))?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < len {
            return Err(bad("truncated"));
        }
        let (group, rest) = rest.split_at(len);
        let group = std::str::from_utf8(group)
            .ok()
            .and_then(|g| TopicFilter::new(g.to_owned()).ok())
            .ok_or_else(|| bad("bad share group"))?;
        (Some(group), rest)
    } else {
        (None, rest)
    };
    let mut buf = BytesMut::from(rest);
    let publish = match decode(&mut buf, Version::V5, MAX_RECORD) {
        Ok(Some(Packet::Publish(publish))) if buf.is_empty() => publish,
        Ok(Some(_)) => return Err(bad("another packet type")),
        Ok(None) => return Err(bad("truncated")),
        Err(e) => return Err(RecordError::Message(e.to_string())),
    };
    let subscription_ids = publish.properties.subscription_identifiers.clone();
    Ok(Delivery {
        message: Message::from_publish(&publish, &ByteString::new(), now),
        qos: publish.qos,
        retain: publish.retain,
        subscription_ids,
        non_retry: flags & 0x01 != 0,
        non_persistence: false,
        share_group,
        stored: Some(stored),
    })
}

/// A will: its delay (4 bytes, big endian, seconds), then its message.
pub fn encode_will(delay: u32, message: &Message, now: Instant) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_u32(delay);
    buf.extend_from_slice(&encode_message(message, now));
    buf.freeze()
}

pub fn decode_will(
    bytes: &[u8],
    publisher: &ByteString,
    now: Instant,
) -> Result<(u32, Message), RecordError> {
    let Some((delay, message)) = bytes.split_first_chunk::<4>() else {
        return Err(RecordError::Message("truncated".into()));
    };
    Ok((
        u32::from_be_bytes(*delay),
        decode_message(message, publisher, now)?,
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::protocol::PublishProperties;
    use crate::topic::TopicName;

    #[test]
    fn subscriptions_round_trip() {
        let all = [
            SubscriptionOptions::default(),
            SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::Never,
                non_retry: true,
                non_persistence: true,
            },
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                retain_handling: RetainHandling::OnNewSubscribe,
                non_persistence: true,
                ..Default::default()
            },
        ];
        for options in all {
            for id in [None, Some(1), Some(268_435_455)] {
                let sub = Subscription { options, id };
                let bytes = encode_subscription(&sub);
                assert_eq!(decode_subscription(&bytes), Ok(sub), "{bytes:?}");
            }
        }
    }

    #[test]
    fn malformed_subscriptions_are_refused() {
        for bad in [
            &[][..],
            &[0],
            &[3, 0],
            &[0x30, 0],
            &[0x40, 0],
            &[0, 4],
            &[0, 0, 1],
        ] {
            assert_eq!(
                decode_subscription(bad),
                Err(RecordError::Subscription(bad.len())),
                "{bad:?}"
            );
        }
    }

    fn message(qos: QoS) -> Message {
        Message {
            topic: TopicName::new("a/b").unwrap(),
            payload: Bytes::from_static(b"hello"),
            qos,
            retain: true,
            properties: Some(Arc::new(PublishProperties {
                content_type: Some("text/plain".into()),
                user_properties: vec![("k".into(), "v".into())],
                ..Default::default()
            })),
            publisher: "p".into(),
            expires_at: None,
            id: None,
        }
    }

    #[test]
    fn messages_and_wills_round_trip_with_their_properties() {
        let now = Instant::now();
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let m = message(qos);
            let back = decode_message(&encode_message(&m, now), &"p".into(), now).unwrap();
            assert_eq!(back, m);
            let (delay, will) = decode_will(&encode_will(30, &m, now), &"p".into(), now).unwrap();
            assert_eq!((delay, will), (30, m));
        }
    }

    #[test]
    fn deliveries_round_trip() {
        let now = Instant::now();
        let base = Delivery {
            message: message(QoS::ExactlyOnce),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![7, 9],
            non_retry: true,
            non_persistence: false,
            share_group: Some(TopicFilter::new("$share/g/a/+".to_owned()).unwrap()),
            stored: Some(42),
        };
        let plain = Delivery {
            qos: QoS::ExactlyOnce,
            retain: true,
            subscription_ids: Vec::new(),
            non_retry: false,
            share_group: None,
            stored: Some(1),
            ..base.clone()
        };
        for d in [base, plain] {
            let mut back = decode_delivery(&encode_delivery(&d, now), d.stored.unwrap(), now)
                .expect("decodes");
            // The publisher is not kept: no-local was applied when it was routed.
            back.message.publisher = d.message.publisher.clone();
            // The message's QoS and RETAIN are the delivery's once stored.
            back.message.qos = d.message.qos;
            back.message.retain = d.message.retain;
            assert_eq!(back, d);
        }
    }

    #[test]
    fn malformed_deliveries_are_errors() {
        let now = Instant::now();
        for bad in [
            &b""[..],
            b"\x04",
            b"\x02\x00",
            b"\x02\x00\x05ab",
            b"\x00\x30\x05",
        ] {
            assert!(decode_delivery(bad, 1, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_expiry_left_is_kept() {
        let now = Instant::now();
        let mut m = message(QoS::AtLeastOnce);
        m.expires_at = Some(now + Duration::from_millis(9_500));
        let later = now + Duration::from_secs(3);
        let back = decode_message(&encode_message(&m, now), &"p".into(), later).unwrap();
        // 9.5 s rounds up to 10 s, counted again from `later`.
        assert_eq!(back.expires_at, Some(later + Duration::from_secs(10)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let now = Instant::now();
        let p = ByteString::from("p");
        assert!(decode_message(b"", &p, now).is_err());
        assert!(decode_message(b"\x30\x05\x00", &p, now).is_err());
        assert!(decode_message(b"\xc0\x00", &p, now).is_err());
        assert!(decode_will(b"\x00\x00", &p, now).is_err());
        let mut good = encode_message(&message(QoS::AtMostOnce), now).to_vec();
        good.push(0);
        assert!(decode_message(&good, &p, now).is_err(), "trailing bytes");
    }
}
