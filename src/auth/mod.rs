//! The authentication decision point: who a CONNECT is, or why it is refused.
//!
//! The broker asks its [`Authenticator`] once per CONNECT, after the handshake
//! has accepted the packet and before any session changes. The default,
//! [`AllowAnonymous`], accepts everyone; [`ConfiguredAuthenticator`] applies
//! `[auth]`: the password file ([`password`]) and JWTs ([`jwt`]).
//!
//! # Layout
//! - [`failure`](Failure): why a client is refused, for the CONNACK, metrics
//!   and events.
//! - [`jwt`]: token verification, its keys (secret, PEM, JWKS) and cache.
//! - [`password`]: the password file, its hashes and cache.
//! - [`offload`](Preparation): the slow checks, run off the shard's thread.
//! - [`AuthSetupError`]: what is wrong with `[auth]` at start-up.

use std::cell::RefCell;
use std::sync::Arc;

use bytestring::ByteString;

use crate::config::{AuthConfig, TokenFrom};
use crate::protocol::Connect;
use offload::{Job, Outcome};

mod failure;
pub mod jwt;
mod offload;
pub mod password;
mod setup;
#[cfg(test)]
mod tests;

pub use failure::Failure;
pub use jwt::{Claims, JwtVerifier};
pub use offload::{Preparation, Prepared};
pub use password::{hash_password, HashPasswordError, PasswordChecker, PasswordFile};
pub use setup::AuthSetupError;

/// Decides whether a CONNECT may proceed.
pub trait Authenticator {
    /// The identity of the client sending `connect`, whose effective client id
    /// is `client_id` (server-assigned when the CONNECT carried none), or why
    /// it is refused ([`Failure::reason_code`] becomes the CONNACK).
    fn authenticate(&self, connect: &Connect, client_id: &ByteString) -> Result<Identity, Failure>;

    /// The slow part of authenticating `connect` (a password hash, an
    /// asymmetric signature), for the caller to run off the shard's thread
    /// with [`Preparation::run`] and hand to [`Authenticator::absorb`].
    /// `None`, the default, when `authenticate` is quick anyway.
    fn prepare(&self, _connect: &Connect) -> Option<Preparation> {
        None
    }

    /// Takes in what a [`Preparation`] of this authenticator found, so that
    /// the next `authenticate` uses it instead of doing the work again. Call
    /// it right before that `authenticate`, with no await between: the
    /// outcome answers one call only.
    fn absorb(&self, _prepared: Prepared) {}
}

/// Who a connected client is: what ACL rules and events need to know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The CONNECT username, for `user` and `%u` ACL rules. A copy (16
    /// bytes, not a `ByteString`'s 32): every connection keeps its identity,
    /// and a slice would keep the CONNECT.
    pub username: Option<Box<str>>,
    /// The effective client id, for `%c` and `token` ACL rules.
    pub client_id: ByteString,
    /// Verified token claims as strings, for `%(j, claim)` ACL rules. `None`
    /// without a token; [`ConfiguredAuthenticator`] fills it from the JWT.
    pub claims: Option<Arc<Claims>>,
}

impl Identity {
    /// An identity with no token: the username and client id as given.
    pub fn anonymous(connect: &Connect, client_id: &ByteString) -> Identity {
        Identity {
            username: connect.username.as_deref().map(Box::from),
            client_id: client_id.clone(),
            claims: None,
        }
    }
}

/// Accepts every client, with the username and client id it gave
/// (`allow-anonymous`, today's behaviour).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAnonymous;

impl Authenticator for AllowAnonymous {
    fn authenticate(&self, connect: &Connect, client_id: &ByteString) -> Result<Identity, Failure> {
        Ok(Identity::anonymous(connect, client_id))
    }
}

/// The authenticator `[auth]` describes: a password file, JWTs, both or
/// neither, and whether anonymous clients are welcome.
///
/// The rules, in order, as a Mosquitto or EMQX user would expect them:
/// 1. No username and no password: accepted as anonymous if
///    `allow-anonymous`, else [`Failure::MissingCredentials`].
/// 2. A username that has a line in the password file: the password must
///    match its hash ([`Failure::BadPassword`]; no password:
///    [`Failure::MissingCredentials`]). Such users never log in with a
///    token, so a leaked signing key cannot impersonate them.
/// 3. JWT is on and the token's field (`token-from`: the password, or the
///    username) is present: the token decides, and the identity carries its
///    claims. A token that is not UTF-8 is [`Failure::MalformedToken`].
/// 4. Otherwise credentials were given that no method can check:
///    - no method is configured at all: accepted if `allow-anonymous` (as
///      before `[auth]` existed, credentials are then not looked at), else
///      [`Failure::NoMethod`];
///    - a method is configured: refused whatever `allow-anonymous` says
///      (it is about clients without credentials, and credentials that are
///      present are always checked): [`Failure::BadPassword`] for a username
///      and password the file does not know, [`Failure::MissingCredentials`]
///      when half is missing (e.g. a username without the token a JWT
///      deployment needs as password).
///
/// With `token-from = "username"` the username is the token, so binding to
/// the username cannot match: use `bind-to = "client-id"` (or no binding).
/// The identity's username is then the token as sent.
///
/// The files and keys are shared by every shard; build once with
/// [`ConfiguredAuthenticator::from_config`], then give each shard
/// [`ConfiguredAuthenticator::for_shard`] (its own caches).
#[derive(Debug)]
pub struct ConfiguredAuthenticator {
    allow_anonymous: bool,
    /// `None` without `password-file`.
    passwords: Option<PasswordChecker>,
    /// `None` while `[auth.jwt] algorithms` is empty.
    jwt: Option<JwtVerifier>,
    /// What the last [`Preparation`] found, taken by the next
    /// `authenticate` whatever it is about: the caches keep successes only,
    /// and this is how the CONNECT that paid for a refusal gets it without
    /// checking again on the shard. Taking it every time means a leftover
    /// (its CONNECT was refused before authentication) never answers a later
    /// CONNECT.
    absorbed: RefCell<Option<Outcome>>,
}

