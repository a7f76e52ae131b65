//! JWT authentication (DESIGN section 4): the fork's HS256 tokens bound to the
//! username by `rid`, and beyond it RS/ES/EdDSA keys from a PEM file or a
//! JWKS file, `iss`/`aud` checks with a clock-skew leeway, and a configurable
//! binding claim.
//!
//! A token is refused, with the [`Failure`] in brackets, when:
//! - it is not three base64url parts with JSON header and claims, or has a
//!   `crit` header we would have to understand [`MalformedToken`];
//! - its `alg` is not in `auth.jwt.algorithms`; `none` never is
//!   [`AlgorithmNotAllowed`];
//! - no key of its algorithm's type has its `kid` [`UnknownKey`];
//! - the signature does not verify [`InvalidSignature`];
//! - `exp` is not after now minus the leeway [`Expired`];
//! - `nbf` or `iat` is after now plus the leeway [`NotYetValid`];
//! - `iss` or `aud` differ from the required ones [`WrongIssuer`],
//!   [`WrongAudience`];
//! - the binding claim is missing [`MissingRid`] or differs from the username
//!   or client id [`UsernameRidMismatch`].
//!
//! The key is chosen by the family of the token's `alg`: HS tokens meet only
//! the configured secret, the others only public keys of their own type. So a
//! token signed with HMAC over a public key's bytes (the classic HS/RS
//! confusion) fails, and the secret itself may not be a PEM key.
//!
//! [`MalformedToken`]: Failure::MalformedToken
//! [`AlgorithmNotAllowed`]: Failure::AlgorithmNotAllowed
//! [`UnknownKey`]: Failure::UnknownKey
//! [`InvalidSignature`]: Failure::InvalidSignature
//! [`Expired`]: Failure::Expired
//! [`NotYetValid`]: Failure::NotYetValid
//! [`WrongIssuer`]: Failure::WrongIssuer
//! [`WrongAudience`]: Failure::WrongAudience
//! [`MissingRid`]: Failure::MissingRid
//! [`UsernameRidMismatch`]: Failure::UsernameRidMismatch

pub(super) mod base64url;
mod cache;
mod keys;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{AuthSetupError, Failure};
use crate::config::{BindTo, JwtConfig, TokenFrom};
use cache::TokenCache;
use keys::{Jwks, Key, PublicKeys};

/// A verified token's claims as text, for `%(j, claim)` ACL rules: strings
/// as they are, numbers, booleans, arrays and objects as their JSON text.
/// `null` claims are left out, as if absent.
pub type Claims = BTreeMap<String, String>;

/// Verified tokens each shard remembers by default (about 100 bytes plus the
/// claims each).
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;

/// Verifies the JWTs of one shard.
///
/// The keys (and the JWKS file's reloading) are shared by all shards: build
/// one with [`JwtVerifier::from_config`], then give each shard
/// [`JwtVerifier::for_shard`]. The verified-token cache is the shard's own,
/// in a `RefCell`, because a shard runs one CONNECT at a time.
///
/// An RS, ES or EdDSA signature costs 30 to 200 µs, too long for a shard's
/// thread when thousands of new clients connect: [`JwtVerifier::prepare`]
/// hands that part to another thread, and [`JwtVerifier::absorb`] takes its
/// outcome back before [`JwtVerifier::verify`] runs.
pub struct JwtVerifier {
    shared: Arc<Shared>,
    cache: RefCell<TokenCache>,
}

/// The configuration and keys every shard's verifier reads.
struct Shared {
    /// The `alg` values accepted, as spelled in a token header.
    algorithms: Vec<(String, Algorithm)>,
    /// The HMAC secret, for HS tokens only.
    hmac: Option<Arc<Key>>,
    /// The PEM key or JWKS keys, for RS, ES and EdDSA tokens only.
    public: Option<PublicKeys>,
    /// The claim that binds a token to a client; `None` when the config's is
    /// empty (no binding).
    bind_claim: Option<String>,
    bind_to: BindTo,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    leeway: f64,
    issuer: Option<String>,
    audience: Option<String>,
    token_from: TokenFrom,
    /// Tokens verified in full (signature and claims) by every shard and
    /// thread: shows tests and benches that the cache and the off-shard
    /// verification spare the shards.
    verifications: AtomicU64,
}

/// The header members that decide how a token is verified.
#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    /// Extensions the token insists on (RFC 7515 4.1.11): we know none.
    crit: Option<IgnoredAny>,
}

/// A token's verification in full, everything but expiry and binding, to run
/// on a thread other than the shard's ([`JwtVerifier::prepare`]).
pub struct TokenJob {
    shared: Arc<Shared>,
    token: String,
    digest: [u8; 32],
    /// The key generation when the job was made.
    generation: u64,
}

