//! Where the verification keys come from: the HMAC secret, one PEM public key,
//! or a JWKS file that is read again when it changes.
//!
//! Every key knows its type, and a token's `alg` only ever meets a key of its
//! own type: that is what stops HS/RS key confusion (a public key's bytes used
//! as an HMAC secret) and curve or family mix-ups, whatever the token claims.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::base64url;
use crate::auth::setup::read_file;
use crate::auth::{AuthSetupError, Failure};
use crate::config::JwtConfig;

/// RSA moduli shorter than this are refused: 1024-bit RSA is within reach of
/// a well-funded attacker, and JWT issuers have used 2048+ for a decade.
const MIN_RSA_BITS: usize = 2048;

/// What a key can verify: the type fixes the algorithm family, and for EC the
/// curve fixes the one algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Hmac,
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyType {
    pub fn verifies(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (KeyType::Hmac, HS256 | HS384 | HS512)
                | (KeyType::Rsa, RS256 | RS384 | RS512)
                | (KeyType::P256, ES256)
                | (KeyType::P384, ES384)
                | (KeyType::Ed25519, EdDSA)
        )
    }

    pub fn describe(self) -> &'static str {
        match self {
            KeyType::Hmac => "an HMAC secret",
            KeyType::Rsa => "an RSA key",
            KeyType::P256 => "an EC P-256 key",
            KeyType::P384 => "an EC P-384 key",
            KeyType::Ed25519 => "an Ed25519 key",
        }
    }

    /// The one algorithm a key of this type verifies, for checking that it loads.
    fn probe_algorithm(self) -> Algorithm {
        match self {
            KeyType::Hmac => Algorithm::HS256,
            KeyType::Rsa => Algorithm::RS256,
            KeyType::P256 => Algorithm::ES256,
            KeyType::P384 => Algorithm::ES384,
            KeyType::Ed25519 => Algorithm::EdDSA,
        }
    }
}

/// One verification key.
pub struct Key {
    /// The JWK's `kid`, which tokens name in their header; `None` for the
    /// secret and a PEM key, which are the only key of their kind.
    pub kid: Option<String>,
    pub key_type: KeyType,
    /// The JWK's `alg`, when it names one: the key then verifies only that.
    pub pinned: Option<Algorithm>,
    pub decoding: DecodingKey,
}

impl Key {
    fn new(key_type: KeyType, decoding: DecodingKey) -> Key {
        Key {
            kid: None,
            key_type,
            pinned: None,
            decoding,
        }
    }

    pub fn verifies(&self, alg: Algorithm) -> bool {
        self.key_type.verifies(alg) && self.pinned.is_none_or(|p| p == alg)
    }

    /// Whether the crypto backend accepts the key: a verifier is built from it
    /// (EC points are checked to be on the curve, Ed25519 points decoded).
    fn loads(&self) -> bool {
        jsonwebtoken::crypto::verify("", b"", &self.decoding, self.key_type.probe_algorithm())
            .is_ok()
    }
}

/// The `alg` names this broker verifies, as spelled in a token header.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The HMAC secret from `secret`, `secret-file` or `secret-env`, if one is set.
pub fn hmac_key(config: &JwtConfig) -> Result<Option<Key>, AuthSetupError> {
    let (source_key, secret) = if !config.secret.is_empty() {
        (
            "auth.jwt.secret".to_owned(),
            config.secret.as_bytes().to_vec(),
        )
    } else if !config.secret_file.as_os_str().is_empty() {
        let mut bytes = read_file("auth.jwt.secret-file", &config.secret_file)?;
        // Editors and `echo` end files with a newline that is not part of the secret.
        while matches!(bytes.last(), Some(b'\n' | b'\r')) {
            bytes.pop();
        }
        let source_key = format!("auth.jwt.secret-file \"{}\"", config.secret_file.display());
        (source_key, bytes)
    } else if !config.secret_env.is_empty() {
        let value =
            std::env::var_os(&config.secret_env).ok_or_else(|| AuthSetupError::SecretEnvUnset {
                var: config.secret_env.clone(),
            })?;
        let source_key = format!("auth.jwt.secret-env {}", config.secret_env);
        (source_key, value.into_encoded_bytes())
    } else {
        return Ok(None);
    };
    if secret.is_empty() {
        return Err(AuthSetupError::EmptySecret { source_key });
    }
    if pem_label(&secret).is_some() {
        return Err(AuthSetupError::SecretIsPem { source_key });
    }
    Ok(Some(Key::new(
        KeyType::Hmac,
        DecodingKey::from_secret(&secret),
    )))
}

