//! The password file: `username:hash` lines, as Mosquitto's, with argon2
//! (`$argon2id$...`) or bcrypt (`$2b$`, `$2a$`, `$2y$`) PHC strings.
//!
//! A password check costs 10 to 100 ms of CPU by design (that is what makes
//! stolen hashes expensive to crack), so each shard remembers the (username,
//! password) pairs it accepted: a fleet reconnecting after a network blip pays
//! once per client and shard, not once per CONNECT. And a shard does not pay
//! on its own thread, which would stall its other clients:
//! [`PasswordChecker::prepare`] hands the check to another thread.
//!
//! ```text
//! # comment
//! alice:$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$...
//! bob:$2b$10$...
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier as _, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};

use super::setup::read_file;
use super::{AuthSetupError, Failure};
use crate::hash::HashSet;

/// Accepted (username, password) pairs each shard remembers by default.
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;

/// The most memory an argon2 hash may ask for per check (1 GiB, in KiB): the
/// shard allocates it on every uncached CONNECT of that user.
const MAX_ARGON2_KIB: u32 = 1 << 20;

/// The users of a password file and their hashes.
pub struct PasswordFile {
    users: HashMap<String, StoredHash>,
    /// Hashes checked, by every shard and thread: shows tests that the cache
    /// and the off-shard check spare the shards.
    verifications: AtomicU64,
}

enum StoredHash {
    /// A PHC string checked at load: `$argon2id$`, `$argon2i$` or `$argon2d$`.
    Argon2(String),
    /// A bcrypt string checked at load: `$2b$`, `$2a$` or `$2y$`.
    Bcrypt(String),
}

impl PasswordFile {
    /// Reads and parses the file (`auth.password-file`).
    pub fn load(path: &Path) -> Result<PasswordFile, AuthSetupError> {
        let bytes = read_file("auth.password-file", path)?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let valid = &bytes[..e.valid_up_to()];
            AuthSetupError::PasswordFile {
                path: path.to_owned(),
                line: valid.iter().filter(|b| **b == b'\n').count() + 1,
                problem: "not UTF-8 text".to_owned(),
            }
        })?;
        PasswordFile::parse(text, path)
    }

    /// Parses `text`, the contents of `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<PasswordFile, AuthSetupError> {
        let mut users = HashMap::new();
        let mut lines: HashMap<&str, usize> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let number = i + 1;
            let error = |problem: String| AuthSetupError::PasswordFile {
                path: path.to_owned(),
                line: number,
                problem,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line.split_once(':').ok_or_else(|| {
                error("expected username:hash (make a line with `shardmq passwd`)".to_owned())
            })?;
            if user.is_empty() {
                return Err(error("the username is empty".to_owned()));
            }
            if user.trim() != user || hash.trim() != hash {
                return Err(error("spaces around the ':'".to_owned()));
            }
            if let Some(first) = lines.insert(user, number) {
                return Err(error(format!("user \"{user}\" is already on line {first}")));
            }
            let hash = StoredHash::parse(hash).map_err(error)?;
            users.insert(user.to_owned(), hash);
        }
        Ok(PasswordFile {
            users,
            verifications: AtomicU64::new(0),
        })
    }

    pub fn contains(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// How many hashes were checked.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Relaxed)
    }

    /// Whether `password` is `username`'s: the slow check, uncached.
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        self.verifications.fetch_add(1, Relaxed);
        match self.users.get(username) {
            Some(StoredHash::Argon2(phc)) => PasswordHash::new(phc)
                .is_ok_and(|hash| Argon2::default().verify_password(password, &hash).is_ok()),
            // bcrypt reads the first 72 bytes only, as every bcrypt does.
            Some(StoredHash::Bcrypt(hash)) => bcrypt::verify(password, hash).unwrap_or(false),
            None => false,
        }
    }
}

impl fmt::Debug for PasswordFile {
    /// The number of users; never names or hashes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordFile")
            .field("users", &self.users.len())
            .finish()
    }
}

impl StoredHash {
    fn parse(hash: &str) -> Result<StoredHash, String> {
        if hash.starts_with("$argon2") {
            let phc =
                PasswordHash::new(hash).map_err(|e| format!("not a valid argon2 hash: {e}"))?;
            argon2::Algorithm::try_from(phc.algorithm)
                .map_err(|_| format!("\"{}\" is not an argon2 variant", phc.algorithm))?;
            let params =
                argon2::Params::try_from(&phc).map_err(|e| format!("argon2 parameters: {e}"))?;
            if params.m_cost() > MAX_ARGON2_KIB {
                return Err(format!(
                    "argon2 m={} KiB would allocate that much per CONNECT; use at most {MAX_ARGON2_KIB}",
                    params.m_cost()
                ));
            }
            if phc.salt.is_none() || phc.hash.is_none() {
                return Err("the argon2 hash lacks its salt or hash part".to_owned());
            }
            return Ok(StoredHash::Argon2(hash.to_owned()));
        }
        if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            // Not bcrypt's error text: it quotes the hash.
            let parts: bcrypt::HashParts = hash
                .parse()
                .map_err(|_| "not a valid bcrypt hash ($2b$<cost>$<53 characters>)".to_owned())?;
            if !(4..=31).contains(&parts.get_cost()) {
                return Err(format!("bcrypt cost {} is not in 4..=31", parts.get_cost()));
            }
            return Ok(StoredHash::Bcrypt(hash.to_owned()));
        }
        let hint = match hash.starts_with("$7$") {
            true => "Mosquitto's PBKDF2 hashes ($7$) are not supported",
            false => "the hash is not an argon2 ($argon2id$...) or bcrypt ($2b$...) string",
        };
        Err(format!(
            "{hint}; hash the password again with `shardmq passwd`"
        ))
    }
}

