//! JWT verification: algorithms, key sources, claims, binding, cache, JWKS.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

use super::*;
use crate::auth::{AuthSetupError, Failure, JwtVerifier};
use crate::config::{BindTo, JwtConfig};

const ALL: [&str; 9] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA",
];

fn verifier(config: &JwtConfig) -> JwtVerifier {
    JwtVerifier::from_config(config).unwrap()
}

fn verify_as(
    v: &JwtVerifier,
    token: &str,
    username: &str,
    now: SystemTime,
) -> Result<Arc<crate::auth::Claims>, Failure> {
    v.verify_at(token, Some(username), "client-1", now)
}

fn jwks_config(algorithms: &[&str], path: PathBuf) -> JwtConfig {
    JwtConfig {
        algorithms: algorithms.iter().map(|a| a.to_string()).collect(),
        jwks_file: path,
        ..JwtConfig::default()
    }
}

#[test]
fn every_algorithm_accepts_a_valid_token_from_a_secret_or_pem_key() {
    let now = now();
    for name in ALL {
        let alg: Algorithm = name.parse().unwrap();
        let v = verifier(&jwt_config(&[name]));
        let token = sign(alg, None, &claims("alice", now));
        let claims = verify_as(&v, &token, "alice", now).unwrap_or_else(|f| panic!("{name}: {f}"));
        assert_eq!(claims["rid"], "alice", "{name}");
    }
}

#[test]
fn every_asymmetric_algorithm_accepts_a_valid_token_from_the_jwks_file() {
    let now = now();
    let v = verifier(&jwks_config(&ALL[3..], fixture("jwks.json")));
    for name in &ALL[3..] {
        let alg: Algorithm = name.parse().unwrap();
        let token = sign(alg, Some(kid_for(alg)), &claims("alice", now));
        assert!(verify_as(&v, &token, "alice", now).is_ok(), "{name}");
    }
}

