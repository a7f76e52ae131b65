//! Who each connection says it is: client id, username, password or a JWT made for it,
//! and its kind of session. Patterns number the clients (`{i}`), so an ACL or a JWT
//! check that ties a username to its client sees one distinct, predictable identity
//! per connection.
//!
//! `{n}` works too, but is not in `--help`: clap turns `{n}` in help text into a
//! line break.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::cli::Secret;
use crate::client::Hello;

/// The client id pattern when --client-id is not given.
pub const DEFAULT_CLIENT_ID: &str = "loadtest-{pid}-{i}";

/// The claims of a generated JWT: what the broker's JWT auth checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Must equal the MQTT username (the fork's binding claim).
    pub rid: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
}

/// How the password is made.
#[derive(Debug, Clone)]
pub enum Password {
    None,
    Fixed(Secret),
    /// An HS256 JWT per client, signed with the secret, valid for the duration.
    Jwt(Secret, Duration),
}

/// Resolved from the command line; [`Identity::hello`] gives each client its CONNECT.
#[derive(Debug, Clone)]
pub struct Identity {
    /// With `{i}` and `{pid}` still in.
    pub client_id: String,
    pub username: Option<String>,
    pub password: Password,
    /// false: persistent sessions.
    pub clean_start: bool,
    /// Sent by MQTT 5 persistent sessions.
    pub session_expiry: Option<u32>,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            client_id: DEFAULT_CLIENT_ID.into(),
            username: None,
            password: Password::None,
            clean_start: true,
            session_expiry: None,
        }
    }
}

impl Identity {
    /// Checks the patterns and the password options against each other; `clients` is
    /// how many connect at once (a fixed client id would make them take each other
    /// over).
    pub fn validate(&self, clients: usize) -> anyhow::Result<()> {
        check_pattern("--client-id", &self.client_id)?;
        if clients > 1 && !INDEX.iter().any(|i| self.client_id.contains(i)) {
            bail!(
                "--client-id {}: {clients} clients would share this id and take each other \
                 over; put {{i}} in it (e.g. {}-{{i}})",
                self.client_id,
                self.client_id
            );
        }
        if self.client_id.is_empty() {
            bail!("--client-id is empty; give a pattern such as loadtest-{{i}}");
        }
        if let Some(username) = &self.username {
            check_pattern("--username", username)?;
        }
        if matches!(self.password, Password::Jwt(..)) && self.username.is_none() {
            bail!(
                "--jwt-secret needs --username: the JWT's `rid` claim is the username \
                 (e.g. --username user-{{i}})"
            );
        }
        // Fails now rather than on every connection.
        self.hello(0).map(drop)
    }

    /// The CONNECT of client `n`.
    pub fn hello(&self, n: u64) -> anyhow::Result<Hello> {
        let username = self.username.as_deref().map(|u| expand(u, n));
        let password = match &self.password {
            Password::None => None,
            Password::Fixed(secret) => Some(Bytes::copy_from_slice(secret.expose().as_bytes())),
            Password::Jwt(secret, ttl) => {
                let rid = username.clone().unwrap_or_default();
                Some(Bytes::from(jwt(secret, rid, *ttl)?))
            }
        };
        Ok(Hello {
            client_id: expand(&self.client_id, n),
            username,
            password,
            clean_start: self.clean_start,
            session_expiry: self.session_expiry,
        })
    }
}

/// An HS256 JWT for `rid`, valid from now for `ttl`.
pub fn jwt(secret: &Secret, rid: String, ttl: Duration) -> anyhow::Result<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    let claims = Claims {
        rid,
        iat: now,
        exp: now + ttl.as_secs().max(1),
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )
    .context("cannot sign the JWT")
}

/// The placeholders of the client's index.
const INDEX: [&str; 2] = ["{i}", "{n}"];

/// `pattern` with `{i}` (or `{n}`) and `{pid}` replaced.
pub fn expand(pattern: &str, n: u64) -> String {
    let n = n.to_string();
    INDEX
        .iter()
        .fold(pattern.to_owned(), |p, i| p.replace(i, &n))
        .replace("{pid}", &std::process::id().to_string())
}

/// Only `{i}` (or `{n}`) and `{pid}` are placeholders; anything else in braces is a
/// typo.
fn check_pattern(option: &str, pattern: &str) -> anyhow::Result<()> {
    let rest = INDEX
        .iter()
        .fold(pattern.replace("{pid}", ""), |p, i| p.replace(i, ""));
    if rest.contains(['{', '}']) {
        bail!(
            "{option} {pattern}: the only placeholders are {{i}} (the client's index) and {{pid}}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{decode, DecodingKey, Validation};

    use super::*;

    fn secret(s: &str) -> Secret {
        s.parse().unwrap()
    }

    #[test]
    fn jwt_claims_decode_back_with_the_secret() {
        let identity = Identity {
            username: Some("rider-{i}".into()),
            password: Password::Jwt(secret("s3cret"), Duration::from_secs(600)),
            ..Identity::default()
        };
        identity.validate(10).unwrap();
        let hello = identity.hello(7).unwrap();
        assert_eq!(hello.username.as_deref(), Some("rider-7"));
        let token = std::str::from_utf8(hello.password.as_deref().unwrap()).unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        let claims = decode::<Claims>(token, &DecodingKey::from_secret(b"s3cret"), &validation)
            .unwrap()
            .claims;
        assert_eq!(claims.rid, "rider-7");
        assert_eq!(claims.exp - claims.iat, 600);
        // Another secret does not verify it.
        assert!(decode::<Claims>(token, &DecodingKey::from_secret(b"other"), &validation).is_err());
        // The secret stays out of Debug output.
        assert!(!format!("{identity:?}").contains("s3cret"));
        assert!(!format!("{hello:?}").contains(token));
    }

    #[test]
    fn patterns_number_clients() {
        let identity = Identity {
            client_id: "c-{i}".into(),
            username: Some("u{n}".into()),
            password: Password::Fixed(secret("pw")),
            ..Identity::default()
        };
        let hello = identity.hello(42).unwrap();
        assert_eq!(hello.client_id, "c-42");
        assert_eq!(hello.username.as_deref(), Some("u42"));
        assert_eq!(hello.password.as_deref(), Some(&b"pw"[..]));
        assert_eq!(expand("x-{pid}", 0), format!("x-{}", std::process::id()));
    }

    #[test]
    fn bad_patterns_say_what_to_write() {
        let fixed = Identity {
            client_id: "same".into(),
            ..Identity::default()
        };
        assert!(fixed.validate(1).is_ok());
        let err = fixed.validate(2).unwrap_err().to_string();
        assert!(err.contains("put {i} in it"), "{err}");
        let typo = Identity {
            client_id: "c-{N}".into(),
            ..Identity::default()
        };
        let err = typo.validate(1).unwrap_err().to_string();
        assert!(err.contains("only placeholders"), "{err}");
        let jwt_alone = Identity {
            password: Password::Jwt(secret("k"), Duration::from_secs(60)),
            ..Identity::default()
        };
        let err = jwt_alone.validate(1).unwrap_err().to_string();
        assert!(err.contains("needs --username"), "{err}");
    }
}
