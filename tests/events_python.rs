//! The event streams decoded by an independent decoder: Python's `protobuf`
//! package (PyPI), with classes generated from `proto/` by `grpcio-tools`
//! (tests/python/decode_events.py). One event of every hook goes out as a
//! native stream and as a vmq-compat stream; the script's JSON must show the
//! same fields.
//!
//! The interpreter is `$SHARDMQ_PYTHON`, else `target/pyenv/bin/python`
//! (what `.ci/run` sets up). Without it the test fails: it never skips.

mod common;

use common::python;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use serde_json::{json, Value};

use shardmq::auth::{Failure, Identity};
use shardmq::events::frame::NativeBatch;
use shardmq::events::{encode_native, encode_vmq, Event, OfflineReason, TopicInfo};
use shardmq::protocol::{QoS, ReasonCode};
use shardmq::session::DropReason;
use shardmq::topic::{TopicFilter, TopicName};

/// One event of every hook, in the fork's table order, with the JSON
/// (protobuf's JSON mapping, .proto field names) each must decode to.
fn with_every_event(f: &mut dyn FnMut(Event<'_>, Value)) {
    let who = Identity {
        username: Some("user-1".into()),
        client_id: ByteString::from("device-1:owner-7"),
        claims: None,
    };
    let id = &who.client_id;
    let topic = TopicName::new("a/b".to_owned()).unwrap();
    let payload = Bytes::from_static(b"\x00hi\xff");
    let b64 = "AGhp/w==";
    let props = vec![
        (ByteString::from("os"), ByteString::from("android")),
        (ByteString::from("app"), ByteString::from("1.2")),
    ];
    let topics = [
        TopicInfo {
            filter: TopicFilter::new("a/+".to_owned()).unwrap(),
            qos: 1,
            label: Some(Arc::from("open")),
            pattern: Some(Arc::from("a/#")),
        },
        TopicInfo {
            filter: TopicFilter::new("secret/#".to_owned()).unwrap(),
            qos: 128,
            label: Some(Arc::from("secret")),
            pattern: Some(Arc::from("secret/#")),
        },
    ];
    let unsub = [TopicFilter::new("a/+".to_owned()).unwrap()];
    let base = json!({"client_id": "device-1:owner-7", "session_id": "device-1:owner-7"});
    let with = |extra: Value| {
        let mut v = base.clone();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };

    f(
        Event::Register {
            who: &who,
            peer: None,
            clean_start: false,
            session_present: false,
            user_properties: &props,
        },
        with(json!({"username": "user-1",
                    "user_properties": {"os": "android", "app": "1.2"}})),
    );
    f(
        Event::RegisterFailed {
            client_id: id,
            username: Some(&ByteString::from("user-1")),
            clean_start: true,
            reason: ReasonCode::NotAuthorized,
            failure: Some(Failure::UsernameRidMismatch),
            peer: Some("10.0.0.7:51000".parse().unwrap()),
        },
        json!({"client_id": "device-1:owner-7", "username": "user-1",
               "peer_addr": "10.0.0.7", "peer_port": 51000,
               "clean_session": true, "reason": "REASON_USERNAME_RID_MISMATCH"}),
    );
    f(
        Event::Publish {
            who: &who,
            topic: &topic,
            qos: QoS::AtLeastOnce,
            retain: true,
            payload: &payload,
            label: Some("open"),
            pattern: Some("a/#"),
        },
        with(
            json!({"username": "user-1", "qos": 1, "topic": "a/b", "payload": b64,
                    "retain": true, "matched_acl": {"name": "open", "pattern": "a/#"}}),
        ),
    );
    f(
        Event::Subscribe {
            who: &who,
            topics: &topics,
        },
        with(json!({"username": "user-1", "topics": [
            {"topic": "a/+", "qos": 1, "matched_acl": {"name": "open", "pattern": "a/#"}},
            {"topic": "secret/#", "qos": 128,
             "matched_acl": {"name": "secret", "pattern": "secret/#"}},
        ]})),
    );
    f(
        Event::Unsubscribe {
            who: &who,
            topics: &unsub,
        },
        with(json!({"username": "user-1", "topics": ["a/+"]})),
    );
    f(
        Event::Deliver {
            who: &who,
            topic: &topic,
            qos: QoS::ExactlyOnce,
            retain: true,
            dup: false,
            payload: &payload,
        },
        with(
            json!({"username": "user-1", "topic": "a/b", "qos": 2, "is_retain": true,
                    "payload": b64}),
        ),
    );
    f(
        Event::DeliveryComplete {
            who: &who,
            topic: &topic,
            qos: QoS::AtLeastOnce,
            retain: false,
            payload: &payload,
        },
        with(json!({"username": "user-1", "topic": "a/b", "qos": 1, "payload": b64})),
    );
    f(
        Event::OfflineMessage {
            client_id: id,
            topic: &topic,
            qos: QoS::AtLeastOnce,
            retain: true,
            payload: &payload,
        },
        with(json!({"qos": 1, "topic": "a/b", "payload": b64, "retain": true})),
    );
    f(
        Event::MessageDrop {
            client_id: id,
            topic: &topic,
            qos: QoS::AtMostOnce,
            payload: &payload,
            reason: DropReason::QueueFull,
        },
        with(json!({"topic": "a/b", "payload": b64, "reason": "queue_full"})),
    );
    f(Event::ClientWakeUp { who: &who }, base.clone());
    f(
        Event::ClientOffline {
            who: &who,
            reason: OfflineReason::KeepAlive,
        },
        with(json!({"username": "user-1", "reason": "REASON_DISCONNECT_KEEP_ALIVE"})),
    );
    f(
        Event::ClientGone {
            client_id: id,
            username: who.username.as_deref(),
        },
        with(json!({"username": "user-1"})),
    );
    f(Event::SessionExpired { client_id: id }, base.clone());
}

#[test]
fn python_protobuf_decodes_both_streams() {
    let python = python("protobuf grpcio-tools");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // 2026-01-02T03:04:05.000000006Z
    let now = SystemTime::UNIX_EPOCH + Duration::new(1_767_323_045, 6);

    let mut native = Vec::new();
    let mut batch = NativeBatch::new(3);
    let mut vmq = BytesMut::new();
    let mut expected = Vec::new();
    let mut seq = 40;
    with_every_event(&mut |event, fields| {
        let mut encoded = Vec::new();
        encode_native(&event, now, &mut encoded);
        batch.push(seq, &encoded);
        seq += 1;
        // Several frames: a new one every 5 events.
        if batch.count() == 5 {
            native.extend_from_slice(&batch.finish());
        }
        encode_vmq(&event, now, &mut vmq);
        expected.push((event.kind().hook_name(), fields));
    });
    native.extend_from_slice(&batch.finish());
    assert_eq!(expected.len(), 13);

    let dir = std::env::temp_dir().join(format!("shardmq-events-python-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (native_file, vmq_file) = (dir.join("native.bin"), dir.join("vmq.bin"));
    std::fs::write(&native_file, &native).unwrap();
    std::fs::write(&vmq_file, &vmq).unwrap();
    let output = Command::new(&python)
        .arg(root.join("tests/python/decode_events.py"))
        .arg(root.join("proto"))
        .args([&native_file, &vmq_file])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        output.status.success(),
        "decode_events.py failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let decoded: Value = serde_json::from_slice(&output.stdout).expect("JSON from the decoder");

    let native = decoded["native"].as_array().unwrap();
    let vmq = decoded["vmq"].as_array().unwrap();
    assert_eq!((native.len(), vmq.len()), (13, 13));
    for (i, (hook, fields)) in expected.iter().enumerate() {
        let mut want = fields.clone();
        want["timestamp"] = json!("2026-01-02T03:04:05.000000006Z");
        let n = &native[i];
        assert_eq!(n["hook"], json!(hook), "event {i}");
        assert_eq!(
            (n["shard"].as_u64(), n["seq"].as_u64()),
            (Some(3), Some(40 + i as u64))
        );
        assert_eq!(n["message"], want, "native {hook}");
        let v = &vmq[i];
        assert_eq!(v["message"], want, "vmq-compat {hook}");
        let name = v["type_url"].as_str().unwrap();
        let name = name
            .strip_prefix("type.googleapis.com/eventssidecar.v1.On")
            .unwrap();
        // The message name is the hook's name in CamelCase.
        assert_eq!(
            name.to_lowercase(),
            hook.trim_start_matches("on_").replace('_', ""),
            "{hook}"
        );
    }
}
