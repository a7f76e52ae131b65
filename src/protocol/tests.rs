//! Properties of the codec as a whole: round trips, incremental decoding, size
//! limits. Byte-literal fixtures per packet live in `fixtures.rs` and
//! `malformed.rs`.

use arbitrary::Unstructured;
use bytes::BytesMut;

use super::*;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 as u8
            })
            .collect()
    }
}

fn round_trip(packet: &Packet, version: Version) {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).expect("generated packets encode");
    assert_eq!(encoded_len(packet, version).unwrap(), buf.len());
    let wire = buf.clone();
    let decoded = decode(&mut buf, version, MAX_PACKET_SIZE)
        .unwrap_or_else(|e| panic!("{e} decoding {packet:?} from {wire:x?}"))
        .expect("a whole packet");
    assert_eq!(&decoded, packet, "wire: {wire:x?}");
    assert!(buf.is_empty());
}

#[test]
fn generated_packets_round_trip_in_every_version() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut kinds = std::collections::HashSet::new();
    for _ in 0..20_000 {
        let data = rng.bytes(256);
        let mut u = Unstructured::new(&data);
        let Ok(version) = generate::version(&mut u) else {
            continue;
        };
        let Ok(packet) = generate::packet(&mut u, version) else {
            continue;
        };
        kinds.insert((packet.name(), version));
        round_trip(&packet, version);
    }
    // 14 packet types in three versions, plus AUTH in MQTT 5.
    assert_eq!(
        kinds.len(),
        14 * 3 + 1,
        "not every packet was generated: {kinds:?}"
    );
}

#[test]
fn decoding_is_incremental_at_every_split() {
    let mut rng = Rng(42);
    for _ in 0..500 {
        let data = rng.bytes(200);
        let mut u = Unstructured::new(&data);
        let Ok(version) = generate::version(&mut u) else {
            continue;
        };
        let Ok(packet) = generate::packet(&mut u, version) else {
            continue;
        };
        let mut wire = BytesMut::new();
        encode(&packet, version, &mut wire).unwrap();
        for split in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..split]);
            assert_eq!(
                decode(&mut buf, version, MAX_PACKET_SIZE),
                Ok(None),
                "split {split}"
            );
            buf.extend_from_slice(&wire[split..]);
            assert!(decode(&mut buf, version, MAX_PACKET_SIZE)
                .unwrap()
                .is_some());
        }
    }
}

#[test]
fn two_packets_in_one_buffer_decode_in_order() {
    let mut buf = BytesMut::new();
    encode(&Packet::PingReq, Version::V3_1_1, &mut buf).unwrap();
    encode(&Packet::PingResp, Version::V3_1_1, &mut buf).unwrap();
    buf.extend_from_slice(&[0xc0]); // the start of a third
    assert_eq!(
        decode(&mut buf, Version::V3_1_1, 100),
        Ok(Some(Packet::PingReq))
    );
    assert_eq!(
        decode(&mut buf, Version::V3_1_1, 100),
        Ok(Some(Packet::PingResp))
    );
    assert_eq!(decode(&mut buf, Version::V3_1_1, 100), Ok(None));
    assert_eq!(&buf[..], &[0xc0]);
}

#[test]
fn oversized_packet_is_refused_before_reserving() {
    // PUBLISH declaring 268435455 bytes: refused from the 5 header bytes alone.
    let mut buf = BytesMut::from(&[0x30, 0xff, 0xff, 0xff, 0x7f][..]);
    let capacity = buf.capacity();
    assert_eq!(
        decode(&mut buf, Version::V5, 1024),
        Err(DecodeError::PacketTooLarge {
            size: MAX_PACKET_SIZE,
            max: 1024
        })
    );
    assert_eq!(buf.capacity(), capacity);
    // Exactly at the limit is fine: a 1024-byte packet has a 3-byte header.
    let mut buf = BytesMut::from(&[0x30, 0xfd, 0x07][..]);
    assert_eq!(decode(&mut buf, Version::V5, 1024), Ok(None));
    let mut buf = BytesMut::from(&[0x30, 0xfe, 0x07][..]);
    assert!(matches!(
        decode(&mut buf, Version::V5, 1024),
        Err(DecodeError::PacketTooLarge { .. })
    ));
}

#[test]
fn payload_is_a_view_of_the_read_buffer() {
    let mut buf = BytesMut::from(&b"\x30\x07\x00\x01tpayl"[..]);
    let base = buf.as_ptr() as usize;
    let Some(Packet::Publish(p)) = decode(&mut buf, Version::V3_1_1, 100).unwrap() else {
        panic!("not a publish")
    };
    assert_eq!(&p.payload[..], b"payl");
    assert_eq!(p.payload.as_ptr() as usize, base + 5, "payload was copied");
}

#[test]
fn publish_encoded_len_matches_encode() {
    let mut rng = Rng(7);
    let mut checked = 0;
    for _ in 0..2_000 {
        let data = rng.bytes(256);
        let mut u = Unstructured::new(&data);
        let Ok(version) = generate::version(&mut u) else {
            continue;
        };
        let Ok(Packet::Publish(p)) = generate::packet(&mut u, version) else {
            continue;
        };
        let mut buf = BytesMut::new();
        encode(&Packet::Publish(p.clone()), version, &mut buf).unwrap();
        assert_eq!(publish_encoded_len(&p, version), Ok(buf.len()));
        checked += 1;
    }
    assert!(checked > 50, "too few PUBLISH packets generated: {checked}");
}
