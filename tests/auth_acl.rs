//! End to end: the `shardmq` binary with JWT authentication and an ACL file,
//! driven by real clients (Debian's `mosquitto_sub`/`mosquitto_pub`, rumqttc)
//! and, for exact CONNACK/SUBACK codes, the raw client.
//!
//! It checks what an operator sees: the right subscriptions granted and
//! denied, denied publishes dropped, a label's rate limit (what a subscriber
//! still gets, what is counted), a SIGHUP reload taking effect without a
//! restart (a withdrawn grant stops delivering, and is counted revoked), and a
//! broken file refused with the old rules kept and the line logged.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use bytestring::ByteString;
use common::{
    connect, http_get, id_on_shard, lines_of, publish, sub_options, subscribe, Raw, Recv, QUIET,
    WAIT,
};
use jsonwebtoken::{encode, EncodingKey, Header};
use shardmq::protocol::{QoS, ReasonCode, Version};

const SECRET: &str = "e2e-secret";

const RULES_V1: &str = "\
pattern write burst/%u label burst
# Courier devices read their own inbox, named by the 3rd field of the client id.
token read courier/%(c, :, 3)/in label courier_in
# Everyone writes their own outbox.
pattern write devices/%u/out label device_out
topic public/#
user monitor
topic read devices/#
topic read burst/#
";

/// v2 withdraws the monitor's `devices/#` and grants `metrics/#` instead; it
/// keeps `burst/#`, so exactly one subscription is revoked.
const RULES_V2: &str = "\
pattern write burst/%u label burst
token read courier/%(c, :, 3)/in label courier_in
pattern write devices/%u/out label device_out
topic public/#
user monitor
topic read metrics/#
topic read burst/#
";