impl ConfiguredAuthenticator {
    /// Loads the password file and keys `config` names.
    pub fn from_config(config: &AuthConfig) -> Result<ConfiguredAuthenticator, AuthSetupError> {
        let passwords = match config.password_file.as_os_str().is_empty() {
            true => None,
            false => {
                let file = PasswordFile::load(&config.password_file)?;
                Some(PasswordChecker::new(Arc::new(file)))
            }
        };
        let jwt = match config.jwt.enabled() {
            true => Some(JwtVerifier::from_config(&config.jwt)?),
            false => None,
        };
        Ok(ConfiguredAuthenticator {
            allow_anonymous: config.allow_anonymous,
            passwords,
            jwt,
            absorbed: RefCell::default(),
        })
    }

    /// The authenticator of another shard: the same files and keys, caches of
    /// its own.
    pub fn for_shard(&self) -> ConfiguredAuthenticator {
        ConfiguredAuthenticator {
            allow_anonymous: self.allow_anonymous,
            passwords: self.passwords.as_ref().map(PasswordChecker::for_shard),
            jwt: self.jwt.as_ref().map(JwtVerifier::for_shard),
            absorbed: RefCell::default(),
        }
    }

    /// Replaces the JWT verifier (tests and benches tune its cache and reload
    /// interval); `None` turns JWT off.
    pub fn with_jwt(mut self, jwt: Option<JwtVerifier>) -> ConfiguredAuthenticator {
        self.jwt = jwt;
        self
    }

    /// Replaces the password checker; `None` turns the password file off.
    pub fn with_passwords(mut self, passwords: Option<PasswordChecker>) -> ConfiguredAuthenticator {
        self.passwords = passwords;
        self
    }
}

impl Authenticator for ConfiguredAuthenticator {
    fn authenticate(&self, connect: &Connect, client_id: &ByteString) -> Result<Identity, Failure> {
        let absorbed = self.absorbed.take();
        let username = connect.username.as_deref();
        let password = connect.password.as_deref();
        if username.is_none() && password.is_none() {
            return match self.allow_anonymous {
                true => Ok(Identity::anonymous(connect, client_id)),
                false => Err(Failure::MissingCredentials),
            };
        }
        if let (Some(file), Some(user)) = (&self.passwords, username) {
            if file.knows(user) {
                let password = password.ok_or(Failure::MissingCredentials)?;
                file.check_with(user, password, absorbed.and_then(Outcome::password))?;
                return Ok(Identity::anonymous(connect, client_id));
            }
        }
        if let Some(jwt) = &self.jwt {
            if let Some(token) = token_in(jwt, connect) {
                let token = std::str::from_utf8(token).map_err(|_| Failure::MalformedToken)?;
                let checked = absorbed.and_then(Outcome::token);
                let claims = jwt.verify_with(token, username, client_id, checked)?;
                return Ok(Identity {
                    claims: Some(claims),
                    ..Identity::anonymous(connect, client_id)
                });
            }
        }
        if self.passwords.is_none() && self.jwt.is_none() {
            return match self.allow_anonymous {
                true => Ok(Identity::anonymous(connect, client_id)),
                false => Err(Failure::NoMethod),
            };
        }
        match (username, password) {
            (Some(_), Some(_)) => Err(Failure::BadPassword),
            _ => Err(Failure::MissingCredentials),
        }
    }

    /// The check `authenticate` would make by rule 2 or 3, if it is slow and
    /// not cached: the password file's hash, or a token's asymmetric
    /// signature. Rules 1 and 4 are quick.
    fn prepare(&self, connect: &Connect) -> Option<Preparation> {
        if let (Some(file), Some(user)) = (&self.passwords, connect.username.as_deref()) {
            if file.knows(user) {
                let job = file.prepare(user, connect.password.as_deref()?)?;
                return Some(Preparation(Job::Password(job)));
            }
        }
        let jwt = self.jwt.as_ref()?;
        let token = std::str::from_utf8(token_in(jwt, connect)?).ok()?;
        Some(Preparation(Job::Token(jwt.prepare(token)?)))
    }

    /// Caches what the job accepted, and keeps its outcome for the next
    /// `authenticate`.
    fn absorb(&self, prepared: Prepared) {
        match (&prepared.0, &self.jwt, &self.passwords) {
            (Outcome::Token(checked), Some(jwt), _) => jwt.absorb(checked),
            (Outcome::Password(checked), _, Some(passwords)) => passwords.absorb(checked),
            _ => {}
        }
        *self.absorbed.borrow_mut() = Some(prepared.0);
    }
}

/// The CONNECT field that carries the token (`token-from`), if present.
fn token_in<'c>(jwt: &JwtVerifier, connect: &'c Connect) -> Option<&'c [u8]> {
    match jwt.token_from() {
        TokenFrom::Password => connect.password.as_deref(),
        TokenFrom::Username => connect.username.as_deref().map(str::as_bytes),
    }
}
