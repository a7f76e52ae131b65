//! Slow checks handed off the shard: which checks `prepare` hands off, and
//! that `authenticate` answers from what `absorb` took in exactly as it would
//! have answered by itself, without checking again.

use std::time::SystemTime;

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use super::password::cheap_argon2;
use super::*;
use crate::auth::{Authenticator, ConfiguredAuthenticator, Failure, Identity, JwtVerifier};
use crate::config::{AuthConfig, JwtConfig};
use crate::protocol::{Connect, Version};

const ISSUER: &str = "https://id.example";

/// Alice in the password file (password "alice pw"); HS256 tokens from the
/// secret, RS256 and ES256 ones from the JWKS file; `iss` and `aud` required.
fn config() -> AuthConfig {
    let passwd = temp_dir().join("passwd");
    std::fs::write(&passwd, format!("alice:{}\n", cheap_argon2("alice pw"))).unwrap();
    AuthConfig {
        allow_anonymous: false,
        password_file: passwd,
        jwt: JwtConfig {
            algorithms: ["HS256", "RS256", "ES256"].map(str::to_owned).to_vec(),
            secret: SECRET.to_owned(),
            jwks_file: fixture("jwks.json"),
            issuer: ISSUER.to_owned(),
            audience: "mqtt".to_owned(),
            ..JwtConfig::default()
        },
    }
}

/// An MQTT 5 CONNECT from `client-1`.
fn connect(username: Option<&str>, password: Option<&[u8]>) -> Connect {
    super::rules::connect(Version::V5, username, password)
}

/// Claims `config` accepts for `rid`, with `extra` merged in (a `null`
/// removes a claim).
fn claims_for(rid: &str, extra: Value) -> Value {
    let now = unix(SystemTime::now());
    let mut claims = json!({ "rid": rid, "iss": ISSUER, "aud": "mqtt", "exp": now + 600 });
    let object = claims.as_object_mut().unwrap();
    for (k, v) in extra.as_object().unwrap() {
        match v {
            Value::Null => object.remove(k),
            _ => object.insert(k.clone(), v.clone()),
        };
    }
    claims
}

fn es256(claims: &Value) -> String {
    sign(Algorithm::ES256, Some(EC256_KID), claims)
}

/// Hashes and signatures checked in full so far, by any thread.
fn verifications(auth: &ConfiguredAuthenticator) -> u64 {
    let jwt = auth.jwt.as_ref().map_or(0, |j| j.verifications());
    let passwords = auth.passwords.as_ref().map_or(0, |p| p.verifications());
    jwt + passwords
}

fn authenticate(auth: &ConfiguredAuthenticator, c: &Connect) -> Result<Identity, Failure> {
    auth.authenticate(c, &c.client_id)
}

