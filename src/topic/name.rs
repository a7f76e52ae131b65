use std::fmt;

use bytestring::ByteString;

use super::{TopicError, MAX_TOPIC_LEN};

/// A topic name as carried by PUBLISH: non-empty, no wildcards, no U+0000.
///
/// Backed by [`ByteString`] so a name decoded from a packet is a view of the read
/// buffer rather than a fresh allocation. Code that keeps a name beyond the packet
/// (retained store, offline queues) must call [`TopicName::detached`] first, or it
/// pins the whole read buffer.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(ByteString);

impl TopicName {
    /// Checks `s` and wraps it.
    pub fn new(s: impl Into<ByteString>) -> Result<Self, TopicError> {
        let s = s.into();
        validate_name(&s)?;
        Ok(TopicName(s))
    }

    /// The empty name of an MQTT 5 PUBLISH that names its topic by alias only.
    /// Only the codec makes one; the broker replaces it with the aliased topic.
    pub(crate) fn alias_only() -> Self {
        TopicName(ByteString::new())
    }

    /// Whether this is the empty name of an alias-only PUBLISH.
    pub fn is_alias_only(&self) -> bool {
        self.0.is_empty()
    }

    /// The topic as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The underlying shared string.
    pub fn as_bytestring(&self) -> &ByteString {
        &self.0
    }

    /// `$`-topics (such as `$SYS/...`) are for the server; leading wildcards skip them.
    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }

    /// The levels between `/` separators; an empty level is an empty string.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// A copy that owns its memory, so keeping it does not pin the read buffer.
    pub fn detached(&self) -> Self {
        TopicName(ByteString::from(self.as_str().to_owned()))
    }
}

/// Validation shared with the codec, which has already checked UTF-8 and U+0000.
pub(crate) fn validate_name(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    if memchr::memchr2(b'+', b'#', s.as_bytes()).is_some() {
        return Err(TopicError::WildcardInName);
    }
    if memchr::memchr(0, s.as_bytes()).is_some() {
        return Err(TopicError::Nul);
    }
    Ok(())
}

impl TryFrom<&str> for TopicName {
    type Error = TopicError;
    fn try_from(s: &str) -> Result<Self, TopicError> {
        TopicName::new(s.to_owned())
    }
}

impl std::ops::Deref for TopicName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_validation_table() {
        let long = "a".repeat(MAX_TOPIC_LEN + 1);
        let cases: &[(&str, Result<(), TopicError>)] = &[
            ("a", Ok(())),
            ("a/b/c", Ok(())),
            ("/", Ok(())),
            ("//", Ok(())),
            ("$SYS/uptime", Ok(())),
            ("a b/ü/日本", Ok(())),
            ("", Err(TopicError::Empty)),
            ("a/+", Err(TopicError::WildcardInName)),
            ("#", Err(TopicError::WildcardInName)),
            ("a+b", Err(TopicError::WildcardInName)),
            ("a\0b", Err(TopicError::Nul)),
            (&long, Err(TopicError::TooLong)),
        ];
        for (input, want) in cases {
            assert_eq!(
                TopicName::new(input.to_string()).map(|_| ()),
                *want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn system_topics() {
        assert!(TopicName::new("$SYS/x").unwrap().is_system());
        assert!(!TopicName::new("a/$SYS").unwrap().is_system());
    }
}
