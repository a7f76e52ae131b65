//! Tests of the authenticators, with tokens signed here by the fixture keys in
//! `tests/fixtures/jwt/` (generated once with the `openssl` CLI).

mod jwt;
mod offload;
mod password;
mod rules;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey, Header};
use serde_json::{json, Value};

use super::jwt::base64url;
use crate::config::JwtConfig;

/// The HMAC secret of the tests' HS tokens.
const SECRET: &str = "a shared secret of 32 bytes or more";

const RSA_PRIVATE: &[u8] = include_bytes!("../../../tests/fixtures/jwt/rsa-private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../../../tests/fixtures/jwt/rsa-public.pem");
const EC256_PRIVATE: &[u8] = include_bytes!("../../../tests/fixtures/jwt/ec-p256-private.pem");
const EC384_PRIVATE: &[u8] = include_bytes!("../../../tests/fixtures/jwt/ec-p384-private.pem");
const ED25519_PRIVATE: &[u8] = include_bytes!("../../../tests/fixtures/jwt/ed25519-private.pem");

/// The kids of the fixture JWKS file, one per key.
const RSA_KID: &str = "rsa-2048";
const EC256_KID: &str = "ec-p256";
const EC384_KID: &str = "ec-p384";
const ED25519_KID: &str = "ed25519";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

/// A fresh directory for files a test writes.
fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "shardmq-auth-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The PEM public key file that verifies `alg`.
fn public_key_for(alg: Algorithm) -> PathBuf {
    fixture(match alg {
        Algorithm::ES256 => "ec-p256-public.pem",
        Algorithm::ES384 => "ec-p384-public.pem",
        Algorithm::EdDSA => "ed25519-public.pem",
        _ => "rsa-public.pem",
    })
}

/// The fixture key that signs `alg`.
fn signing_key(alg: Algorithm) -> EncodingKey {
    match alg.family() {
        AlgorithmFamily::Hmac => EncodingKey::from_secret(SECRET.as_bytes()),
        AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        AlgorithmFamily::Ec if alg == Algorithm::ES384 => {
            EncodingKey::from_ec_pem(EC384_PRIVATE).unwrap()
        }
        AlgorithmFamily::Ec => EncodingKey::from_ec_pem(EC256_PRIVATE).unwrap(),
        AlgorithmFamily::Ed => EncodingKey::from_ed_pem(ED25519_PRIVATE).unwrap(),
    }
}

/// The fixture JWKS kid of the key that signs `alg`.
fn kid_for(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES256 => EC256_KID,
        Algorithm::ES384 => EC384_KID,
        Algorithm::EdDSA => ED25519_KID,
        _ => RSA_KID,
    }
}

/// `claims` signed with the fixture key for `alg`, naming `kid`.
fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    sign_with(alg, kid, claims, &signing_key(alg))
}

fn sign_with(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// A token from raw header and claims JSON, HS256-signed with `SECRET`: for
/// headers and claims `jsonwebtoken::encode` would not write.
fn hs256_raw(header: &str, claims: &str) -> String {
    let signed = format!(
        "{}.{}",
        base64url::encode(header.as_bytes()),
        base64url::encode(claims.as_bytes())
    );
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let signature = jsonwebtoken::crypto::sign(signed.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{signed}.{signature}")
}

/// Unix seconds of `t`.
fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The tests' clock: a whole second, so that claims at `now ± n` are exact.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix(SystemTime::now()) as u64)
}

/// Claims bound to `rid`, valid for a minute from `now`.
fn claims(rid: &str, now: SystemTime) -> Value {
    json!({ "rid": rid, "exp": unix(now) + 60, "iat": unix(now) })
}

/// `[auth.jwt]` accepting `algorithms`, with the key source each needs: the
/// secret for HS, the matching PEM key for the others.
fn jwt_config(algorithms: &[&str]) -> JwtConfig {
    let mut config = JwtConfig {
        algorithms: algorithms.iter().map(|a| a.to_string()).collect(),
        ..JwtConfig::default()
    };
    for name in algorithms {
        let alg: Algorithm = name.parse().unwrap();
        match alg.family() {
            AlgorithmFamily::Hmac => config.secret = SECRET.to_owned(),
            _ => config.public_key_file = public_key_for(alg),
        }
    }
    config
}