impl TokenJob {
    /// Verifies the token: the slow part, meant for a blocking thread.
    pub fn run(self) -> TokenChecked {
        let now = unix_seconds(SystemTime::now());
        let result = self.shared.verify_token(&self.token, now, self.generation);
        TokenChecked {
            digest: self.digest,
            generation: result.as_ref().map_or(self.generation, |v| v.generation),
            result,
        }
    }
}

/// What a [`TokenJob`] found, for [`JwtVerifier::absorb`].
pub struct TokenChecked {
    digest: [u8; 32],
    /// The key generation the outcome holds under.
    generation: u64,
    result: Result<Verified, Failure>,
}

/// What a full verification found, for the cache and the caller.
struct Verified {
    claims: Arc<Claims>,
    exp: Option<f64>,
    /// The key generation the signing key belongs to.
    generation: u64,
}

impl JwtVerifier {
    /// Loads the keys `config` names. Errors name the key or file at fault
    /// and how to fix it.
    pub fn from_config(config: &JwtConfig) -> Result<JwtVerifier, AuthSetupError> {
        let algorithms = config
            .algorithms
            .iter()
            .map(|name| match keys::parse_algorithm(name) {
                Some(alg) => Ok((name.clone(), alg)),
                None => Err(AuthSetupError::Algorithm(name.clone())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let asymmetric: Vec<Algorithm> = algorithms
            .iter()
            .map(|(_, a)| *a)
            .filter(|a| a.family() != AlgorithmFamily::Hmac)
            .collect();
        let hmac = keys::hmac_key(config)?.map(Arc::new);
        let public = if !config.public_key_file.as_os_str().is_empty() {
            let key = keys::pem_key(&config.public_key_file, &asymmetric)?;
            Some(PublicKeys::Pem(Arc::new(key)))
        } else if !config.jwks_file.as_os_str().is_empty() {
            Some(PublicKeys::Jwks(Arc::new(Jwks::load(&config.jwks_file)?)))
        } else {
            None
        };
        for (name, alg) in &algorithms {
            let missing = match alg.family() {
                AlgorithmFamily::Hmac if hmac.is_none() => Some((
                    "no HMAC secret",
                    "auth.jwt.secret, auth.jwt.secret-file or auth.jwt.secret-env",
                )),
                AlgorithmFamily::Hmac => None,
                _ if public.is_none() => Some((
                    "no public key",
                    "auth.jwt.public-key-file or auth.jwt.jwks-file",
                )),
                _ => None,
            };
            if let Some((needs, keys)) = missing {
                return Err(AuthSetupError::NoKeyFor {
                    algorithm: name.clone(),
                    needs,
                    keys,
                });
            }
        }
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let shared = Shared {
            algorithms,
            hmac,
            public,
            bind_claim: non_empty(&config.bind_claim),
            bind_to: config.bind_to,
            leeway: config.leeway.as_secs_f64(),
            issuer: non_empty(&config.issuer),
            audience: non_empty(&config.audience),
            token_from: config.token_from,
            verifications: AtomicU64::new(0),
        };
        Ok(JwtVerifier {
            shared: Arc::new(shared),
            cache: RefCell::new(TokenCache::new(DEFAULT_CACHE_CAPACITY)),
        })
    }

    /// A verifier for another shard: the same keys, an empty cache of its own.
    pub fn for_shard(&self) -> JwtVerifier {
        JwtVerifier {
            shared: Arc::clone(&self.shared),
            cache: RefCell::new(TokenCache::new(self.cache.borrow().capacity())),
        }
    }

    /// Holds at most `entries` verified tokens; 0 verifies every token in full.
    pub fn with_cache_capacity(self, entries: usize) -> JwtVerifier {
        JwtVerifier {
            cache: RefCell::new(TokenCache::new(entries)),
            ..self
        }
    }

    /// Looks at the JWKS file at most once per `interval` (default one second),
    /// for every shard sharing these keys. Tests set 0.
    pub fn with_reload_interval(self, interval: Duration) -> JwtVerifier {
        if let Some(PublicKeys::Jwks(jwks)) = &self.shared.public {
            jwks.set_interval(interval);
        }
        self
    }

    /// Which CONNECT field carries the token.
    pub fn token_from(&self) -> TokenFrom {
        self.shared.token_from
    }

    /// How many verified tokens this shard remembers.
    pub fn cached(&self) -> usize {
        self.cache.borrow().count()
    }

    /// How many tokens were verified in full, by every shard sharing these
    /// keys and on any thread.
    pub fn verifications(&self) -> u64 {
        self.shared.verifications.load(Relaxed)
    }

    /// The full verification of `token` as a job for another thread, when it
    /// is worth the hop: an asymmetric signature this shard has not cached.
    /// `None` for what [`JwtVerifier::verify`] does quickly anyway: an HMAC
    /// token (about 1 µs), a cached one, or one its header already refuses.
    pub fn prepare(&self, token: &str) -> Option<TokenJob> {
        let shared = &self.shared;
        let (header_b64, _, _) = split(token).ok()?;
        let (_, alg) = shared.header(header_b64).ok()?;
        if alg.family() == AlgorithmFamily::Hmac {
            return None;
        }
        let generation = shared.generation();
        let digest = digest(token);
        let now = unix_seconds(SystemTime::now());
        if self
            .cache
            .borrow_mut()
            .get(&digest, generation, now)
            .is_some()
        {
            return None;
        }
        Some(TokenJob {
            shared: Arc::clone(shared),
            token: token.to_owned(),
            digest,
            generation,
        })
    }

    /// Caches the token a [`TokenJob`] accepted. Refusals are not cached: a
    /// client retrying a refused token pays again, off the shard.
    pub fn absorb(&self, checked: &TokenChecked) {
        if let Ok(verified) = &checked.result {
            let now = unix_seconds(SystemTime::now());
            self.remember(checked.digest, verified, now);
        }
    }

    /// The claims of `token`, presented by a client with `username` and
    /// effective `client_id`, or why it is refused.
    pub fn verify(
        &self,
        token: &str,
        username: Option<&str>,
        client_id: &str,
    ) -> Result<Arc<Claims>, Failure> {
        self.verify_at(token, username, client_id, SystemTime::now())
    }

    /// [`JwtVerifier::verify`], answered by `checked` (what a [`TokenJob`]
    /// found) instead of verifying again if it is about this token and the
    /// keys have not changed since. Expiry and binding are checked anyway.
    pub fn verify_with(
        &self,
        token: &str,
        username: Option<&str>,
        client_id: &str,
        checked: Option<TokenChecked>,
    ) -> Result<Arc<Claims>, Failure> {
        self.verify_checked(token, username, client_id, SystemTime::now(), checked)
    }

    /// [`JwtVerifier::verify`] with the clock at `now`.
    pub fn verify_at(
        &self,
        token: &str,
        username: Option<&str>,
        client_id: &str,
        now: SystemTime,
    ) -> Result<Arc<Claims>, Failure> {
        self.verify_checked(token, username, client_id, now, None)
    }

    fn verify_checked(
        &self,
        token: &str,
        username: Option<&str>,
        client_id: &str,
        now: SystemTime,
        checked: Option<TokenChecked>,
    ) -> Result<Arc<Claims>, Failure> {
        let now = unix_seconds(now);
        let shared = &*self.shared;
        let generation = shared.generation();
        let digest = digest(token);
        // What the job found, else the cache, else verify here.
        let checked = checked
            .filter(|c| c.digest == digest && c.generation == generation)
            .map(|c| c.result)
            .transpose()?;
        let known = match checked {
            Some(verified) => Some((verified.claims, verified.exp)),
            None => {
                let hit = self.cache.borrow_mut().get(&digest, generation, now);
                hit.map(|entry| (entry.claims, entry.exp))
            }
        };
        let (claims, exp) = match known {
            Some(known) => known,
            None => {
                let verified = shared.verify_token(token, now, generation)?;
                self.remember(digest, &verified, now);
                (verified.claims, verified.exp)
            }
        };
        shared.check_exp(exp, now)?;
        shared.check_binding(&claims, username, client_id)?;
        Ok(claims)
    }

    /// Caches a token verified at `now`.
    fn remember(&self, digest: [u8; 32], verified: &Verified, now: f64) {
        self.cache.borrow_mut().insert(
            digest,
            Arc::clone(&verified.claims),
            verified.exp,
            verified.exp.map(|exp| exp + self.shared.leeway),
            verified.generation,
            now,
        );
    }
}

impl fmt::Debug for JwtVerifier {
    /// Algorithms and where the keys come from; never key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.shared;
        let public = match &shared.public {
            None => "none",
            Some(PublicKeys::Pem(_)) => "pem",
            Some(PublicKeys::Jwks(_)) => "jwks",
        };
        f.debug_struct("JwtVerifier")
            .field(
                "algorithms",
                &shared.algorithms.iter().map(|a| &a.0).collect::<Vec<_>>(),
            )
            .field("hmac", &shared.hmac.is_some())
            .field("public", &public)
            .field("bind_claim", &shared.bind_claim)
            .field("bind_to", &shared.bind_to)
            .field("token_from", &shared.token_from)
            .field("cached", &self.cached())
            .finish()
    }
}

impl Shared {
    /// The current key generation (looking at the JWKS file if it is time).
    fn generation(&self) -> u64 {
        self.public.as_ref().map_or(0, PublicKeys::generation)
    }

    /// Everything about `token` that does not depend on the client: format,
    /// algorithm, key, signature, then the claims.
    fn verify_token(&self, token: &str, now: f64, generation: u64) -> Result<Verified, Failure> {
        self.verifications.fetch_add(1, Relaxed);
        let (header_b64, payload_b64, signature) = split(token)?;
        let (header, alg) = self.header(header_b64)?;
        let (key, generation) = match alg.family() {
            // Only the configured secret: never a public key's bytes.
            AlgorithmFamily::Hmac => (self.hmac.clone().ok_or(Failure::UnknownKey)?, generation),
            _ => match &self.public {
                Some(public) => public.select(alg, header.kid.as_deref())?,
                None => return Err(Failure::UnknownKey),
            },
        };
        let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
        match jsonwebtoken::crypto::verify(signature, signed.as_bytes(), &key.decoding, alg) {
            Ok(true) => {}
            _ if base64url::decode(signature).is_none() => return Err(Failure::MalformedToken),
            _ => return Err(Failure::InvalidSignature),
        }
        let claims: Map<String, Value> = base64url::decode(payload_b64)
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(Failure::MalformedToken)?;
        let exp = numeric(&claims, "exp")?;
        self.check_exp(exp, now)?;
        for name in ["nbf", "iat"] {
            if numeric(&claims, name)?.is_some_and(|t| t > now + self.leeway) {
                return Err(Failure::NotYetValid);
            }
        }
        if let Some(issuer) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(Failure::WrongIssuer);
            }
        }
        if let Some(audience) = &self.audience {
            let listed = match claims.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => {
                    auds.iter().any(|a| a.as_str() == Some(audience.as_str()))
                }
                _ => false,
            };
            if !listed {
                return Err(Failure::WrongAudience);
            }
        }
        Ok(Verified {
            claims: Arc::new(as_text(claims)),
            exp,
            generation,
        })
    }

    /// The token's header, and its algorithm if `auth.jwt.algorithms` allows it.
    fn header(&self, header_b64: &str) -> Result<(Header, Algorithm), Failure> {
        let header: Header = base64url::decode(header_b64)
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(Failure::MalformedToken)?;
        if header.crit.is_some() {
            return Err(Failure::MalformedToken);
        }
        let alg = self
            .algorithms
            .iter()
            .find(|(name, _)| *name == header.alg)
            .map(|(_, alg)| *alg)
            .ok_or(Failure::AlgorithmNotAllowed)?;
        Ok((header, alg))
    }

    /// `exp`, when present, must be after now minus the leeway.
    fn check_exp(&self, exp: Option<f64>, now: f64) -> Result<(), Failure> {
        match exp {
            Some(exp) if exp <= now - self.leeway => Err(Failure::Expired),
            _ => Ok(()),
        }
    }

    /// The binding claim, when configured, must equal the username or the
    /// client id, compared as text.
    fn check_binding(
        &self,
        claims: &Claims,
        username: Option<&str>,
        client_id: &str,
    ) -> Result<(), Failure> {
        let Some(claim) = &self.bind_claim else {
            return Ok(());
        };
        let value = claims.get(claim).ok_or(Failure::MissingRid)?;
        let target = match self.bind_to {
            BindTo::Username => username,
            BindTo::ClientId => Some(client_id),
        };
        match target == Some(value.as_str()) {
            true => Ok(()),
            false => Err(Failure::UsernameRidMismatch),
        }
    }
}

/// A token's header, payload and signature, still base64url.
fn split(token: &str) -> Result<(&str, &str, &str), Failure> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(signature), None) => Ok((header, payload, signature)),
        _ => Err(Failure::MalformedToken),
    }
}

/// The cache key of a token.
fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A NumericDate claim: absent, or a JSON number (RFC 7519 section 2).
fn numeric(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, Failure> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value.as_f64().map(Some).ok_or(Failure::MalformedToken),
    }
}

fn as_text(claims: Map<String, Value>) -> Claims {
    claims
        .into_iter()
        .filter_map(|(name, value)| match value {
            Value::Null => None,
            Value::String(s) => Some((name, s)),
            other => Some((name, other.to_string())),
        })
        .collect()
}

/// Seconds since 1970; a clock set before 1970 reads as 1970.
fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