/// One shard's password checks: the shared file and the shard's own cache of
/// accepted pairs.
pub struct PasswordChecker {
    file: Arc<PasswordFile>,
    /// Salted SHA-256 of the (username, password) pairs accepted.
    accepted: RefCell<HashSet<[u8; 32]>>,
    /// The most pairs remembered; 0 turns the cache off.
    capacity: usize,
    /// Random per process, so that the cache keys are no unsalted SHA-256
    /// of passwords (cheap to crack) in a memory dump.
    salt: [u8; 32],
}

/// A password check to run on a thread other than the shard's
/// ([`PasswordChecker::prepare`]).
pub struct PasswordJob {
    file: Arc<PasswordFile>,
    username: String,
    password: Vec<u8>,
    /// The pair's cache key.
    key: [u8; 32],
}

impl PasswordJob {
    /// Checks the hash: the slow part, meant for a blocking thread.
    pub fn run(self) -> PasswordChecked {
        PasswordChecked {
            key: self.key,
            accepted: self.file.verify(&self.username, &self.password),
        }
    }
}

/// What a [`PasswordJob`] found, for [`PasswordChecker::absorb`].
pub struct PasswordChecked {
    key: [u8; 32],
    accepted: bool,
}

impl PasswordChecker {
    pub fn new(file: Arc<PasswordFile>) -> PasswordChecker {
        let mut salt = [0; 32];
        OsRng.fill_bytes(&mut salt);
        PasswordChecker {
            file,
            accepted: RefCell::default(),
            capacity: DEFAULT_CACHE_CAPACITY,
            salt,
        }
    }

    /// A checker for another shard: the same file, an empty cache of its own.
    pub fn for_shard(&self) -> PasswordChecker {
        PasswordChecker {
            file: Arc::clone(&self.file),
            accepted: RefCell::default(),
            capacity: self.capacity,
            salt: self.salt,
        }
    }

    /// Remembers at most `entries` accepted pairs; 0 checks every time.
    pub fn with_cache_capacity(mut self, entries: usize) -> PasswordChecker {
        self.capacity = entries;
        self.accepted.get_mut().clear();
        self
    }

    /// How many hashes were checked, by every shard sharing the file and on
    /// any thread.
    pub fn verifications(&self) -> u64 {
        self.file.verifications()
    }

    /// Whether the file has a line for `username`.
    pub fn knows(&self, username: &str) -> bool {
        self.file.contains(username)
    }

    /// The check of `password` for `username` as a job for another thread,
    /// or `None` if this shard accepted the pair before (a set lookup).
    pub fn prepare(&self, username: &str, password: &[u8]) -> Option<PasswordJob> {
        let key = self.cache_key(username, password);
        if self.accepted.borrow().contains(&key) {
            return None;
        }
        Some(PasswordJob {
            file: Arc::clone(&self.file),
            username: username.to_owned(),
            password: password.to_vec(),
            key,
        })
    }

    /// Caches the pair a [`PasswordJob`] accepted. Wrong passwords are not
    /// cached: a client retrying one pays again, off the shard.
    pub fn absorb(&self, checked: &PasswordChecked) {
        if checked.accepted {
            self.remember(checked.key);
        }
    }

    /// Accepts `password` for `username`, from the cache or by checking the hash.
    pub fn check(&self, username: &str, password: &[u8]) -> Result<(), Failure> {
        self.check_with(username, password, None)
    }

    /// [`PasswordChecker::check`], answered by `checked` (what a
    /// [`PasswordJob`] found) if it is about this pair.
    pub fn check_with(
        &self,
        username: &str,
        password: &[u8],
        checked: Option<PasswordChecked>,
    ) -> Result<(), Failure> {
        let key = self.cache_key(username, password);
        let accepted = match checked.filter(|c| c.key == key) {
            Some(checked) => checked.accepted,
            None if self.accepted.borrow().contains(&key) => true,
            None => {
                let accepted = self.file.verify(username, password);
                if accepted {
                    self.remember(key);
                }
                accepted
            }
        };
        match accepted {
            true => Ok(()),
            false => Err(Failure::BadPassword),
        }
    }

    fn remember(&self, key: [u8; 32]) {
        if self.capacity > 0 {
            let mut accepted = self.accepted.borrow_mut();
            if accepted.len() >= self.capacity {
                accepted.clear();
            }
            accepted.insert(key);
        }
    }

    fn cache_key(&self, username: &str, password: &[u8]) -> [u8; 32] {
        // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
        let len = u32::try_from(username.len()).unwrap_or(u32::MAX);
        Sha256::new()
            .chain_update(self.salt)
            .chain_update(len.to_be_bytes())
            .chain_update(username.as_bytes())
            .chain_update(password)
            .finalize()
            .into()
    }
}

impl fmt::Debug for PasswordChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordChecker")
            .field("file", &self.file)
            .field("cached", &self.accepted.borrow().len())
            .finish()
    }
}

/// Why [`hash_password`] failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct HashPasswordError(String);

/// An argon2id PHC string of `password` with the crate's default parameters
/// (19 MiB, 2 passes, OWASP's recommendation) and a random salt, for a
/// password-file line (`shardmq passwd`).
pub fn hash_password(password: &str) -> Result<String, HashPasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| HashPasswordError(e.to_string()))
}
