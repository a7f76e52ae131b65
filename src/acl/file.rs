//! The ACL file as the running broker holds it: rules that every shard reads
//! without locking, swapped whole when the file changes.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::auth::Identity;
use crate::topic::{TopicFilter, TopicName};

use super::{AclError, AclRules, Authorizer, Decision};

/// A reloadable ACL file, shared by every shard.
///
/// Cloning is cheap (one `Arc`). Decisions load the current rules with
/// [`ArcSwap::load`], no lock; [`AclFile::reload`] parses the file off the
/// shards (on the reload thread) and swaps the new rules in only if the whole
/// file parses, so a typo never leaves the broker with half a rule set.
#[derive(Clone)]
pub struct AclFile {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where the file is re-read from.
    path: PathBuf,
    /// The rules in force.
    rules: ArcSwap<AclRules>,
    /// Bumped on each swap, so a shard can tell its granted subscriptions
    /// need checking again against the new rules.
    generation: AtomicU64,
    /// What the last reload saw. The mutex also keeps two reloads (SIGHUP and
    /// the interval) from racing; it is never taken by a decision.
    seen: Mutex<Seen>,
}

/// What is known about the file on disk.
struct Seen {
    /// Modification time and length at the last read (good or bad): an
    /// interval check skips the read while they are unchanged.
    stamp: Option<(SystemTime, u64)>,
    /// Hash of the text the rules in force came from: a reload of an
    /// unchanged file swaps nothing.
    content: u64,
}

impl AclFile {
    /// Reads and parses the file at `path` (blocking I/O: at start-up).
    pub fn load(path: impl Into<PathBuf>) -> Result<AclFile, AclError> {
        let path = path.into();
        let stamp = stamp(&path);
        let text = read(&path)?;
        let rules = parse(&text, &path)?;
        Ok(AclFile {
            inner: Arc::new(Inner {
                path,
                rules: ArcSwap::from_pointee(rules),
                generation: AtomicU64::new(0),
                seen: Mutex::new(Seen {
                    stamp,
                    content: hash(&text),
                }),
            }),
        })
    }

    /// Re-reads the file (on SIGHUP) and swaps in its rules if its content
    /// changed. `Ok(true)`: new rules are in force. An error leaves the old
    /// rules in force; the caller logs it.
    pub fn reload(&self) -> Result<bool, AclError> {
        let mut seen = self
            .inner
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.reload_locked(&mut seen)
    }

    /// Like [`AclFile::reload`], but reads the file only if its modification
    /// time or length changed since the last read: the cheap periodic check.
    /// A bad file is thus reported once per change, not at every interval.
    pub fn reload_if_modified(&self) -> Result<bool, AclError> {
        let mut seen = self
            .inner
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = stamp(&self.inner.path);
        if now.is_some() && now == seen.stamp {
            return Ok(false);
        }
        self.reload_locked(&mut seen)
    }

    fn reload_locked(&self, seen: &mut Seen) -> Result<bool, AclError> {
        seen.stamp = stamp(&self.inner.path);
        let text = read(&self.inner.path)?;
        let content = hash(&text);
        if content == seen.content {
            return Ok(false);
        }
        let rules = parse(&text, &self.inner.path)?;
        self.inner.rules.store(Arc::new(rules));
        seen.content = content;
        self.inner.generation.fetch_add(1, Ordering::Release);
        Ok(true)
    }

    /// The rules in force now.
    pub fn rules(&self) -> Arc<AclRules> {
        self.inner.rules.load_full()
    }

    /// How many times new rules were swapped in since [`AclFile::load`].
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The file's path, for log lines.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

impl std::fmt::Debug for AclFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclFile")
            .field("path", &self.inner.path)
            .field("generation", &self.generation())
            .field("rules", &self.inner.rules.load().len())
            .finish()
    }
}

impl Authorizer for AclFile {
    fn publish(&self, who: &Identity, topic: &TopicName) -> Decision {
        self.inner.rules.load().publish(who, topic)
    }

    fn subscribe(&self, who: &Identity, filter: &TopicFilter) -> Decision {
        self.inner.rules.load().subscribe(who, filter)
    }
}

/// The file's text; errors name the path.
pub(super) fn read(path: &Path) -> Result<String, AclError> {
    std::fs::read_to_string(path).map_err(|source| AclError::Read {
        path: path.to_owned(),
        source,
    })
}

fn parse(text: &str, path: &Path) -> Result<AclRules, AclError> {
    AclRules::parse(text, &path.display().to_string())
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// A content fingerprint to skip swapping in identical rules. Not
/// adversarial: whoever writes the file already decides the rules.
fn hash(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}
