//! What each client says in CONNECT, seen by a fake broker on 127.0.0.1 (std threads
//! and shardmq's codec) that records every CONNECT and its source address, checks
//! the password as an HS256 JWT whose `rid` must be the username, and refuses one
//! username, as a JWT-checking broker would.

mod common;

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use clap::Parser;
use common::{send, Peer};
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use loadtest::identity::Claims;
use shardmq::protocol::{ConnAck, ConnAckProperties, Packet, ReasonCode, Version};

const SECRET: &str = "test-secret";
/// The username the fake broker refuses.
const REFUSED: &str = "rider-2";

/// One CONNECT as the broker saw it.
#[derive(Debug, Clone)]
struct Seen {
    peer: IpAddr,
    client_id: String,
    username: Option<String>,
    clean_start: bool,
    session_expiry: Option<u32>,
    /// The verified `rid` claim, if the password was a valid JWT.
    rid: Option<String>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn start_fake_broker() -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let accepted = log.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let log = accepted.clone();
            thread::spawn(move || serve(stream, &log));
        }
    });
    (addr, log)
}

fn serve(stream: TcpStream, log: &Log) {
    let peer = stream.peer_addr().unwrap().ip();
    let mut conn = Peer::new(stream, Version::V5);
    while let Some(packet) = conn.next() {
        match packet {
            Packet::Connect(c) => {
                conn.version = c.version;
                let username = c.username.as_ref().map(|u| u.to_string());
                let rid = c.password.as_ref().and_then(|p| {
                    let token = std::str::from_utf8(p).ok()?;
                    let validation = Validation::new(Algorithm::HS256);
                    let key = DecodingKey::from_secret(SECRET.as_bytes());
                    Some(decode::<Claims>(token, &key, &validation).ok()?.claims.rid)
                });
                let ok = rid.is_some() && rid == username && username.as_deref() != Some(REFUSED);
                log.lock().unwrap().push(Seen {
                    peer,
                    client_id: c.client_id.to_string(),
                    username,
                    clean_start: c.clean_start,
                    session_expiry: c.properties.session_expiry_interval,
                    rid,
                });
                let ack = Packet::ConnAck(ConnAck {
                    session_present: false,
                    reason_code: if ok {
                        ReasonCode::Success
                    } else {
                        ReasonCode::BadUserNameOrPassword
                    },
                    properties: ConnAckProperties::default(),
                });
                send(&mut conn.stream, conn.version, &ack);
                if !ok {
                    return;
                }
            }
            Packet::Disconnect(_) => return,
            _ => {}
        }
    }
}

fn idle(addr: SocketAddr, extra: &[&str]) -> loadtest::Report {
    let addr = addr.to_string();
    let mut argv = vec![
        "loadtest",
        "--broker",
        &addr,
        "--scenario",
        "idle",
        "--clients",
        "4",
        "--duration",
        "300ms",
        "--warmup",
        "0s",
        "--cores",
        "0",
    ];
    argv.extend_from_slice(extra);
    loadtest::execute(&loadtest::Args::try_parse_from(argv).unwrap(), false).unwrap()
}

#[test]
fn each_client_gets_its_own_jwt_source_address_and_session() {
    let (addr, log) = start_fake_broker();
    let report = idle(
        addr,
        &[
            "--mqtt-version",
            "5",
            "--client-id",
            "phone-{i}",
            "--username",
            "rider-{n}",
            "--jwt-secret",
            SECRET,
            "--bind-ips",
            "127.0.0.2,127.0.0.3",
            "--session",
            "persistent",
            "--session-expiry",
            "90s",
        ],
    );
    let mut seen = log.lock().unwrap().clone();
    seen.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    assert_eq!(seen.len(), 4, "{seen:?}");
    for (n, s) in seen.iter().enumerate() {
        assert_eq!(s.client_id, format!("phone-{n}"));
        assert_eq!(s.username.as_deref(), Some(format!("rider-{n}").as_str()));
        assert_eq!(s.rid, s.username, "the JWT verifies and binds the username");
        let source: IpAddr = if n % 2 == 0 { "127.0.0.2" } else { "127.0.0.3" }
            .parse()
            .unwrap();
        assert_eq!(s.peer, source);
        assert!(!s.clean_start);
        assert_eq!(s.session_expiry, Some(90));
    }
    // rider-2 is refused: counted with its reason code, the others connect.
    assert_eq!(report.connections, 3, "{report:?}");
    assert_eq!(report.errors, 1, "{report:?}");
    assert_eq!(
        report
            .error_reasons
            .get("CONNACK 0x86 BadUserNameOrPassword"),
        Some(&1),
        "{report:?}"
    );
}

#[test]
fn a_wrong_secret_is_refused_by_reason_code_over_mqtt_3() {
    let (addr, _log) = start_fake_broker();
    let report = idle(
        addr,
        &["--username", "rider-{i}", "--jwt-secret", "not-the-secret"],
    );
    assert_eq!(report.connections, 0, "{report:?}");
    // MQTT 3.1.1 return code 4, read back as its MQTT 5 equivalent.
    assert_eq!(
        report
            .error_reasons
            .get("CONNACK 0x86 BadUserNameOrPassword"),
        Some(&4),
        "{report:?}"
    );
}
