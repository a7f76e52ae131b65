//! `ConfiguredAuthenticator`'s decision rules, and the CONNACK each refusal
//! becomes through the broker.

use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use super::password::cheap_argon2;
use super::*;
use crate::auth::{Authenticator, ConfiguredAuthenticator, Failure, Identity};
use crate::broker::tests::settings;
use crate::broker::Broker;
use crate::config::{AuthConfig, BindTo, JwtConfig, TokenFrom};
use crate::connection::handshake;
use crate::protocol::{encode, Connect, ConnectProperties, Packet, Version};

const ISSUER: &str = "https://id.example";

/// A CONNECT from `client-1` with these credentials (shared with `offload`).
pub(super) fn connect(
    version: Version,
    username: Option<&str>,
    password: Option<&[u8]>,
) -> Connect {
    Connect {
        version,
        clean_start: true,
        keep_alive: 30,
        client_id: ByteString::from_static("client-1"),
        will: None,
        username: username.map(ByteString::from),
        password: password.map(Bytes::copy_from_slice),
        properties: ConnectProperties::default(),
    }
}

fn authenticate_bytes(
    auth: &ConfiguredAuthenticator,
    username: Option<&str>,
    password: Option<&[u8]>,
) -> Result<Identity, Failure> {
    let c = connect(Version::V3_1_1, username, password);
    auth.authenticate(&c, &c.client_id)
}

fn authenticate(
    auth: &ConfiguredAuthenticator,
    username: Option<&str>,
    password: Option<&str>,
) -> Result<Identity, Failure> {
    authenticate_bytes(auth, username, password.map(str::as_bytes))
}

fn pw(bytes: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    Some(bytes.as_ref().to_vec())
}

fn auth(config: &AuthConfig) -> ConfiguredAuthenticator {
    ConfiguredAuthenticator::from_config(config).unwrap()
}

/// A password file holding `alice` (password "alice pw"), in a fresh directory.
fn password_file() -> PathBuf {
    let path = temp_dir().join("passwd");
    std::fs::write(&path, format!("alice:{}\n", cheap_argon2("alice pw"))).unwrap();
    path
}

/// Everything on: alice in the password file; HS256 tokens from the secret and
/// ES256 ones from the JWKS file, with `iss` and `aud` required.
fn full_config() -> AuthConfig {
    AuthConfig {
        allow_anonymous: false,
        password_file: password_file(),
        jwt: JwtConfig {
            algorithms: vec!["HS256".to_owned(), "ES256".to_owned()],
            secret: SECRET.to_owned(),
            jwks_file: fixture("jwks.json"),
            issuer: ISSUER.to_owned(),
            audience: "mqtt".to_owned(),
            ..JwtConfig::default()
        },
    }
}

/// Claims `full_config` accepts for `rid`, with `extra` merged in (a `null`
/// removes a claim).
fn good_claims(rid: &str, extra: Value) -> Value {
    let now = unix(SystemTime::now());
    let mut claims = json!({ "rid": rid, "iss": ISSUER, "aud": "mqtt", "exp": now + 600 });
    for (k, v) in extra.as_object().unwrap() {
        match v {
            Value::Null => claims.as_object_mut().unwrap().remove(k),
            _ => claims.as_object_mut().unwrap().insert(k.clone(), v.clone()),
        };
    }
    claims
}

fn hs(claims: &Value) -> Vec<u8> {
    sign(Algorithm::HS256, None, claims).into_bytes()
}

/// A client's credentials and what `full_config` makes of them.
struct Case {
    what: &'static str,
    username: Option<&'static str>,
    password: Option<Vec<u8>>,
    expected: Result<(), Failure>,
}