/// A token for `username`, signed with the broker's secret unless `secret`.
fn token(username: &str, secret: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({ "rid": username, "exp": now + 600, "iat": now });
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// The binary with JWT auth and the ACL file, logging at info; killed on drop.
struct Broker {
    child: Child,
    addr: SocketAddr,
    http: SocketAddr,
    log: mpsc::Receiver<String>,
    dir: PathBuf,
}

impl Broker {
    fn start(rules: &str) -> Broker {
        let dir = std::env::temp_dir().join(format!("shardmq-auth-acl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("rules.acl"), rules).unwrap();
        let config = format!(
            "[shards]\ncores = [0, 1]\n\
             [[listeners]]\nbind = \"127.0.0.1:0\"\n\
             [http]\nbind = \"127.0.0.1:0\"\n\
             [log]\nlevel = \"info\"\n\
             [auth]\nallow-anonymous = false\n\
             [auth.jwt]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\n\
             [acl]\nfile = \"{}\"\nreload-interval = \"0s\"\n\
             [acl.rate-limit]\nburst = 2\n",
            dir.join("rules.acl").display()
        );
        std::fs::write(dir.join("shardmq.toml"), config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_shardmq"))
            .arg("--config")
            .arg(dir.join("shardmq.toml"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start shardmq");
        let log = lines_of(child.stderr.take().unwrap());
        let mut broker = Broker {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            http: "127.0.0.1:0".parse().unwrap(),
            log,
            dir,
        };
        let line = broker.wait_log("MQTT listener addr=");
        let (_, addr) = line.split_once("MQTT listener addr=").unwrap();
        broker.addr = addr.trim().parse().expect("listener address");
        let line = broker.wait_log("HTTP listener");
        let (_, http) = line.split_once("addr=").unwrap();
        broker.http = http.trim().parse().expect("HTTP address");
        broker
    }

    /// The `/metrics` line that starts with `prefix`.
    fn metric(&self, prefix: &str) -> String {
        let (_, body) = http_get(self.http, "/metrics");
        body.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
            .to_owned()
    }

    /// The value of a `/metrics` counter summed over its `shard` labels,
    /// once it reaches `want` (the per-shard counters are copied from the
    /// shards every 250 ms). Panics if it passes `want`, or after [`WAIT`].
    fn await_shard_sum(&self, family: &str, want: u64) {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (_, body) = http_get(self.http, "/metrics");
            let sum: u64 = body
                .lines()
                .filter(|l| l.starts_with(&format!("{family}{{shard=")))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
                .sum();
            assert!(sum <= want, "{family} is {sum}, over {want}");
            if sum == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{family} stayed at {sum}, not {want}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// `shardmq_acl_rate_limited_total` for `label`.
    fn rate_limited(&self, label: &str) -> u64 {
        let line = self.metric(&format!(
            "shardmq_acl_rate_limited_total{{label=\"{label}\"}}"
        ));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    fn rules(&self) -> PathBuf {
        self.dir.join("rules.acl")
    }

    /// The first log line containing `text`, within [`WAIT`].
    fn wait_log(&self, text: &str) -> String {
        loop {
            match self.log.recv_timeout(WAIT) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!("shardmq never logged {text:?}"),
            }
        }
    }

    /// Rewrites the ACL file and sends SIGHUP.
    fn reload(&self, rules: &str) {
        std::fs::write(self.rules(), rules).unwrap();
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A raw client logged in as `username` with `password`, and its CONNACK code.
async fn login(
    addr: SocketAddr,
    version: Version,
    client_id: &str,
    username: Option<&str>,
    password: Option<&str>,
) -> (Raw, ReasonCode) {
    let mut c = connect(version, client_id, true, 60);
    c.username = username.map(ByteString::from);
    c.password = password.map(|p| bytes::Bytes::copy_from_slice(p.as_bytes()));
    let (raw, ack) = Raw::connect_with(addr, c).await;
    (raw, ack.reason_code)
}

async fn logged_in(addr: SocketAddr, version: Version, client_id: &str, user: &str) -> Raw {
    let (raw, code) = login(
        addr,
        version,
        client_id,
        Some(user),
        Some(&token(user, SECRET)),
    )
    .await;
    assert_eq!(code, ReasonCode::Success, "{client_id} as {user}");
    raw
}

async fn suback(raw: &mut Raw, filter: &str) -> ReasonCode {
    let codes = raw
        .subscribe(subscribe(1, &[(filter, sub_options(QoS::AtLeastOnce))]))
        .await;
    codes[0]
}

/// Payloads `raw` receives until it has been quiet for [`QUIET`].
async fn drain(raw: &mut Raw) -> Vec<String> {
    let mut got = Vec::new();
    while let Recv::Packet(shardmq::protocol::Packet::Publish(p)) = raw.recv_within(QUIET).await {
        got.push(format!(
            "{} {}",
            p.topic.as_str(),
            String::from_utf8_lossy(&p.payload)
        ));
        if let Some(id) = p.packet_id {
            raw.puback(id).await;
        }
    }
    got
}

/// `mosquitto_sub -d` subscribing once: the SUBACK line it prints.
fn mosquitto_suback(addr: SocketAddr, version: &str, id: &str, user: &str, filter: &str) -> String {
    let out = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &addr.port().to_string(),
            "-V",
            version,
        ])
        .args(["-i", id, "-u", user, "-P", &token(user, SECRET)])
        .args(["-t", filter, "-q", "1", "-d", "-W", "1"])
        .stdin(Stdio::null())
        .output()
        .expect("mosquitto_sub is required (apt-get install mosquitto-clients)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.starts_with("Subscribed (mid:"))
        .unwrap_or_else(|| panic!("no SUBACK from mosquitto_sub:\n{text}"))
        .to_owned()
}

#[tokio::test]
async fn jwt_and_acl_end_to_end() {
    let b = Broker::start(RULES_V1);
    let addr = b.addr;

    // Authentication: exact CONNACK codes for MQTT 3.1.1 and 5.
    let good = token("alice", SECRET);
    let forged = token("alice", "not-the-secret");
    let cases: [(Option<&str>, Option<&str>, u8, ReasonCode); 4] = [
        (Some("alice"), Some(&good), 0, ReasonCode::Success),
        (Some("alice"), Some(&forged), 5, ReasonCode::NotAuthorized),
        (Some("bob"), Some(&good), 5, ReasonCode::NotAuthorized),
        (None, None, 4, ReasonCode::BadUserNameOrPassword),
    ];
    for (user, password, v3, v5) in cases {
        let (_, code) = login(addr, Version::V3_1_1, "dev:o:p42", user, password).await;
        assert_eq!(code.to_v3_connack(), v3, "v3 {user:?}");
        let (_, code) = login(addr, Version::V5, "dev:o:p42", user, password).await;
        assert_eq!(code, v5, "v5 {user:?}");
    }
    // A real client refused: rumqttc sees "not authorized".
    let mut options = common::v3_options(addr, "dev:o:p42");
    options.set_credentials("alice", forged.clone());
    let (_client, mut events) = rumqttc::AsyncClient::new(options, 10);
    let refused = tokio::time::timeout(WAIT, events.poll())
        .await
        .expect("CONNACK");
    assert!(
        matches!(
            refused,
            Err(rumqttc::ConnectionError::ConnectionRefused(
                rumqttc::ConnectReturnCode::NotAuthorized
            ))
        ),
        "{refused:?}"
    );

    // Subscriptions: the token rule grants the client's own inbox only, and a
    // client id with a wildcard in the field gets nothing from it.
    let mut alice = logged_in(addr, Version::V5, "dev:o:p42", "alice").await;
    assert_eq!(
        suback(&mut alice, "courier/p42/in").await,
        ReasonCode::GrantedQos1
    );
    assert_eq!(
        suback(&mut alice, "courier/p43/in").await,
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        suback(&mut alice, "courier/+/in").await,
        ReasonCode::NotAuthorized
    );
    let mut sneaky = logged_in(addr, Version::V3_1_1, "dev:o:+", "mallory").await;
    let code = suback(&mut sneaky, "courier/+/in").await;
    assert_eq!(code as u8, 0x80);
    // The same decisions through mosquitto_sub (v3 128, v5 135).
    let line = mosquitto_suback(addr, "mqttv311", "dev:m:p42", "carol", "courier/p42/in");
    assert!(line.ends_with(": 1"), "{line}");
    let line = mosquitto_suback(addr, "mqttv311", "dev:m:p42", "carol", "courier/p7/in");
    assert!(line.ends_with(": 128"), "{line}");
    let line = mosquitto_suback(addr, "mqttv5", "dev:m:p42", "carol", "courier/p7/in");
    assert!(line.ends_with(": 135"), "{line}");

    // Publishes: alice may write her own outbox only; the denied one is
    // dropped (MQTT 5 QoS 1: PUBACK 0x87) and never reaches the monitor.
    let mut monitor = logged_in(addr, Version::V3_1_1, "monitor-1", "monitor").await;
    assert_eq!(
        suback(&mut monitor, "devices/#").await,
        ReasonCode::GrantedQos1
    );
    assert_eq!(
        suback(&mut monitor, "public/#").await,
        ReasonCode::GrantedQos1
    );
    for (topic, payload, pid) in [
        ("devices/alice/out", "one", 1),
        ("devices/bob/out", "forged", 2),
        ("devices/alice/out", "two", 3),
    ] {
        alice
            .publish(publish(topic, QoS::AtLeastOnce, pid, payload.as_bytes()))
            .await;
        match alice.recv().await {
            shardmq::protocol::Packet::PubAck(ack) => {
                let want = match payload {
                    "forged" => ReasonCode::NotAuthorized,
                    _ => ReasonCode::Success,
                };
                assert_eq!(ack.reason_code, want, "{topic}");
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    // mosquitto_pub as alice: allowed and denied.
    for (topic, payload) in [
        ("devices/alice/out", "three"),
        ("devices/carol/out", "nope"),
    ] {
        let out = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &addr.port().to_string(),
                "-V",
                "mqttv311",
            ])
            .args(["-i", "alice-pub", "-u", "alice", "-P", &good])
            .args(["-t", topic, "-m", payload, "-q", "1"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        drain(&mut monitor).await,
        [
            "devices/alice/out one",
            "devices/alice/out two",
            "devices/alice/out three"
        ]
    );

    // `[acl.rate-limit] burst = 2`: a fixed one-second window per label,
    // node-wide (src/ratelimit.rs). A watcher on the other shard than the
    // publisher sees what got through.
    let mallory_id = "mal-1";
    let other = 1 - shards::shard_for(mallory_id.as_bytes(), 2);
    let mut watcher = logged_in(
        addr,
        Version::V5,
        &id_on_shard("burst-watch", other),
        "monitor",
    )
    .await;
    assert_eq!(
        suback(&mut watcher, "burst/#").await,
        ReasonCode::GrantedQos1
    );
    // MQTT 3: of a burst of 6 within a second or two, the first 2 of each
    // window the burst touches get through; the rest are acked (MQTT 3
    // cannot say no), dropped, and counted by label.
    let mut mallory = logged_in(addr, Version::V3_1_1, mallory_id, "mallory").await;
    for pid in 1..=6u16 {
        let payload = pid.to_string();
        mallory
            .publish(publish(
                "burst/mallory",
                QoS::AtLeastOnce,
                pid,
                payload.as_bytes(),
            ))
            .await;
        assert!(matches!(
            mallory.recv().await,
            shardmq::protocol::Packet::PubAck(_)
        ));
    }
    let through = drain(&mut watcher).await;
    let refused = b.rate_limited("burst");
    assert_eq!(
        through.len() as u64 + refused,
        6,
        "delivered {through:?}, {refused} refused"
    );
    // Nothing used the label before: the first two of the burst are always
    // admitted. A burst shorter than a second touches 2 windows at most.
    let first_two = ["burst/mallory 1", "burst/mallory 2"].map(String::from);
    assert!(
        through.len() <= 4 && through.starts_with(&first_two),
        "{through:?}"
    );
    b.await_shard_sum("shardmq_publishes_rate_limited_total", refused);

    // MQTT 5: over the rate, the client gets DISCONNECT 0x96 (a PUBACK
    // cannot carry it), and nothing after it is processed.
    let mut fast = logged_in(addr, Version::V5, "fast-1", "alice").await;
    let mut burst = BytesMut::new();
    let packet =
        shardmq::protocol::Packet::Publish(publish("burst/alice", QoS::AtMostOnce, 0, b"b"));
    for _ in 1..=6 {
        shardmq::protocol::encode(&packet, Version::V5, &mut burst).unwrap();
    }
    // One write: the broker may close after the first publish over the limit.
    fast.try_send_bytes(&burst).await;
    assert_eq!(
        fast.expect_disconnect().await,
        Some(ReasonCode::MessageRateTooHigh)
    );
    assert_eq!(
        b.rate_limited("burst"),
        refused + 1,
        "one refusal, then closed"
    );
    let through = drain(&mut watcher).await;
    assert!(
        through.len() <= 2 && through.iter().all(|m| m == "burst/alice b"),
        "at most the window's budget: {through:?}"
    );
    b.await_shard_sum("shardmq_publishes_rate_limited_total", refused + 1);

    // Reload on SIGHUP: v2 withdraws the monitor's devices/# while it is
    // subscribed. It stops delivering (public/# still does), and new
    // subscriptions follow the new rules.
    b.reload(RULES_V2);
    b.wait_log("ACL reloaded");
    // Shards re-check subscriptions on their next one-second tick.
    b.wait_log("subscriptions it denies removed");
    // The monitor's devices/#, and nothing else.
    b.await_shard_sum("shardmq_acl_subscriptions_revoked_total", 1);
    alice
        .publish(publish("devices/alice/out", QoS::AtMostOnce, 0, b"after"))
        .await;
    alice
        .publish(publish("public/news", QoS::AtMostOnce, 0, b"marker"))
        .await;
    assert_eq!(drain(&mut monitor).await, ["public/news marker"]);
    assert_eq!(suback(&mut monitor, "devices/#").await as u8, 0x80);
    assert_eq!(
        suback(&mut monitor, "metrics/#").await,
        ReasonCode::GrantedQos1
    );

    // A broken file: the reload is refused with file:line in the log, and the
    // v2 rules stay in force.
    b.reload("topic read a/#\nbogus line here\n");
    let line = b.wait_log("ACL reload failed");
    let at = format!("{}:2:", b.rules().display());
    assert!(line.contains(&at), "{line}");
    let mut later = logged_in(addr, Version::V3_1_1, "monitor-2", "monitor").await;
    assert_eq!(
        suback(&mut later, "metrics/#").await,
        ReasonCode::GrantedQos1
    );
    assert_eq!(suback(&mut later, "devices/#").await as u8, 0x80);
    assert_eq!(suback(&mut later, "a/b").await as u8, 0x80);
}