#[test]
fn the_secret_comes_from_a_file_without_its_newline_or_from_the_environment() {
    let now = now();
    let token = sign(Algorithm::HS256, None, &claims("alice", now));
    let dir = temp_dir();
    let file = dir.join("secret");
    std::fs::write(&file, format!("{SECRET}\r\n")).unwrap();
    let from_file = JwtConfig {
        secret: String::new(),
        secret_file: file,
        ..jwt_config(&["HS256"])
    };
    assert!(verify_as(&verifier(&from_file), &token, "alice", now).is_ok());

    let var = "SHARDMQ_AUTH_TEST_JWT_SECRET";
    std::env::set_var(var, SECRET);
    let from_env = JwtConfig {
        secret: String::new(),
        secret_env: var.to_owned(),
        ..jwt_config(&["HS256"])
    };
    assert!(verify_as(&verifier(&from_env), &token, "alice", now).is_ok());
    let unset = JwtConfig {
        secret_env: "SHARDMQ_AUTH_TEST_UNSET".to_owned(),
        ..from_env
    };
    let err = JwtVerifier::from_config(&unset).unwrap_err();
    assert!(
        matches!(err, AuthSetupError::SecretEnvUnset { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("SHARDMQ_AUTH_TEST_UNSET"), "{err}");
}

#[test]
fn malformed_tokens_are_refused() {
    let now = now();
    let v = verifier(&jwt_config(&["HS256"]));
    let good = sign(Algorithm::HS256, None, &claims("alice", now));
    let (signed, _) = good.rsplit_once('.').unwrap();
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;
    let bad = [
        String::new(),
        "not a token".to_owned(),
        "a.b".to_owned(),
        format!("{good}.more"),
        format!("{signed}.!!!"),
        format!("{signed}.AAA="),
        format!("%%.{}", good.split_once('.').unwrap().1),
        hs256_raw("not json", r#"{"rid":"alice"}"#),
        hs256_raw(r#"{"typ":"JWT"}"#, r#"{"rid":"alice"}"#),
        hs256_raw(r#"{"alg":"HS256","kid":7}"#, r#"{"rid":"alice"}"#),
        hs256_raw(r#"{"alg":"HS256","crit":["exp"]}"#, r#"{"rid":"alice"}"#),
        hs256_raw(header, "not json"),
        hs256_raw(header, r#"["rid","alice"]"#),
        hs256_raw(header, r#"{"rid":"alice","exp":"tomorrow"}"#),
        hs256_raw(header, r#"{"rid":"alice","nbf":null}"#),
    ];
    for token in &bad {
        assert_eq!(
            verify_as(&v, token, "alice", now),
            Err(Failure::MalformedToken),
            "{token}"
        );
    }
    // The raw builder itself makes good tokens.
    assert!(verify_as(&v, &hs256_raw(header, r#"{"rid":"alice"}"#), "alice", now).is_ok());
}

#[test]
fn alg_none_is_refused_in_any_spelling() {
    let now = now();
    let payload = base64url::encode(claims("alice", now).to_string().as_bytes());
    let everything = JwtConfig {
        secret: SECRET.to_owned(),
        ..jwks_config(&ALL, fixture("jwks.json"))
    };
    for v in [verifier(&jwt_config(&["HS256"])), verifier(&everything)] {
        for alg in ["none", "None", "NONE", "nOnE", ""] {
            let header = base64url::encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
            for signature in ["", "c2lnbmF0dXJl"] {
                let token = format!("{header}.{payload}.{signature}");
                assert_eq!(
                    verify_as(&v, &token, "alice", now),
                    Err(Failure::AlgorithmNotAllowed),
                    "{alg}"
                );
            }
        }
    }
}

#[test]
fn an_algorithm_not_listed_is_refused() {
    let now = now();
    let v = verifier(&jwt_config(&["HS256", "ES256"]));
    for alg in [
        Algorithm::HS384,
        Algorithm::RS256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ] {
        let token = sign(alg, None, &claims("alice", now));
        assert_eq!(
            verify_as(&v, &token, "alice", now),
            Err(Failure::AlgorithmNotAllowed),
            "{alg:?}"
        );
    }
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let now = now();
    // The classic confusion: HMAC over the token with the public PEM as secret.
    let forged = sign_with(
        Algorithm::HS256,
        None,
        &claims("alice", now),
        &EncodingKey::from_secret(RSA_PUBLIC),
    );
    let rs_only = verifier(&jwt_config(&["RS256"]));
    assert_eq!(
        verify_as(&rs_only, &forged, "alice", now),
        Err(Failure::AlgorithmNotAllowed)
    );
    // With a secret too, HS tokens meet only the secret.
    let both = verifier(&jwt_config(&["HS256", "RS256"]));
    assert_eq!(
        verify_as(&both, &forged, "alice", now),
        Err(Failure::InvalidSignature)
    );
    let genuine = sign(Algorithm::RS256, None, &claims("alice", now));
    assert!(verify_as(&both, &genuine, "alice", now).is_ok());
    // And through a JWKS file, whatever kid the forgery names.
    let jwks = verifier(&JwtConfig {
        secret: SECRET.to_owned(),
        ..jwks_config(&["HS256", "RS256"], fixture("jwks.json"))
    });
    let forged_kid = sign_with(
        Algorithm::HS256,
        Some(RSA_KID),
        &claims("alice", now),
        &EncodingKey::from_secret(RSA_PUBLIC),
    );
    assert_eq!(
        verify_as(&jwks, &forged_kid, "alice", now),
        Err(Failure::InvalidSignature)
    );
}

#[test]
fn a_public_key_is_never_an_hmac_secret() {
    let pem = String::from_utf8(RSA_PUBLIC.to_vec()).unwrap();
    let config = JwtConfig {
        secret: pem,
        ..JwtConfig::default()
    };
    let err = JwtVerifier::from_config(&JwtConfig {
        algorithms: vec!["HS256".to_owned()],
        ..config
    })
    .unwrap_err();
    assert!(matches!(err, AuthSetupError::SecretIsPem { .. }), "{err}");
    assert!(err.to_string().starts_with("auth.jwt.secret: "), "{err}");
}

#[test]
fn a_key_of_another_type_is_never_used() {
    let now = now();
    let v = verifier(&jwks_config(&["RS256", "ES256"], fixture("jwks.json")));
    // An ES256 token naming the RSA key's kid, and the reverse.
    let es = sign(Algorithm::ES256, Some(RSA_KID), &claims("alice", now));
    assert_eq!(verify_as(&v, &es, "alice", now), Err(Failure::UnknownKey));
    let rs = sign(Algorithm::RS256, Some(EC256_KID), &claims("alice", now));
    assert_eq!(verify_as(&v, &rs, "alice", now), Err(Failure::UnknownKey));
}

#[test]
fn a_bad_signature_is_refused() {
    let now = now();
    for name in ALL {
        let alg: Algorithm = name.parse().unwrap();
        let v = verifier(&jwt_config(&[name]));
        let token = sign(alg, None, &claims("alice", now));
        let mallory = sign(alg, None, &claims("mallory", now));
        // Alice's signature on Mallory's claims.
        let (forged, _) = mallory.rsplit_once('.').unwrap();
        let (_, signature) = token.rsplit_once('.').unwrap();
        let forged = format!("{forged}.{signature}");
        assert_eq!(
            verify_as(&v, &forged, "mallory", now),
            Err(Failure::InvalidSignature),
            "{name}"
        );
    }
    let other_secret = sign_with(
        Algorithm::HS256,
        None,
        &claims("alice", now),
        &EncodingKey::from_secret(b"another secret"),
    );
    let v = verifier(&jwt_config(&["HS256"]));
    assert_eq!(
        verify_as(&v, &other_secret, "alice", now),
        Err(Failure::InvalidSignature)
    );
}

#[test]
fn exp_nbf_and_iat_are_checked_with_the_leeway() {
    let now = now();
    let t = unix(now);
    let leeway = 30;
    let v = verifier(&JwtConfig {
        leeway: Duration::from_secs(leeway as u64),
        ..jwt_config(&["HS256"])
    });
    let cases = [
        (json!({ "rid": "alice", "exp": t - leeway + 2 }), Ok(())),
        (
            json!({ "rid": "alice", "exp": t - leeway - 2 }),
            Err(Failure::Expired),
        ),
        (
            json!({ "rid": "alice", "exp": t - leeway }),
            Err(Failure::Expired),
        ),
        (json!({ "rid": "alice", "nbf": t + leeway - 2 }), Ok(())),
        (
            json!({ "rid": "alice", "nbf": t + leeway + 2 }),
            Err(Failure::NotYetValid),
        ),
        (json!({ "rid": "alice", "iat": t + leeway - 2 }), Ok(())),
        (
            json!({ "rid": "alice", "iat": t + leeway + 2 }),
            Err(Failure::NotYetValid),
        ),
        // No exp at all: the fork accepts it, and so do we.
        (json!({ "rid": "alice" }), Ok(())),
        (json!({ "rid": "alice", "exp": t as f64 + 0.5 }), Ok(())),
    ];
    for (claims, expected) in cases {
        let token = sign(Algorithm::HS256, None, &claims);
        // A fresh verifier-shard each time, so the cache plays no part.
        let got = verify_as(&v.for_shard(), &token, "alice", now).map(|_| ());
        assert_eq!(got, expected, "{claims}");
    }
}

#[test]
fn issuer_and_audience_are_checked_when_required() {
    let now = now();
    let t = unix(now);
    let v = verifier(&JwtConfig {
        issuer: "https://id.example".to_owned(),
        audience: "mqtt".to_owned(),
        ..jwt_config(&["ES256"])
    });
    let iss = "https://id.example";
    let cases = [
        (json!({ "rid": "a", "iss": iss, "aud": "mqtt" }), Ok(())),
        (
            json!({ "rid": "a", "iss": iss, "aud": ["web", "mqtt"] }),
            Ok(()),
        ),
        (
            json!({ "rid": "a", "iss": "https://evil", "aud": "mqtt" }),
            Err(Failure::WrongIssuer),
        ),
        (
            json!({ "rid": "a", "aud": "mqtt" }),
            Err(Failure::WrongIssuer),
        ),
        (
            json!({ "rid": "a", "iss": [iss], "aud": "mqtt" }),
            Err(Failure::WrongIssuer),
        ),
        (
            json!({ "rid": "a", "iss": iss, "aud": "web" }),
            Err(Failure::WrongAudience),
        ),
        (
            json!({ "rid": "a", "iss": iss, "aud": ["web"] }),
            Err(Failure::WrongAudience),
        ),
        (
            json!({ "rid": "a", "iss": iss }),
            Err(Failure::WrongAudience),
        ),
        (
            json!({ "rid": "a", "iss": iss, "aud": 7, "exp": t + 9 }),
            Err(Failure::WrongAudience),
        ),
    ];
    for (claims, expected) in cases {
        let token = sign(Algorithm::ES256, None, &claims);
        let got = verify_as(&v, &token, "a", now).map(|_| ());
        assert_eq!(got, expected, "{claims}");
    }
    // Not required: not checked.
    let open = verifier(&jwt_config(&["ES256"]));
    let token = sign(
        Algorithm::ES256,
        None,
        &json!({ "rid": "a", "iss": "x", "aud": "y" }),
    );
    assert!(verify_as(&open, &token, "a", now).is_ok());
}

#[test]
fn the_binding_claim_must_equal_the_username_or_client_id() {
    let now = now();
    let by_username = verifier(&jwt_config(&["HS256"]));
    let alice = sign(Algorithm::HS256, None, &claims("alice", now));
    let v = &by_username;
    assert!(v.verify_at(&alice, Some("alice"), "any", now).is_ok());
    assert_eq!(
        v.verify_at(&alice, Some("bob"), "alice", now),
        Err(Failure::UsernameRidMismatch)
    );
    assert_eq!(
        v.verify_at(&alice, None, "alice", now),
        Err(Failure::UsernameRidMismatch)
    );
    for no_rid in [json!({ "sub": "alice" }), json!({ "rid": null })] {
        let token = sign(Algorithm::HS256, None, &no_rid);
        assert_eq!(
            v.verify_at(&token, Some("alice"), "alice", now),
            Err(Failure::MissingRid),
            "{no_rid}"
        );
    }
    // A number compares as its JSON text.
    let numeric = sign(Algorithm::HS256, None, &json!({ "rid": 42 }));
    assert!(v.verify_at(&numeric, Some("42"), "c", now).is_ok());
    assert_eq!(
        v.verify_at(&numeric, Some("\"42\""), "c", now),
        Err(Failure::UsernameRidMismatch)
    );

    let by_client_id = verifier(&JwtConfig {
        bind_claim: "sub".to_owned(),
        bind_to: BindTo::ClientId,
        ..jwt_config(&["HS256"])
    });
    let device = sign(
        Algorithm::HS256,
        None,
        &json!({ "sub": "device-1:owner-7" }),
    );
    let v = &by_client_id;
    assert!(v
        .verify_at(&device, Some("anyone"), "device-1:owner-7", now)
        .is_ok());
    assert!(v.verify_at(&device, None, "device-1:owner-7", now).is_ok());
    assert_eq!(
        v.verify_at(&device, Some("device-1:owner-7"), "device-2", now),
        Err(Failure::UsernameRidMismatch)
    );

    let unbound = verifier(&JwtConfig {
        bind_claim: String::new(),
        ..jwt_config(&["HS256"])
    });
    let anything = sign(Algorithm::HS256, None, &json!({ "x": 1 }));
    assert!(unbound.verify_at(&anything, None, "c", now).is_ok());
}

#[test]
fn claims_are_returned_as_text() {
    let now = now();
    let v = verifier(&jwt_config(&["HS256"]));
    let token = sign(
        Algorithm::HS256,
        None,
        &json!({
            "rid": "alice", "n": 42, "f": 1.5, "b": true, "nothing": null,
            "list": [1, "x"], "obj": { "k": "v" }
        }),
    );
    let claims = verify_as(&v, &token, "alice", now).unwrap();
    let expected = [
        ("b", "true"),
        ("f", "1.5"),
        ("list", r#"[1,"x"]"#),
        ("n", "42"),
        ("obj", r#"{"k":"v"}"#),
        ("rid", "alice"),
    ];
    let got: Vec<(&str, &str)> = claims
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn the_cache_still_checks_binding_and_expiry() {
    let now = now();
    let v = verifier(&jwt_config(&["RS256"]));
    let token = sign(
        Algorithm::RS256,
        None,
        &json!({ "rid": "alice", "exp": unix(now) + 60 }),
    );
    assert!(verify_as(&v, &token, "alice", now).is_ok());
    assert_eq!(v.cached(), 1);
    // A hit, for someone else: refused.
    assert_eq!(
        verify_as(&v, &token, "bob", now),
        Err(Failure::UsernameRidMismatch)
    );
    assert!(verify_as(&v, &token, "alice", now + Duration::from_secs(60)).is_ok());
    assert_eq!(v.cached(), 1);
    // Past exp plus the leeway: refused, cached or not.
    let later = now + Duration::from_secs(60 + 30);
    assert_eq!(verify_as(&v, &token, "alice", later), Err(Failure::Expired));
    // Failures are not cached.
    let expired = sign(Algorithm::RS256, None, &json!({ "rid": "x", "exp": 1 }));
    assert_eq!(verify_as(&v, &expired, "x", now), Err(Failure::Expired));
    assert_eq!(v.cached(), 0);
}

#[test]
fn a_cached_token_without_exp_is_verified_again_after_ten_minutes() {
    let now = now();
    let v = verifier(&jwt_config(&["HS256"]));
    let token = sign(Algorithm::HS256, None, &json!({ "rid": "alice" }));
    assert!(verify_as(&v, &token, "alice", now).is_ok());
    assert_eq!(v.cached(), 1);
    assert!(verify_as(&v, &token, "alice", now + Duration::from_secs(601)).is_ok());
    assert_eq!(v.cached(), 1, "evicted, verified, cached again");
}

#[test]
fn the_cache_is_bounded_and_per_shard() {
    let now = now();
    let v = verifier(&jwt_config(&["HS256"])).with_cache_capacity(4);
    for i in 0..10 {
        let token = sign(Algorithm::HS256, None, &json!({ "rid": "alice", "i": i }));
        assert!(verify_as(&v, &token, "alice", now).is_ok());
        assert!(v.cached() <= 4, "{}", v.cached());
    }
    let other = v.for_shard();
    assert_eq!(other.cached(), 0);
    let off = verifier(&jwt_config(&["HS256"])).with_cache_capacity(0);
    let token = sign(Algorithm::HS256, None, &claims("alice", now));
    assert!(verify_as(&off, &token, "alice", now).is_ok());
    assert_eq!(off.cached(), 0);
}

#[test]
fn jwks_keys_are_chosen_by_kid() {
    let now = now();
    let v = verifier(&jwks_config(&["RS256", "ES256"], fixture("jwks.json")));
    let unknown = sign(Algorithm::RS256, Some("nope"), &claims("alice", now));
    assert_eq!(
        verify_as(&v, &unknown, "alice", now),
        Err(Failure::UnknownKey)
    );
    // Without kid, a set of several keys has no answer.
    let no_kid = sign(Algorithm::RS256, None, &claims("alice", now));
    assert_eq!(
        verify_as(&v, &no_kid, "alice", now),
        Err(Failure::UnknownKey)
    );

    // A set of one key serves tokens without kid.
    let dir = temp_dir();
    let single = dir.join("single.json");
    let jwks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("jwks.json")).unwrap()).unwrap();
    let rsa = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == RSA_KID)
        .unwrap()
        .clone();
    std::fs::write(&single, json!({ "keys": [rsa] }).to_string()).unwrap();
    let v = verifier(&jwks_config(&["RS256"], single));
    assert!(verify_as(&v, &no_kid, "alice", now).is_ok());
    let es = sign(Algorithm::ES256, None, &claims("alice", now));
    assert_eq!(
        verify_as(&v, &es, "alice", now),
        Err(Failure::AlgorithmNotAllowed)
    );
}

/// The fixture JWKS with only the keys whose kid `keep` accepts.
fn jwks_with(keep: impl Fn(&str) -> bool) -> String {
    let jwks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("jwks.json")).unwrap()).unwrap();
    let keys: Vec<_> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| keep(k["kid"].as_str().unwrap()))
        .cloned()
        .collect();
    json!({ "keys": keys }).to_string()
}

#[test]
fn the_jwks_file_is_read_again_when_it_changes() {
    let now = now();
    let dir = temp_dir();
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks_with(|kid| kid == RSA_KID)).unwrap();
    let v = verifier(&jwks_config(&["RS256", "ES256"], path.clone()))
        .with_reload_interval(Duration::ZERO);
    let shard2 = v.for_shard();
    let rs = sign(Algorithm::RS256, Some(RSA_KID), &claims("alice", now));
    let es = sign(Algorithm::ES256, Some(EC256_KID), &claims("alice", now));
    assert!(verify_as(&v, &rs, "alice", now).is_ok());
    assert_eq!(verify_as(&v, &es, "alice", now), Err(Failure::UnknownKey));

    assert_eq!(v.cached(), 1);

    // A key is added: the new file replaces the keys (and empties the caches).
    std::fs::write(&path, jwks_with(|_| true)).unwrap();
    assert!(verify_as(&v, &es, "alice", now).is_ok());
    assert!(verify_as(&v, &rs, "alice", now).is_ok());
    assert!(verify_as(&shard2, &es, "alice", now).is_ok());
    assert_eq!(v.cached(), 2);

    // The RSA key is withdrawn: its cached token goes with it, on every shard.
    std::fs::write(&path, jwks_with(|kid| kid != RSA_KID)).unwrap();
    assert_eq!(verify_as(&v, &rs, "alice", now), Err(Failure::UnknownKey));
    assert_eq!(v.cached(), 0);
    assert_eq!(
        verify_as(&shard2, &rs, "alice", now),
        Err(Failure::UnknownKey)
    );
    assert!(verify_as(&shard2, &es, "alice", now).is_ok());

    // A broken file keeps the keys read before.
    std::fs::write(&path, "{ not json").unwrap();
    assert!(verify_as(&v, &es, "alice", now).is_ok());
    assert_eq!(verify_as(&v, &rs, "alice", now), Err(Failure::UnknownKey));
}

#[test]
fn the_jwks_file_is_looked_at_at_most_once_per_interval() {
    let now = now();
    let dir = temp_dir();
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks_with(|kid| kid == RSA_KID)).unwrap();
    let v = verifier(&jwks_config(&["ES256"], path.clone()))
        .with_reload_interval(Duration::from_millis(400));
    let es = sign(Algorithm::ES256, Some(EC256_KID), &claims("alice", now));
    std::fs::write(&path, jwks_with(|_| true)).unwrap();
    // Within the interval since loading, even an unknown kid waits.
    assert_eq!(verify_as(&v, &es, "alice", now), Err(Failure::UnknownKey));
    std::thread::sleep(Duration::from_millis(500));
    assert!(verify_as(&v, &es, "alice", now).is_ok());
}

#[test]
fn key_files_that_cannot_be_used_are_setup_errors_naming_the_file() {
    let dir = temp_dir();
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "hello").unwrap();
    let jwks_oct = dir.join("oct.json");
    std::fs::write(
        &jwks_oct,
        r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}"#,
    )
    .unwrap();
    let not_jwks = dir.join("not.json");
    std::fs::write(&not_jwks, r#"{"kty":"RSA"}"#).unwrap();
    let pem = |path: PathBuf, algs: &[&str]| JwtConfig {
        algorithms: algs.iter().map(|a| a.to_string()).collect(),
        public_key_file: path,
        ..JwtConfig::default()
    };
    let cases: Vec<(JwtConfig, &str)> = vec![
        (
            pem(fixture("rsa-private.pem"), &["RS256"]),
            "this is a private key",
        ),
        (
            pem(garbage.clone(), &["RS256"]),
            "not an RSA, EC or Ed25519 public key in PEM",
        ),
        (
            pem(fixture("rsa-public.pem"), &["RS256", "ES256"]),
            "an RSA key cannot verify ES256",
        ),
        (
            pem(fixture("ec-p256-public.pem"), &["ES384"]),
            "an EC P-256 key cannot verify ES384",
        ),
        (pem(dir.join("missing.pem"), &["RS256"]), "cannot read it"),
        (
            jwks_config(&["RS256"], jwks_oct.clone()),
            "no usable signature key",
        ),
        (
            jwks_config(&["RS256"], not_jwks.clone()),
            "not a JWKS document",
        ),
        (
            JwtConfig {
                algorithms: vec!["HS256".to_owned()],
                ..JwtConfig::default()
            },
            "no HMAC secret is configured",
        ),
        (
            JwtConfig {
                algorithms: vec!["PS256".to_owned()],
                ..JwtConfig::default()
            },
            "\"PS256\" is not supported",
        ),
    ];
    for (config, message) in cases {
        let err = JwtVerifier::from_config(&config).unwrap_err().to_string();
        assert!(err.contains(message), "{err}");
        let file = [&config.public_key_file, &config.jwks_file]
            .into_iter()
            .find(|p| !p.as_os_str().is_empty());
        if let Some(file) = file {
            assert!(err.contains(&*file.to_string_lossy()), "{err}");
        }
    }
}

#[test]
fn debug_output_holds_no_secret() {
    let v = verifier(&jwt_config(&["HS256", "RS256"]));
    let debug = format!("{v:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("HS256"), "{debug}");
}