/// The label of the first `-----BEGIN <label>-----` line, if the bytes hold one.
fn pem_label(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let len = text[start..].find("-----")?;
    Some(text[start..start + len].to_owned())
}

/// The public key in the PEM file at `path`, which must verify every
/// asymmetric algorithm in `algorithms` (one PEM key cannot serve two types).
pub fn pem_key(path: &Path, algorithms: &[Algorithm]) -> Result<Key, AuthSetupError> {
    let bytes = read_file("auth.jwt.public-key-file", path)?;
    let bad = |problem: String| AuthSetupError::BadPublicKey {
        path: path.to_owned(),
        problem,
    };
    let label = pem_label(&bytes).ok_or_else(|| bad("no \"-----BEGIN\" line".to_owned()))?;
    if label.contains("PRIVATE") {
        return Err(AuthSetupError::PrivateKey {
            path: path.to_owned(),
        });
    }
    let key = if let Ok(rsa) = DecodingKey::from_rsa_pem(&bytes) {
        let der = rsa.try_get_as_bytes().map_err(|e| bad(e.to_string()))?;
        let (n, e) = (DEFAULT_PROVIDER
            .key_utils
            .rsa_pub_components_from_public_key)(der)
        .map_err(|e| bad(format!("RSA: {e}")))?;
        check_rsa_size(&n).map_err(bad)?;
        Key::new(KeyType::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
    } else if let Ok(ec) = DecodingKey::from_ec_pem(&bytes) {
        let point_len = ec.try_get_as_bytes().map_or(0, <[u8]>::len);
        let key_type = match point_len {
            65 => KeyType::P256,
            97 => KeyType::P384,
            _ => {
                return Err(bad(
                    "an EC key not on P-256 or P-384, or compressed".to_owned()
                ))
            }
        };
        Key::new(key_type, ec)
    } else if let Ok(ed) = DecodingKey::from_ed_pem(&bytes) {
        if ed.try_get_as_bytes().map_or(0, <[u8]>::len) != 32 {
            return Err(bad("an Ed25519 key must be 32 bytes".to_owned()));
        }
        Key::new(KeyType::Ed25519, ed)
    } else {
        return Err(bad(format!("a \"{label}\" block of none of these types")));
    };
    if !key.loads() {
        return Err(bad(format!(
            "{} that does not decode",
            key.key_type.describe()
        )));
    }
    let misfit = algorithms
        .iter()
        .find(|a| a.family() != AlgorithmFamily::Hmac && !key.verifies(**a));
    if let Some(alg) = misfit {
        return Err(AuthSetupError::KeyDoesNotFit {
            path: path.to_owned(),
            key_type: key.key_type.describe(),
            algorithm: format!("{alg:?}"),
        });
    }
    Ok(key)
}

fn check_rsa_size(modulus: &[u8]) -> Result<(), String> {
    let leading = modulus.iter().take_while(|b| **b == 0).count();
    let bits = match modulus.get(leading) {
        Some(first) => (modulus.len() - leading) * 8 - first.leading_zeros() as usize,
        None => 0,
    };
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "an RSA key of {bits} bits; use at least {MIN_RSA_BITS}"
        ));
    }
    Ok(())
}

/// The asymmetric keys: one PEM key, or the keys of a JWKS file.
pub enum PublicKeys {
    Pem(Arc<Key>),
    Jwks(Arc<Jwks>),
}

impl PublicKeys {
    /// The key generation: it changes whenever the JWKS file's keys are
    /// replaced, which makes every shard drop its verified-token cache.
    pub fn generation(&self) -> u64 {
        match self {
            PublicKeys::Pem(_) => 0,
            PublicKeys::Jwks(jwks) => {
                jwks.refresh(false);
                jwks.current.load().generation
            }
        }
    }

    /// The key for a token of `alg` naming `kid`, with the generation of the
    /// set it was found in. A PEM key ignores `kid`; a JWKS key must carry
    /// that kid, or be the set's only key when the token names none.
    pub fn select(&self, alg: Algorithm, kid: Option<&str>) -> Result<(Arc<Key>, u64), Failure> {
        match self {
            PublicKeys::Pem(key) if key.verifies(alg) => Ok((Arc::clone(key), 0)),
            PublicKeys::Pem(_) => Err(Failure::UnknownKey),
            PublicKeys::Jwks(jwks) => {
                let set = jwks.current.load_full();
                if let Some(key) = set.find(alg, kid) {
                    return Ok((key, set.generation));
                }
                // A kid never seen may be a key published since the last read.
                let unknown = kid.is_some_and(|kid| !set.has_kid(kid));
                if unknown && jwks.refresh(true) {
                    let set = jwks.current.load_full();
                    if let Some(key) = set.find(alg, kid) {
                        return Ok((key, set.generation));
                    }
                }
                Err(Failure::UnknownKey)
            }
        }
    }
}