fn full_cases() -> Vec<Case> {
    let now = unix(SystemTime::now());
    let bob = hs(&good_claims("bob", json!({})));
    let tampered = {
        let mallory = String::from_utf8(hs(&good_claims("mallory", json!({})))).unwrap();
        let bob = String::from_utf8(bob.clone()).unwrap();
        let (signed, _) = mallory.rsplit_once('.').unwrap();
        format!("{signed}.{}", bob.rsplit_once('.').unwrap().1).into_bytes()
    };
    let none = format!(
        "{}.{}.",
        base64url::encode(br#"{"alg":"none"}"#),
        base64url::encode(good_claims("bob", json!({})).to_string().as_bytes())
    );
    let unknown_kid = sign(
        Algorithm::ES256,
        Some("gone"),
        &good_claims("bob", json!({})),
    );
    let es = sign(
        Algorithm::ES256,
        Some(EC256_KID),
        &good_claims("bob", json!({})),
    );
    let case = |what, username, password, expected| Case {
        what,
        username,
        password,
        expected,
    };
    use Failure::*;
    vec![
        case("nothing", None, None, Err(MissingCredentials)),
        case("file user", Some("alice"), pw(b"alice pw"), Ok(())),
        case(
            "file user, wrong",
            Some("alice"),
            pw(b"nope"),
            Err(BadPassword),
        ),
        case(
            "file user, no password",
            Some("alice"),
            None,
            Err(MissingCredentials),
        ),
        case(
            "file user, token",
            Some("alice"),
            pw(hs(&good_claims("alice", json!({})))),
            Err(BadPassword),
        ),
        case("token", Some("bob"), pw(&bob), Ok(())),
        case("ES256 token", Some("bob"), pw(es.as_bytes()), Ok(())),
        case("username only", Some("bob"), None, Err(MissingCredentials)),
        case(
            "not a token",
            Some("bob"),
            pw(b"hunter2"),
            Err(MalformedToken),
        ),
        case(
            "not UTF-8",
            Some("bob"),
            pw(b"\xff.\xff.\xff"),
            Err(MalformedToken),
        ),
        case(
            "alg none",
            Some("bob"),
            pw(none.as_bytes()),
            Err(AlgorithmNotAllowed),
        ),
        case(
            "unknown kid",
            Some("bob"),
            pw(unknown_kid.as_bytes()),
            Err(UnknownKey),
        ),
        case("tampered", Some("bob"), pw(tampered), Err(InvalidSignature)),
        case(
            "expired",
            Some("bob"),
            pw(hs(&good_claims("bob", json!({ "exp": now - 600 })))),
            Err(Expired),
        ),
        case(
            "nbf",
            Some("bob"),
            pw(hs(&good_claims("bob", json!({ "nbf": now + 600 })))),
            Err(NotYetValid),
        ),
        case(
            "iss",
            Some("bob"),
            pw(hs(&good_claims("bob", json!({ "iss": "x" })))),
            Err(WrongIssuer),
        ),
        case(
            "aud",
            Some("bob"),
            pw(hs(&good_claims("bob", json!({ "aud": "x" })))),
            Err(WrongAudience),
        ),
        case(
            "no rid",
            Some("bob"),
            pw(hs(&good_claims("bob", json!({ "rid": null })))),
            Err(MissingRid),
        ),
        case(
            "someone else's",
            Some("carol"),
            pw(&bob),
            Err(UsernameRidMismatch),
        ),
        case("password only", None, pw(&bob), Err(UsernameRidMismatch)),
    ]
}

#[test]
fn the_full_config_decides_each_case_by_the_rules() {
    let auth = auth(&full_config());
    for case in full_cases() {
        let got = authenticate_bytes(&auth, case.username, case.password.as_deref());
        assert_eq!(
            got.as_ref().map(|_| ()).map_err(|f| *f),
            case.expected,
            "{}",
            case.what
        );
        if let Ok(identity) = got {
            assert_eq!(identity.username.as_deref(), case.username, "{}", case.what);
            assert_eq!(identity.client_id, "client-1");
            // Token users carry their claims; password-file users none.
            let from_token = case.username != Some("alice");
            assert_eq!(identity.claims.is_some(), from_token, "{}", case.what);
            if let Some(claims) = identity.claims {
                assert_eq!(claims["iss"], ISSUER);
            }
        }
    }
}

#[test]
fn without_methods_allow_anonymous_decides_everything() {
    let open = auth(&AuthConfig::default());
    assert!(authenticate(&open, None, None).is_ok());
    assert!(authenticate(&open, Some("bob"), Some("anything")).is_ok());
    let closed = auth(&AuthConfig {
        allow_anonymous: false,
        ..AuthConfig::default()
    });
    assert_eq!(
        authenticate(&closed, None, None),
        Err(Failure::MissingCredentials)
    );
    assert_eq!(
        authenticate(&closed, Some("bob"), Some("pw")),
        Err(Failure::NoMethod)
    );
    assert_eq!(
        authenticate(&closed, Some("bob"), None),
        Err(Failure::NoMethod)
    );
}

#[test]
fn allow_anonymous_never_waives_credentials_that_are_given() {
    let file_only = auth(&AuthConfig {
        allow_anonymous: true,
        password_file: password_file(),
        ..AuthConfig::default()
    });
    assert!(authenticate(&file_only, None, None).is_ok());
    assert!(authenticate(&file_only, Some("alice"), Some("alice pw")).is_ok());
    assert_eq!(
        authenticate(&file_only, Some("dave"), Some("pw")),
        Err(Failure::BadPassword)
    );
    assert_eq!(
        authenticate(&file_only, Some("dave"), None),
        Err(Failure::MissingCredentials)
    );
    assert_eq!(
        authenticate(&file_only, None, Some("pw")),
        Err(Failure::MissingCredentials)
    );

    let jwt_only = auth(&AuthConfig {
        allow_anonymous: true,
        jwt: jwt_config(&["HS256"]),
        ..AuthConfig::default()
    });
    assert!(authenticate(&jwt_only, None, None).is_ok());
    assert_eq!(
        authenticate(&jwt_only, Some("bob"), None),
        Err(Failure::MissingCredentials)
    );
    let token = sign(Algorithm::HS256, None, &claims("bob", SystemTime::now()));
    assert!(authenticate(&jwt_only, Some("bob"), Some(token.as_str())).is_ok());
}

#[test]
fn a_token_can_be_the_username_bound_to_the_client_id() {
    let config = AuthConfig {
        allow_anonymous: false,
        jwt: JwtConfig {
            token_from: TokenFrom::Username,
            bind_to: BindTo::ClientId,
            ..jwt_config(&["EdDSA"])
        },
        ..AuthConfig::default()
    };
    let auth = auth(&config);
    let token = sign(
        Algorithm::EdDSA,
        None,
        &claims("client-1", SystemTime::now()),
    );
    let identity = authenticate(&auth, Some(&token), Some("ignored")).unwrap();
    assert_eq!(identity.claims.unwrap()["rid"], "client-1");
    assert_eq!(identity.username.as_deref(), Some(token.as_str()));
    let other = sign(
        Algorithm::EdDSA,
        None,
        &claims("client-2", SystemTime::now()),
    );
    assert_eq!(
        authenticate(&auth, Some(&other), None),
        Err(Failure::UsernameRidMismatch)
    );
    assert_eq!(
        authenticate(&auth, None, Some(token.as_str())),
        Err(Failure::MissingCredentials)
    );
}

#[test]
fn shards_share_keys_and_files_but_not_caches() {
    let first = auth(&full_config());
    let second = first.for_shard();
    let token = hs(&good_claims("bob", json!({})));
    for a in [&first, &second] {
        assert!(authenticate_bytes(a, Some("bob"), Some(&token[..])).is_ok());
        assert!(authenticate(a, Some("alice"), Some("alice pw")).is_ok());
    }
    fn assert_send<T: Send>(_: &T) {}
    assert_send(&first);
}

#[test]
fn setup_errors_name_what_to_fix() {
    let missing = AuthConfig {
        password_file: PathBuf::from("/nonexistent/passwd"),
        ..AuthConfig::default()
    };
    let err = ConfiguredAuthenticator::from_config(&missing)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("auth.password-file \"/nonexistent/passwd\": cannot read it"),
        "{err}"
    );
}

