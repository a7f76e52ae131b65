//! The fixed header, and the entry points [`decode`] and [`encode`].

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::read::{parse_var_int, Reader};
use super::write::{put_var_int, var_int_len, Counter, Sink};
use super::{
    Ack, Auth, ConnAck, Connect, DecodeError, Disconnect, EncodeError, Packet, Publish,
    ReasonPacket, SubAck, Subscribe, UnsubAck, Unsubscribe, Version,
};

/// Decodes one packet from the front of `buf`.
///
/// - `Ok(Some(packet))`: the packet's bytes have been taken off `buf`.
/// - `Ok(None)`: `buf` holds only part of a packet; read more and call again.
///   Room for the rest has been reserved, since its size is known and allowed.
/// - `Err(e)`: the peer broke the protocol; the connection should be closed.
///
/// `version` is the connection's protocol version; a CONNECT carries its own.
/// A packet whose declared size exceeds `max_packet_size` is refused as soon as
/// its length is known, before anything is reserved for it.
pub fn decode(
    buf: &mut BytesMut,
    version: Version,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&header) = buf.first() else {
        return Ok(None);
    };
    let Some((remaining, len_len)) = parse_var_int(&buf[1..])? else {
        return Ok(None);
    };
    let size = 1 + len_len + remaining as usize;
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        buf.reserve(size - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(size).freeze();
    frame.advance(1 + len_len);
    decode_body(header, frame, version).map(Some)
}

fn decode_body(header: u8, body: Bytes, version: Version) -> Result<Packet, DecodeError> {
    let flags = header & 0x0f;
    let kind = header >> 4;
    let name = packet_name(kind);
    check_flags(kind, flags, version, name)?;
    let r = Reader::new(body, name);
    Ok(match kind {
        1 => Packet::Connect(Box::new(Connect::decode(r)?)),
        2 => Packet::ConnAck(ConnAck::decode(r, version)?),
        3 => Packet::Publish(Publish::decode(r, flags, version)?),
        4 => Packet::PubAck(Ack::decode(r, ReasonPacket::PubAck, version)?),
        5 => Packet::PubRec(Ack::decode(r, ReasonPacket::PubRec, version)?),
        6 => Packet::PubRel(Ack::decode(r, ReasonPacket::PubRel, version)?),
        7 => Packet::PubComp(Ack::decode(r, ReasonPacket::PubComp, version)?),
        8 => Packet::Subscribe(Subscribe::decode(r, version)?),
        9 => Packet::SubAck(SubAck::decode(r, version)?),
        10 => Packet::Unsubscribe(Unsubscribe::decode(r, version)?),
        11 => Packet::UnsubAck(UnsubAck::decode(r, version)?),
        12 | 13 => {
            if !r.is_empty() {
                return Err(DecodeError::InvalidRemainingLength {
                    packet: name,
                    expected: "0",
                    actual: r.remaining(),
                });
            }
            if kind == 12 {
                Packet::PingReq
            } else {
                Packet::PingResp
            }
        }
        14 => {
            if !version.is_v5() && !r.is_empty() {
                return Err(DecodeError::InvalidRemainingLength {
                    packet: name,
                    expected: "0 before MQTT 5",
                    actual: r.remaining(),
                });
            }
            Packet::Disconnect(Disconnect::decode(r, version)?)
        }
        15 => Packet::Auth(Auth::decode(r)?),
        _ => return Err(DecodeError::ReservedPacketType),
    })
}

fn packet_name(kind: u8) -> &'static str {
    const NAMES: [&str; 16] = [
        "reserved packet type 0",
        "CONNECT",
        "CONNACK",
        "PUBLISH",
        "PUBACK",
        "PUBREC",
        "PUBREL",
        "PUBCOMP",
        "SUBSCRIBE",
        "SUBACK",
        "UNSUBSCRIBE",
        "UNSUBACK",
        "PINGREQ",
        "PINGRESP",
        "DISCONNECT",
        "AUTH",
    ];
    NAMES[usize::from(kind & 0x0f)]
}

