use proptest::prelude::*;

use super::*;

fn owner() -> impl Strategy<Value = Owner> {
    ("[a-z0-9:]{0,8}", any::<u64>()).prop_map(|(node, boot)| Owner { node, boot })
}

fn publish() -> impl Strategy<Value = Publish> {
    (
        owner(),
        any::<u64>(),
        "\\PC{0,12}",
        proptest::collection::vec(any::<u8>(), 0..20),
        0u8..3,
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..6),
    )
        .prop_map(|(origin, id, topic, payload, qos, retain, props)| Publish {
            origin,
            id,
            topic,
            payload: payload.into(),
            qos,
            retain,
            properties: props.into(),
        })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        publish().prop_map(Message::Publish),
        any::<u64>().prop_map(|id| Message::Accepted { id }),
        ("\\PC{0,10}", any::<u64>(), owner()).prop_map(|(client_id, generation, new_owner)| {
            Message::Takeover {
                client_id,
                generation,
                new_owner,
            }
        }),
        (
            "\\PC{0,10}",
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..10),
            proptest::collection::vec((any::<bool>(), publish()), 0..4),
        )
            .prop_map(
                |(client_id, generation, subs, messages)| Message::HandOver {
                    client_id,
                    generation,
                    subscriptions: subs.into(),
                    messages: messages
                        .into_iter()
                        .map(|(inflight, publish)| Queued { inflight, publish })
                        .collect(),
                }
            ),
        ("\\PC{0,10}", any::<u64>()).prop_map(|(client_id, generation)| {
            Message::HandOverDone {
                client_id,
                generation,
            }
        }),
        (
            proptest::collection::vec("\\PC{0,10}", 0..3),
            "\\PC{0,10}",
            proptest::collection::vec(any::<u8>(), 0..20),
            any::<(u64, u64)>(),
            proptest::option::of(any::<(u16, u64, bool)>()),
        )
            .prop_map(|(groups, publisher, message, (shard, seq), credit_to)| {
                Message::Route {
                    groups,
                    publisher,
                    message: message.into(),
                    id: MessageId { shard, seq },
                    credit_to: credit_to.map(|(shard, conn, low_on_credit)| CreditTo {
                        shard,
                        conn,
                        low_on_credit,
                    }),
                }
            }),
        (
            any::<u16>(),
            proptest::collection::vec(any::<(u64, u32)>(), 0..4)
        )
            .prop_map(|(shard, credits)| Message::Credit { shard, credits }),
        (any::<u16>(), any::<u64>()).prop_map(|(shard, ticket)| Message::Barrier { shard, ticket }),
        (
            "\\PC{0,10}",
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..20),
            proptest::option::of(any::<(u64, u64)>()),
            (0u8..3, 1u16..),
        )
            .prop_map(|(client_id, generation, delivery, id, (kind, packet_id))| {
                Message::Deliver {
                    client_id,
                    generation,
                    delivery: delivery.into(),
                    id: id.map(|(shard, seq)| MessageId { shard, seq }),
                    state: match (kind, PacketId::new(packet_id).expect("not 0")) {
                        (0, _) => StoredState::Queued,
                        (1, p) => StoredState::Sent(p),
                        (_, p) => StoredState::Released(p),
                    },
                }
            }),
        (any::<u16>(), any::<u64>(), any::<bool>()).prop_map(|(shard, ticket, stored)| {
            Message::Stored {
                shard,
                ticket,
                stored,
            }
        }),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (any::<u64>(), proptest::collection::vec(message(), 0..5)).prop_map(
            |(first_seq, messages)| Frame::Batch {
                first_seq,
                messages
            }
        ),
        (any::<u64>(), any::<u32>()).prop_map(|(acked, window)| Frame::Credit { acked, window }),
        any::<u64>().prop_map(|nonce| Frame::Ping { nonce }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// decode(encode(f)) == f, also when the bytes arrive one at a time, and
    /// with a second frame already behind the first.
    #[test]
    fn frames_round_trip(f in frame(), g in frame()) {
        let mut buf = BytesMut::new();
        f.encode(&mut buf);
        let whole = buf.clone();
        g.encode(&mut buf);
        for cut in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..cut]);
            prop_assert_eq!(decode(&mut part, MAX_FRAME), Ok(None));
        }
        prop_assert_eq!(decode(&mut buf, MAX_FRAME), Ok(Some(f)));
        prop_assert_eq!(decode(&mut buf, MAX_FRAME), Ok(Some(g)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn hellos_round_trip(node in "\\PC{0,20}", boot in any::<u64>()) {
        let hello = Hello { version: VERSION, node, boot };
        let mut buf = BytesMut::new();
        hello.encode(&mut buf);
        let whole = buf.clone();
        for cut in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..cut]);
            prop_assert_eq!(Hello::decode(&mut part), Ok(None));
        }
        prop_assert_eq!(Hello::decode(&mut buf), Ok(Some(hello)));
        prop_assert!(buf.is_empty());
    }

    /// Whatever a peer sends, decoding returns; it never panics nor
    /// allocates what a length field claims.
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode(&mut buf, 1 << 10) {}
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = Hello::decode(&mut buf);
    }

    /// Random bytes behind a valid header reach the message decoders.
    #[test]
    fn batch_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut buf = BytesMut::new();
        buf.put_u32(body.len() as u32 + 13);
        buf.put_u8(1);
        buf.put_u64(7);
        buf.put_u32(3);
        buf.put_slice(&body);
        let _ = decode(&mut buf, MAX_FRAME);
    }
}

#[test]
fn an_unknown_version_is_refused_by_name() {
    let mut buf = BytesMut::new();
    Hello {
        version: 9,
        node: "b".into(),
        boot: 1,
    }
    .encode(&mut buf);
    let err = Hello::decode(&mut buf).unwrap_err();
    assert_eq!(
        err,
        FrameError::Version {
            theirs: 9,
            ours: VERSION
        }
    );
    assert_eq!(
        err.to_string(),
        "peer speaks cluster protocol version 9, this node speaks 2: run one version across the cluster"
    );
}

#[test]
fn another_protocol_is_refused_at_its_first_bytes() {
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
    assert_eq!(Hello::decode(&mut buf), Err(FrameError::Magic(*b"GET ")));
    let mut buf = BytesMut::from(&b"SMX"[..]);
    assert_eq!(Hello::decode(&mut buf), Err(FrameError::Magic(*b"SMX\0")));
}

#[test]
fn a_frame_too_long_is_refused_from_its_length() {
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1][..]);
    assert_eq!(
        decode(&mut buf, MAX_FRAME),
        Err(FrameError::TooLong {
            len: u32::MAX as usize,
            max: MAX_FRAME
        })
    );
}

/// A fixture: a credit frame, byte for byte.
#[test]
fn credit_bytes() {
    let mut buf = BytesMut::new();
    Frame::Credit {
        acked: 5,
        window: 64,
    }
    .encode(&mut buf);
    assert_eq!(
        &buf[..],
        &[0, 0, 0, 13, 2, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 64]
    );
}