/// One reading of the JWKS file.
pub struct KeySet {
    /// Counts the readings that replaced the keys.
    generation: u64,
    /// The file's modification time and length when it was read.
    fingerprint: Option<Fingerprint>,
    /// SHA-256 of the file's contents, so that reading an unchanged file
    /// (an unknown kid forces a read) keeps the shards' caches.
    digest: [u8; 32],
    keys: Vec<Arc<Key>>,
}

impl KeySet {
    fn find(&self, alg: Algorithm, kid: Option<&str>) -> Option<Arc<Key>> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid) && k.verifies(alg))
                .cloned(),
            None => match &self.keys[..] {
                [only] if only.verifies(alg) => Some(Arc::clone(only)),
                _ => None,
            },
        }
    }

    fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

type Fingerprint = (Option<SystemTime>, u64);

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok(), meta.len()))
}

/// A JWKS file shared by every shard's verifier. Any shard may notice a change
/// and swap in the new keys; the others see them on their next token.
///
/// Reading happens on the shard that notices, so it blocks that shard for one
/// small file read: at most once per interval (one second by default), since
/// an attacker can send unknown kids at will.
pub struct Jwks {
    path: PathBuf,
    current: ArcSwap<KeySet>,
    /// The origin of `last_check_ms`.
    started: Instant,
    /// When a shard last looked at the file, in ms since `started`: one
    /// shard per interval wins the compare-exchange and looks.
    last_check_ms: AtomicU64,
    /// The least time between two looks at the file, in ms.
    interval_ms: AtomicU64,
}

impl Jwks {
    pub fn load(path: &Path) -> Result<Jwks, AuthSetupError> {
        let fingerprint = fingerprint(path);
        let bytes = read_file("auth.jwt.jwks-file", path)?;
        let keys = parse_jwks(&bytes, path).map_err(|problem| AuthSetupError::Jwks {
            path: path.to_owned(),
            problem,
        })?;
        Ok(Jwks {
            path: path.to_owned(),
            current: ArcSwap::from_pointee(KeySet {
                generation: 1,
                fingerprint,
                digest: Sha256::digest(&bytes).into(),
                keys,
            }),
            started: Instant::now(),
            last_check_ms: AtomicU64::new(0),
            interval_ms: AtomicU64::new(1000),
        })
    }

    pub fn set_interval(&self, interval: Duration) {
        let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        self.interval_ms.store(ms, Relaxed);
    }

    /// Looks at the file if the interval has passed since the last look (by
    /// any shard), and reads it again if it changed, or anyway when `force`.
    /// Returns whether new keys were swapped in. A file that no longer parses
    /// keeps the old keys, with a warning.
    pub fn refresh(&self, force: bool) -> bool {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_check_ms.load(Relaxed);
        if now.saturating_sub(last) < self.interval_ms.load(Relaxed) {
            return false;
        }
        if self
            .last_check_ms
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_err()
        {
            return false; // another shard is looking
        }
        let fingerprint = fingerprint(&self.path);
        let current = self.current.load_full();
        if !force && fingerprint == current.fingerprint {
            return false;
        }
        // Whatever happens, this version of the file has been seen: an
        // unchanged (or unchanged broken) file is not read every interval.
        let seen = |digest| KeySet {
            generation: current.generation,
            fingerprint,
            digest,
            keys: current.keys.clone(),
        };
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.warn(&format!("cannot read it: {e}"));
                self.current.store(Arc::new(seen(current.digest)));
                return false;
            }
        };
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if digest == current.digest {
            self.current.store(Arc::new(seen(digest)));
            return false;
        }
        match parse_jwks(&bytes, &self.path) {
            Ok(keys) => {
                tracing::info!(
                    path = %self.path.display(),
                    keys = keys.len(),
                    "auth.jwt.jwks-file read again"
                );
                self.current.store(Arc::new(KeySet {
                    generation: current.generation + 1,
                    fingerprint,
                    digest,
                    keys,
                }));
                true
            }
            Err(problem) => {
                self.warn(&problem);
                self.current.store(Arc::new(seen(digest)));
                false
            }
        }
    }
}

