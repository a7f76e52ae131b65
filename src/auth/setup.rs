//! Why the configured authentication cannot start: a key, file or variable that
//! is missing or wrong. Each message names the config key (and file) and how to
//! fix it, because it is printed to whoever just started the broker.

use std::io;
use std::path::{Path, PathBuf};

/// A problem with `[auth]` found while loading its files, before any client
/// connects. Secrets never appear in the messages.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("{key} \"{}\": cannot read it: {source}; check the path and that the broker may read it", path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "auth.jwt.secret-env: the environment variable {var} is not set; export it before \
         starting the broker, or use auth.jwt.secret-file"
    )]
    SecretEnvUnset { var: String },
    #[error("{source_key}: the HMAC secret is empty; set a long random secret (32 bytes or more)")]
    EmptySecret { source_key: String },
    #[error(
        "{source_key}: the HMAC secret is a PEM key; HS256/384/512 need a shared secret, and \
         public keys go in auth.jwt.public-key-file (a public key used as an HMAC secret lets \
         anyone who has it sign tokens)"
    )]
    SecretIsPem { source_key: String },
    #[error(
        "auth.jwt.public-key-file \"{}\": not an RSA, EC or Ed25519 public key in PEM ({problem}); \
         give a \"BEGIN PUBLIC KEY\" file, e.g. from `openssl pkey -in private.pem -pubout`",
        path.display()
    )]
    BadPublicKey { path: PathBuf, problem: String },
    #[error(
        "auth.jwt.public-key-file \"{}\": this is a private key; give its public half \
         (`openssl pkey -in {} -pubout -out public.pem`) and keep the private key off the broker",
        path.display(), path.display()
    )]
    PrivateKey { path: PathBuf },
    #[error(
        "auth.jwt.public-key-file \"{}\": {key_type} cannot verify {algorithm}, which \
         auth.jwt.algorithms lists; remove {algorithm}, or use auth.jwt.jwks-file to hold keys \
         of several types",
        path.display()
    )]
    KeyDoesNotFit {
        path: PathBuf,
        key_type: &'static str,
        algorithm: String,
    },
    #[error("auth.jwt.jwks-file \"{}\": {problem}", path.display())]
    Jwks { path: PathBuf, problem: String },
    #[error(
        "auth.jwt.algorithms: \"{0}\" is not supported; use HS256, HS384, HS512, RS256, RS384, \
         RS512, ES256, ES384 or EdDSA"
    )]
    Algorithm(String),
    #[error(
        "auth.jwt.algorithms lists {algorithm}, but {needs} is configured; set {keys}, or \
         remove {algorithm}"
    )]
    NoKeyFor {
        algorithm: String,
        needs: &'static str,
        keys: &'static str,
    },
    #[error("auth.password-file {}:{line}: {problem}", path.display())]
    PasswordFile {
        path: PathBuf,
        line: usize,
        problem: String,
    },
}

/// The bytes of the file that config key `key` names.
pub(super) fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, AuthSetupError> {
    std::fs::read(path).map_err(|source| AuthSetupError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}