/// Checks the fixed header's flag bits [MQTT-2.1.3-1]. PUBLISH flags are
/// checked by [`Publish::decode`].
fn check_flags(
    kind: u8,
    flags: u8,
    version: Version,
    name: &'static str,
) -> Result<(), DecodeError> {
    let ok = match kind {
        0 => return Err(DecodeError::ReservedPacketType),
        15 if !version.is_v5() => return Err(DecodeError::AuthBeforeV5),
        3 => true,
        // MQTT 3.1 let clients set DUP on a resent PUBREL, SUBSCRIBE or UNSUBSCRIBE.
        6 | 8 | 10 => flags == 0x02 || (version == Version::V3_1 && flags == 0x0a),
        _ => flags == 0,
    };
    if !ok {
        return Err(DecodeError::InvalidHeaderFlags {
            packet: name,
            flags,
        });
    }
    Ok(())
}

/// Appends `packet`, encoded for a peer speaking `version`, to `buf`.
///
/// A CONNECT is encoded in its own version. MQTT 5-only fields are left out for
/// MQTT 3 peers. On error nothing is appended.
pub fn encode(packet: &Packet, version: Version, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let remaining = body_len(packet, version)?;
    buf.reserve(1 + var_int_len(remaining) + remaining);
    BufMut::put_u8(buf, header_byte(packet));
    put_var_int(buf, remaining)?;
    emit_body(packet, version, buf)
}

/// The number of bytes [`encode`] would append: for checking a peer's maximum
/// packet size before sending.
pub fn encoded_len(packet: &Packet, version: Version) -> Result<usize, EncodeError> {
    let remaining = body_len(packet, version)?;
    Ok(1 + var_int_len(remaining) + remaining)
}

/// [`encoded_len`] of a PUBLISH, without wrapping it in a [`Packet`] (which
/// would take a clone): the broker checks every delivery against the client's
/// maximum packet size.
pub fn publish_encoded_len(publish: &Publish, version: Version) -> Result<usize, EncodeError> {
    let mut counter = Counter::default();
    publish.emit(version, &mut counter)?;
    if counter.0 > super::MAX_VAR_INT {
        return Err(EncodeError::VarIntTooLarge(counter.0));
    }
    Ok(1 + var_int_len(counter.0) + counter.0)
}

fn body_len(packet: &Packet, version: Version) -> Result<usize, EncodeError> {
    if matches!(packet, Packet::Auth(_)) && !version.is_v5() {
        return Err(EncodeError::NotInVersion {
            packet: "AUTH",
            version: version.name(),
        });
    }
    let mut counter = Counter::default();
    emit_body(packet, version, &mut counter)?;
    if counter.0 > super::MAX_VAR_INT {
        return Err(EncodeError::VarIntTooLarge(counter.0));
    }
    Ok(counter.0)
}

fn header_byte(packet: &Packet) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => 0x30 | p.flags(),
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xa2,
        Packet::UnsubAck(_) => 0xb0,
        Packet::PingReq => 0xc0,
        Packet::PingResp => 0xd0,
        Packet::Disconnect(_) => 0xe0,
        Packet::Auth(_) => 0xf0,
    }
}

fn emit_body(packet: &Packet, version: Version, s: &mut impl Sink) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect(c) => c.emit(s),
        Packet::ConnAck(c) => c.emit(version, s),
        Packet::Publish(p) => p.emit(version, s),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            a.emit(version, s)
        }
        Packet::Subscribe(p) => p.emit(version, s),
        Packet::SubAck(p) => p.emit(version, s),
        Packet::Unsubscribe(p) => p.emit(version, s),
        Packet::UnsubAck(p) => p.emit(version, s),
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(d) => d.emit(version, s),
        Packet::Auth(a) => a.emit(s),
    }
}
