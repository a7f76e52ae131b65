use std::fmt;

use bytestring::ByteString;

use super::{TopicError, MAX_TOPIC_LEN};

const SHARE_PREFIX: &str = "$share/";

/// A topic filter as carried by SUBSCRIBE and UNSUBSCRIBE, possibly shared.
///
/// `$share/<group>/<filter>` is kept whole, as the client wrote it (UNSUBSCRIBE must
/// name it the same way), and [`TopicFilter::filter`] gives the part that is matched
/// against topics.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter {
    full: ByteString,
    /// Byte offset of the matched filter in `full`: 0, or past `$share/<group>/`.
    filter_start: u16,
}

impl TopicFilter {
    /// Checks `s` (wildcard placement, shared-subscription form) and wraps it.
    pub fn new(s: impl Into<ByteString>) -> Result<Self, TopicError> {
        let full = s.into();
        if full.len() > MAX_TOPIC_LEN {
            return Err(TopicError::TooLong);
        }
        if memchr::memchr(0, full.as_bytes()).is_some() {
            return Err(TopicError::Nul);
        }
        let filter_start = match full.strip_prefix(SHARE_PREFIX) {
            Some(rest) => {
                let group_len =
                    memchr::memchr(b'/', rest.as_bytes()).ok_or(TopicError::InvalidShareName)?;
                let group = &rest[..group_len];
                if group.is_empty() {
                    return Err(TopicError::EmptyShareName);
                }
                if memchr::memchr2(b'+', b'#', group.as_bytes()).is_some() {
                    return Err(TopicError::InvalidShareName);
                }
                if group_len + 1 == rest.len() {
                    return Err(TopicError::InvalidShareName);
                }
                SHARE_PREFIX.len() + group_len + 1
            }
            None => 0,
        };
        validate_filter(&full[filter_start..])?;
        Ok(TopicFilter {
            full,
            // Cannot truncate: `full` is at most 65535 bytes long.
            filter_start: filter_start as u16,
        })
    }

    /// The filter as the client wrote it, `$share/` prefix included.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The underlying shared string, `$share/` prefix included.
    pub fn as_bytestring(&self) -> &ByteString {
        &self.full
    }

    /// The part matched against topic names (without any `$share/<group>/`).
    pub fn filter(&self) -> &str {
        &self.full[self.filter_start as usize..]
    }

    /// The share group name, for a `$share/<group>/<filter>` subscription.
    pub fn share_group(&self) -> Option<&str> {
        (self.filter_start > 0)
            .then(|| &self.full[SHARE_PREFIX.len()..self.filter_start as usize - 1])
    }

    /// Whether the matched part contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        memchr::memchr2(b'+', b'#', self.filter().as_bytes()).is_some()
    }

    /// The levels of the matched part.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.filter().split('/')
    }

    /// Does this filter match `topic`? Slow reference path; see the trie for many.
    pub fn matches(&self, topic: &str) -> bool {
        super::matches(self.filter(), topic)
    }

    /// A copy that owns its memory, so keeping it does not pin the read buffer.
    pub fn detached(&self) -> Self {
        TopicFilter {
            full: ByteString::from(self.as_str().to_owned()),
            filter_start: self.filter_start,
        }
    }
}

fn validate_filter(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    let mut levels = s.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.len() > 1 || level.is_empty() {
            if level.contains('#') {
                return Err(TopicError::MultiLevelWildcard);
            }
            if level.contains('+') {
                return Err(TopicError::SingleLevelWildcard);
            }
        } else if level == "#" && levels.peek().is_some() {
            return Err(TopicError::MultiLevelWildcard);
        }
    }
    Ok(())
}

impl TryFrom<&str> for TopicFilter {
    type Error = TopicError;
    fn try_from(s: &str) -> Result<Self, TopicError> {
        TopicFilter::new(s.to_owned())
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_validation_table() {
        use TopicError::*;
        let cases: &[(&str, Result<(), TopicError>)] = &[
            ("a", Ok(())),
            ("#", Ok(())),
            ("+", Ok(())),
            ("a/#", Ok(())),
            ("a/+/c", Ok(())),
            ("+/+/#", Ok(())),
            ("/", Ok(())),
            ("$SYS/#", Ok(())),
            ("$share", Ok(())), // no slash: an ordinary filter
            ("$share/g/a/+", Ok(())),
            ("$share/g/#", Ok(())),
            ("", Err(Empty)),
            ("a/#/b", Err(MultiLevelWildcard)),
            ("a#", Err(MultiLevelWildcard)),
            ("#/", Err(MultiLevelWildcard)),
            ("a/b#", Err(MultiLevelWildcard)),
            ("a+", Err(SingleLevelWildcard)),
            ("a/+b/c", Err(SingleLevelWildcard)),
            ("a\0", Err(Nul)),
            ("$share//a", Err(EmptyShareName)),
            ("$share/g", Err(InvalidShareName)),
            ("$share/g/", Err(InvalidShareName)),
            ("$share/g+/a", Err(InvalidShareName)),
            ("$share/#/a", Err(InvalidShareName)),
            ("$share/g/a/#/b", Err(MultiLevelWildcard)),
        ];
        for (input, want) in cases {
            assert_eq!(
                TopicFilter::new(input.to_string()).map(|_| ()),
                *want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn shared_parts() {
        let f = TopicFilter::new("$share/grp/a/+").unwrap();
        assert_eq!(f.share_group(), Some("grp"));
        assert_eq!(f.filter(), "a/+");
        assert_eq!(f.as_str(), "$share/grp/a/+");
        assert!(f.has_wildcards());
        let plain = TopicFilter::new("a/b").unwrap();
        assert_eq!(plain.share_group(), None);
        assert_eq!(plain.filter(), "a/b");
        assert!(!plain.has_wildcards());
    }
}