impl Jwks {
    fn warn(&self, problem: &str) {
        tracing::warn!(
            path = %self.path.display(),
            "auth.jwt.jwks-file: {problem}; keeping the keys read before"
        );
    }
}

/// The JWK members this broker reads (RFC 7517, 7518); others are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    key_use: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

/// The usable signature keys of a JWKS document. Keys that cannot be used are
/// skipped with a warning (JWKS files often carry encryption keys and keys of
/// other types); a file with no usable key at all is an error.
fn parse_jwks(bytes: &[u8], path: &Path) -> Result<Vec<Arc<Key>>, String> {
    let raw: RawJwks = serde_json::from_slice(bytes).map_err(|e| {
        format!("not a JWKS document ({e}); expected {{\"keys\": [...]}} (RFC 7517 section 5)")
    })?;
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (i, value) in raw.keys.into_iter().enumerate() {
        match parse_jwk(value) {
            Ok(Some(key)) => keys.push(Arc::new(key)),
            Ok(None) => {}
            Err(problem) => skipped.push(format!("keys[{i}]: {problem}")),
        }
    }
    if keys.is_empty() {
        let why = match skipped.is_empty() {
            true => String::new(),
            false => format!(" ({})", skipped.join("; ")),
        };
        return Err(format!("no usable signature key{why}"));
    }
    for problem in skipped {
        tracing::warn!(path = %path.display(), "auth.jwt.jwks-file: skipping {problem}");
    }
    Ok(keys)
}

/// One JWK as a key; `Ok(None)` for an encryption key, skipped silently.
fn parse_jwk(value: serde_json::Value) -> Result<Option<Key>, String> {
    let raw: RawJwk = serde_json::from_value(value).map_err(|e| e.to_string())?;
    if raw.key_use.as_deref() == Some("enc") {
        return Ok(None);
    }
    let pinned = match raw.alg.as_deref() {
        None => None,
        Some(name) => Some(
            parse_algorithm(name)
                .ok_or_else(|| format!("alg \"{name}\" is not one this broker verifies"))?,
        ),
    };
    let field = |name: &str, value: &Option<String>| -> Result<Vec<u8>, String> {
        let text = value.as_deref().ok_or_else(|| format!("no \"{name}\""))?;
        base64url::decode(text).ok_or_else(|| format!("\"{name}\" is not base64url"))
    };
    let (key_type, decoding) = match (raw.kty.as_str(), raw.crv.as_deref()) {
        ("RSA", _) => {
            let n = field("n", &raw.n)?;
            let e = field("e", &raw.e)?;
            check_rsa_size(&n)?;
            if e.is_empty() {
                return Err("\"e\" is empty".to_owned());
            }
            (KeyType::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (key_type, len) = match crv {
                "P-256" => (KeyType::P256, 32),
                _ => (KeyType::P384, 48),
            };
            let x = field("x", &raw.x)?;
            let y = field("y", &raw.y)?;
            if x.len() != len || y.len() != len {
                return Err(format!("{crv} coordinates must be {len} bytes"));
            }
            // The uncompressed SEC1 point, which is what the EC verifier reads.
            let point = [&[0x04][..], &x, &y].concat();
            (key_type, DecodingKey::from_ec_der(&point))
        }
        ("OKP", Some("Ed25519")) => {
            let x = field("x", &raw.x)?;
            if x.len() != 32 {
                return Err("an Ed25519 \"x\" must be 32 bytes".to_owned());
            }
            (KeyType::Ed25519, DecodingKey::from_ed_der(&x))
        }
        ("oct", _) => {
            return Err(
                "an HMAC secret (kty \"oct\") is not read from a JWKS file, \
                        which is meant to be public; use auth.jwt.secret-file"
                    .to_owned(),
            )
        }
        (kty, crv) => {
            let crv = crv.map(|c| format!(" crv \"{c}\"")).unwrap_or_default();
            return Err(format!("kty \"{kty}\"{crv} is not supported"));
        }
    };
    let key = Key {
        kid: raw.kid,
        key_type,
        pinned,
        decoding,
    };
    if let Some(alg) = pinned.filter(|a| !key_type.verifies(*a)) {
        return Err(format!("alg {alg:?} does not fit {}", key_type.describe()));
    }
    if !key.loads() {
        return Err(format!("{} that does not decode", key_type.describe()));
    }
    Ok(Some(key))
}
