//! A shard keeps serving its clients while new ones wait for their password
//! hashes: the hashes run on the shard's blocking thread, not on the shard.
//!
//! One shard; a client doing PINGREQ/PINGRESP round trips; then a burst of
//! clients whose passwords (default argon2id, about 15 ms each in release, far
//! more in a debug build) nobody has checked yet. The blocking thread checks
//! them one after another; the question is how many round trips the first
//! client completes meanwhile.
//!
//! And ES256 tokens, checked the same way, get the CONNACK an inline check
//! gives.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use bytestring::ByteString;
use common::{connect, Raw, Recv, TestBroker};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use shardmq::config::Cores;
use shardmq::protocol::{Packet, ReasonCode, Version};

/// Password clients in the burst, each with a user of its own so that no
/// check is answered from the cache. Few: a debug build takes 300 ms per
/// check, and the checks share the shard's CPU with the pinging.
const CLIENTS: usize = 6;

/// How long the burst may take: the checks run one after another.
const BURST_WAIT: Duration = Duration::from_secs(120);

/// Round trips the pinging client must complete per password checked.
///
/// With the checks off the shard, a round trip takes well under a
/// millisecond and a check at least several, so dozens fit in each check.
/// With the checks on the shard, each one blocks the shard from start to
/// end: a round trip fits only between two checks, one or two per check.
/// Both sides of the ratio slow down together on a loaded machine (they
/// share the shard's CPU), which is why this is a count, not a time limit.
const ROUND_TRIPS_PER_CHECK: usize = 5;

#[tokio::test]
async fn a_shard_serves_its_clients_while_passwords_are_checked() {
    let dir = std::env::temp_dir().join(format!("shardmq-auth-offload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hash = shardmq::auth::hash_password("secret").unwrap();
    let lines: String = (0..CLIENTS).map(|i| format!("user-{i}:{hash}\n")).collect();
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, lines).unwrap();
    let broker = TestBroker::with(|config| {
        config.shards.cores = Cores::List(vec![0]);
        config.auth.allow_anonymous = true;
        config.auth.password_file = passwd.clone();
    });
    let addr = broker.addr();

    // The client whose service must go on: anonymous, so it is in at once.
    let mut pinger = Raw::connect(addr, Version::V5, "pinger", true).await;
    let round_trips = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let pinging = tokio::spawn({
        let (round_trips, stop) = (round_trips.clone(), stop.clone());
        async move {
            while !stop.load(Relaxed) {
                pinger.send(Packet::PingReq).await;
                match pinger.recv().await {
                    Packet::PingResp => round_trips.fetch_add(1, Relaxed),
                    other => panic!("expected PINGRESP, got {other:?}"),
                };
            }
        }
    });
    // Wait for the pings to flow before the burst.
    while round_trips.load(Relaxed) < 10 {
        tokio::task::yield_now().await;
    }

    let started = Instant::now();
    let before = round_trips.load(Relaxed);
    let burst: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let mut c = connect(Version::V5, &format!("password-{i}"), true, 60);
            c.username = Some(ByteString::from(format!("user-{i}")));
            c.password = Some(Bytes::from_static(b"secret"));
            tokio::spawn(async move {
                let mut raw = Raw::open(addr, Version::V5).await;
                raw.send(Packet::Connect(Box::new(c))).await;
                match raw.recv_within(BURST_WAIT).await {
                    Recv::Packet(Packet::ConnAck(ack)) => ack.reason_code,
                    other => panic!("expected CONNACK, got {other:?}"),
                }
            })
        })
        .collect();
    for client in burst {
        assert_eq!(client.await.unwrap(), ReasonCode::Success);
    }
    let during = round_trips.load(Relaxed) - before;
    stop.store(true, Relaxed);
    pinging.await.unwrap();

    eprintln!(
        "{CLIENTS} password checks took {:?}; {during} round trips meanwhile",
        started.elapsed()
    );
    assert!(
        during >= ROUND_TRIPS_PER_CHECK * CLIENTS,
        "only {during} round trips while {CLIENTS} passwords were checked: the shard stalled"
    );
}

/// `claims` signed with the ES256 fixture key.
fn es256(claims: serde_json::Value) -> String {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
    let pem = std::fs::read(fixtures.join("ec-p256-private.pem")).unwrap();
    let key = EncodingKey::from_ec_pem(&pem).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &key).unwrap()
}

#[tokio::test]
async fn tokens_checked_off_the_shard_get_the_connack_they_deserve() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
    let broker = TestBroker::with(|config| {
        config.shards.cores = Cores::List(vec![0]);
        config.auth.allow_anonymous = false;
        config.auth.jwt.algorithms = vec!["ES256".to_owned()];
        config.auth.jwt.public_key_file = fixtures.join("ec-p256-public.pem");
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = es256(serde_json::json!({ "rid": "bob", "exp": now + 600 }));
    let expired = es256(serde_json::json!({ "rid": "bob", "exp": now - 600 }));
    let forged = {
        let mallory = es256(serde_json::json!({ "rid": "mallory", "exp": now + 600 }));
        let (signed, _) = mallory.rsplit_once('.').unwrap();
        format!("{signed}.{}", good.rsplit_once('.').unwrap().1)
    };
    let cases = [
        ("good", "bob", &good, ReasonCode::Success),
        ("cached", "bob", &good, ReasonCode::Success),
        ("someone else's", "carol", &good, ReasonCode::NotAuthorized),
        ("expired", "bob", &expired, ReasonCode::NotAuthorized),
        ("forged", "mallory", &forged, ReasonCode::NotAuthorized),
    ];
    for (i, (what, username, token, expected)) in cases.into_iter().enumerate() {
        let mut c = connect(Version::V5, &format!("token-{i}"), true, 60);
        c.username = Some(ByteString::from(username));
        c.password = Some(Bytes::copy_from_slice(token.as_bytes()));
        let (_raw, ack) = Raw::connect_with(broker.addr(), c).await;
        assert_eq!(ack.reason_code, expected, "{what}");
    }
}