/// The CONNACK bytes the broker answers `c` with, or `None` if it accepts.
fn connack(b: &mut Broker, c: &Connect) -> Option<Vec<u8>> {
    let reason = b.connect(9, c, Instant::now()).err()?;
    let mut buf = BytesMut::new();
    encode(
        &Packet::ConnAck(handshake::refusal(reason)),
        c.version,
        &mut buf,
    )
    .unwrap();
    Some(buf.to_vec())
}

#[test]
fn every_failure_gives_its_connack_code_through_the_broker() {
    let auth = auth(&full_config());
    let mut no_method = auth_case_no_method();
    let mut seen = Vec::new();
    let mut cases = full_cases();
    cases.append(&mut no_method.1);
    for case in cases {
        let Err(failure) = case.expected else {
            continue;
        };
        // The v3 return code and v5 reason code (DESIGN section 4).
        let (v3, v5) = match failure {
            Failure::MissingCredentials => (4, 0x86),
            _ => (5, 0x87),
        };
        let shard = match failure {
            Failure::NoMethod => no_method.0.for_shard(),
            _ => auth.for_shard(),
        };
        let mut broker = Broker::new(0, 1, settings()).with_auth(Box::new(shard));
        for (version, expected) in [
            (Version::V3_1_1, vec![0x20, 2, 0, v3]),
            (Version::V5, vec![0x20, 3, 0, v5, 0]),
        ] {
            let c = connect(version, case.username, case.password.as_deref());
            let got = connack(&mut broker, &c);
            assert_eq!(got, Some(expected), "{} {version:?}", case.what);
        }
        assert_eq!(broker.session_count(), 0);
        seen.push(failure);
    }
    for failure in Failure::ALL {
        assert!(seen.contains(&failure), "no case for {failure:?}");
    }
    // And an accepted client gets a session.
    let mut broker = Broker::new(0, 1, settings()).with_auth(Box::new(auth.for_shard()));
    let c = connect(Version::V5, Some("alice"), Some(&b"alice pw"[..]));
    assert_eq!(connack(&mut broker, &c), None);
    assert_eq!(broker.session_count(), 1);
}

/// A config without methods that refuses anonymous clients, and the case that
/// gives `NoMethod`.
fn auth_case_no_method() -> (ConfiguredAuthenticator, Vec<Case>) {
    let auth = auth(&AuthConfig {
        allow_anonymous: false,
        ..AuthConfig::default()
    });
    let case = Case {
        what: "no method",
        username: Some("bob"),
        password: Some(b"pw".to_vec()),
        expected: Err(Failure::NoMethod),
    };
    (auth, vec![case])
}