#[test]
fn only_slow_uncached_checks_are_handed_off() {
    let auth = ConfiguredAuthenticator::from_config(&config()).unwrap();
    let rs = sign(
        Algorithm::RS256,
        Some(RSA_KID),
        &claims_for("bob", json!({})),
    );
    let es = es256(&claims_for("bob", json!({})));
    let hs = sign(Algorithm::HS256, None, &claims_for("bob", json!({})));
    let none = format!(
        "{}.{}.",
        base64url::encode(br#"{"alg":"none"}"#),
        base64url::encode(claims_for("bob", json!({})).to_string().as_bytes())
    );
    let slow = [
        ("RS256", connect(Some("bob"), Some(rs.as_bytes()))),
        ("ES256", connect(Some("bob"), Some(es.as_bytes()))),
        ("password", connect(Some("alice"), Some(b"alice pw"))),
        ("wrong password", connect(Some("alice"), Some(b"nope"))),
    ];
    for (what, c) in &slow {
        assert!(auth.prepare(c).is_some(), "{what}");
    }
    let quick = [
        ("HS256", connect(Some("bob"), Some(hs.as_bytes()))),
        ("alg none", connect(Some("bob"), Some(none.as_bytes()))),
        ("not a token", connect(Some("bob"), Some(b"hunter2"))),
        ("not UTF-8", connect(Some("bob"), Some(b"\xff.\xff.\xff"))),
        ("anonymous", connect(None, None)),
        ("file user, no password", connect(Some("alice"), None)),
    ];
    for (what, c) in &quick {
        assert!(auth.prepare(c).is_none(), "{what}");
    }
    // Once verified (here, inline), accepted tokens and passwords are cached;
    // refused ones are not.
    for (what, c) in &slow {
        let _ = authenticate(&auth, c);
        let again = auth.prepare(c).is_some();
        assert_eq!(again, *what == "wrong password", "{what}");
    }
    // The cache is the shard's own.
    let other = auth.for_shard();
    assert!(other.prepare(&slow[0].1).is_some());
}

#[test]
fn authenticate_answers_from_the_absorbed_outcome_as_it_would_inline() {
    let now = unix(SystemTime::now());
    let tampered = {
        let mallory = es256(&claims_for("mallory", json!({})));
        let bob = es256(&claims_for("bob", json!({})));
        let (signed, _) = mallory.rsplit_once('.').unwrap();
        format!("{signed}.{}", bob.rsplit_once('.').unwrap().1)
    };
    let token = |extra: Value| es256(&claims_for("bob", extra));
    use Failure::*;
    // What, username, password, and what `config` makes of them.
    type Case = (&'static str, &'static str, Vec<u8>, Result<(), Failure>);
    let cases: Vec<Case> = vec![
        ("ES256", "bob", token(json!({})).into(), Ok(())),
        (
            "RS256",
            "bob",
            sign(
                Algorithm::RS256,
                Some(RSA_KID),
                &claims_for("bob", json!({})),
            )
            .into(),
            Ok(()),
        ),
        ("password", "alice", b"alice pw".to_vec(), Ok(())),
        (
            "wrong password",
            "alice",
            b"nope".to_vec(),
            Err(BadPassword),
        ),
        (
            "exp not a number",
            "bob",
            token(json!({ "exp": "soon" })).into(),
            Err(MalformedToken),
        ),
        (
            "unknown kid",
            "bob",
            sign(
                Algorithm::ES256,
                Some("gone"),
                &claims_for("bob", json!({})),
            )
            .into(),
            Err(UnknownKey),
        ),
        ("tampered", "bob", tampered.into(), Err(InvalidSignature)),
        (
            "expired",
            "bob",
            token(json!({ "exp": now - 600 })).into(),
            Err(Expired),
        ),
        (
            "nbf",
            "bob",
            token(json!({ "nbf": now + 600 })).into(),
            Err(NotYetValid),
        ),
        (
            "iss",
            "bob",
            token(json!({ "iss": "x" })).into(),
            Err(WrongIssuer),
        ),
        (
            "aud",
            "bob",
            token(json!({ "aud": "x" })).into(),
            Err(WrongAudience),
        ),
        (
            "no rid",
            "bob",
            token(json!({ "rid": null })).into(),
            Err(MissingRid),
        ),
        (
            "someone else's",
            "carol",
            token(json!({})).into(),
            Err(UsernameRidMismatch),
        ),
    ];
    let config = config();
    let mut seen = Vec::new();
    for (what, username, password, expected) in cases {
        let c = connect(Some(username), Some(&password));
        let inline = authenticate(&ConfiguredAuthenticator::from_config(&config).unwrap(), &c);
        assert_eq!(
            inline.as_ref().map(|_| ()).map_err(|f| *f),
            expected,
            "{what}"
        );

        let auth = ConfiguredAuthenticator::from_config(&config).unwrap();
        let preparation = auth.prepare(&c).unwrap_or_else(|| panic!("{what}: no job"));
        let prepared = preparation.run();
        let checked = verifications(&auth);
        auth.absorb(prepared);
        assert_eq!(authenticate(&auth, &c), inline, "{what}");
        assert_eq!(verifications(&auth), checked, "{what}: checked again");
        if let Err(failure) = expected {
            seen.push(failure);
        }
    }
    // The refusals no job is made for: no credentials to check, or a
    // header refused before any signature.
    let without_job = [MissingCredentials, NoMethod, AlgorithmNotAllowed];
    for failure in Failure::ALL {
        assert!(
            seen.contains(&failure) || without_job.contains(&failure),
            "no case for {failure:?}"
        );
    }
}

#[test]
fn an_outcome_answers_one_authentication_of_its_own_credentials_only() {
    let auth = ConfiguredAuthenticator::from_config(&config()).unwrap();
    let forged = es256(&claims_for("bob", json!({ "iss": "x" })));
    let bad = connect(Some("bob"), Some(forged.as_bytes()));
    let prepared = auth.prepare(&bad).unwrap().run();
    auth.absorb(prepared);
    // A CONNECT with other credentials is checked on its own...
    let good = connect(Some("alice"), Some(b"alice pw"));
    let checked = verifications(&auth);
    assert!(authenticate(&auth, &good).is_ok());
    assert_eq!(verifications(&auth), checked + 1);
    // ...and the outcome it did not use is gone: the refused token is
    // verified again, refusals not being cached.
    assert_eq!(authenticate(&auth, &bad), Err(Failure::WrongIssuer));
    assert_eq!(verifications(&auth), checked + 2);

    // The same for a wrong password absorbed, then the right one.
    let wrong = connect(Some("alice"), Some(b"nope"));
    let prepared = auth.prepare(&wrong).unwrap().run();
    auth.absorb(prepared);
    let checked = verifications(&auth);
    assert!(authenticate(&auth, &good).is_ok(), "cached before");
    assert_eq!(authenticate(&auth, &wrong), Err(Failure::BadPassword));
    assert_eq!(verifications(&auth), checked + 1);
}

#[test]
fn an_accepted_outcome_is_cached_for_later_connects() {
    let auth = ConfiguredAuthenticator::from_config(&config()).unwrap();
    let token = es256(&claims_for("bob", json!({})));
    let c = connect(Some("bob"), Some(token.as_bytes()));
    let prepared = auth.prepare(&c).unwrap().run();
    auth.absorb(prepared);
    let checked = verifications(&auth);
    for _ in 0..3 {
        assert!(authenticate(&auth, &c).is_ok());
        assert!(auth.prepare(&c).is_none());
    }
    // Binding is still checked on every CONNECT.
    let carol = connect(Some("carol"), Some(token.as_bytes()));
    assert_eq!(
        authenticate(&auth, &carol),
        Err(Failure::UsernameRidMismatch)
    );
    assert_eq!(verifications(&auth), checked);
}

#[test]
fn without_a_cache_the_outcome_still_answers_its_connect() {
    let config = config();
    let jwt = JwtVerifier::from_config(&config.jwt)
        .unwrap()
        .with_cache_capacity(0);
    let auth = ConfiguredAuthenticator::from_config(&config)
        .unwrap()
        .with_jwt(Some(jwt));
    let token = es256(&claims_for("bob", json!({})));
    let c = connect(Some("bob"), Some(token.as_bytes()));
    let prepared = auth.prepare(&c).unwrap().run();
    auth.absorb(prepared);
    let checked = verifications(&auth);
    assert!(authenticate(&auth, &c).is_ok());
    assert_eq!(verifications(&auth), checked);
    assert!(auth.prepare(&c).is_some(), "nothing cached");
}
