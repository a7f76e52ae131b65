//! The literal children of a trie node, keyed by topic level.
//!
//! Most nodes have one child (`devices/<id>/events` is a chain below `devices`), a
//! few have thousands (`devices` itself). A hash table per node would cost a
//! 48-byte header and a four-bucket allocation even for the single child, and
//! hashing with SipHash costs more than comparing a handful of short strings. So
//! small sets are a plain vector scanned linearly, and a set that grows past
//! [`FEW_MAX`] becomes a `HashMap`. The map keeps the default, randomly keyed hasher:
//! levels come from clients, and a predictable hash would let one client degrade
//! the whole shard with colliding topic names.

use crate::hash::HashMap;

/// Largest set kept as a vector. Past it a linear scan costs more than one hash.
const FEW_MAX: usize = 8;

/// A map shrinks back to a vector at this size, well below [`FEW_MAX`] so a set
/// that hovers around the boundary does not rebuild on every change.
const MANY_MIN: usize = FEW_MAX / 2;

/// Children of one node, by level text. An empty level (`a//b`) is the key `""`.
pub(crate) enum Children<N> {
    /// Up to [`FEW_MAX`] children, in insertion order.
    Few(Vec<(Box<str>, N)>),
    /// Boxed so the common `Few` case keeps the node small (a map inline would
    /// grow every node by its 64 bytes).
    Many(Box<HashMap<Box<str>, N>>),
}

impl<N> Default for Children<N> {
    fn default() -> Self {
        Children::Few(Vec::new())
    }
}

impl<N> Children<N> {
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Children::Few(v) => v.is_empty(),
            Children::Many(m) => m.is_empty(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Children::Few(v) => v.len(),
            Children::Many(m) => m.len(),
        }
    }

    pub(crate) fn get(&self, level: &str) -> Option<&N> {
        match self {
            Children::Few(v) => v.iter().find(|(k, _)| &**k == level).map(|(_, n)| n),
            Children::Many(m) => m.get(level),
        }
    }

    pub(crate) fn get_mut(&mut self, level: &str) -> Option<&mut N> {
        match self {
            Children::Few(v) => v.iter_mut().find(|(k, _)| &**k == level).map(|(_, n)| n),
            Children::Many(m) => m.get_mut(level),
        }
    }

    /// The child for `level`, created with `make` if missing.
    pub(crate) fn get_or_insert_with(&mut self, level: &str, make: impl FnOnce() -> N) -> &mut N {
        if let Children::Few(v) = self {
            if v.len() == FEW_MAX && !v.iter().any(|(k, _)| &**k == level) {
                let map: HashMap<_, _> = v.drain(..).collect();
                *self = Children::Many(Box::new(map));
            }
        }
        match self {
            Children::Few(v) => {
                let at = match v.iter().position(|(k, _)| &**k == level) {
                    Some(at) => at,
                    None => {
                        v.push((level.into(), make()));
                        v.len() - 1
                    }
                };
                &mut v[at].1
            }
            Children::Many(m) => m.entry(level.into()).or_insert_with(make),
        }
    }

    /// Takes the child for `level` out, shrinking the storage so that a node whose
    /// children come and go does not keep the memory of its busiest moment.
    pub(crate) fn remove(&mut self, level: &str) -> Option<N> {
        match self {
            Children::Few(v) => {
                let at = v.iter().position(|(k, _)| &**k == level)?;
                let (_, child) = v.swap_remove(at);
                if v.len() <= v.capacity() / 4 {
                    v.shrink_to_fit();
                }
                Some(child)
            }
            Children::Many(m) => {
                let child = m.remove(level)?;
                if m.len() < MANY_MIN {
                    let few: Vec<_> = m.drain().collect();
                    *self = Children::Few(few);
                } else if m.len() <= m.capacity() / 4 {
                    m.shrink_to_fit();
                }
                Some(child)
            }
        }
    }

    /// Moves every child out, leaving the set empty. Used to tear a subtree down
    /// without recursion.
    pub(crate) fn drain_into(&mut self, out: &mut Vec<N>) {
        match std::mem::take(self) {
            Children::Few(v) => out.extend(v.into_iter().map(|(_, n)| n)),
            Children::Many(m) => out.extend(m.into_values()),
        }
    }

    #[cfg(test)]
    pub(crate) fn values(&self) -> impl Iterator<Item = &N> {
        let (few, many) = match self {
            Children::Few(v) => (Some(v.iter().map(|(_, n)| n)), None),
            Children::Many(m) => (None, Some(m.values())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_into_a_map_and_shrinks_back() {
        let mut c: Children<u32> = Children::default();
        for i in 0..100u32 {
            *c.get_or_insert_with(&i.to_string(), || 0) += i;
        }
        assert!(matches!(c, Children::Many(_)));
        assert_eq!(c.len(), 100);
        assert_eq!(c.get("42"), Some(&42));
        assert_eq!(c.get(""), None);
        for i in 0..98u32 {
            assert_eq!(c.remove(&i.to_string()), Some(i));
        }
        assert!(matches!(c, Children::Few(_)));
        assert_eq!(c.values().copied().collect::<Vec<_>>().len(), 2);
        assert_eq!(c.get("99"), Some(&99));
        assert_eq!(c.remove("99"), Some(99));
        assert_eq!(c.remove("99"), None);
        assert_eq!(c.remove("98"), Some(98));
        assert!(c.is_empty());
    }

    /// The switch points are the memory and speed trade-off the module doc
    /// describes: a vector up to `FEW_MAX`, and a map that only shrinks back
    /// below `MANY_MIN`, so a set hovering around the limit does not rebuild.
    #[test]
    fn switches_at_few_max_and_back_below_many_min() {
        let mut c: Children<usize> = Children::default();
        for i in 0..FEW_MAX {
            c.get_or_insert_with(&i.to_string(), || i);
        }
        assert!(
            matches!(c, Children::Few(_)),
            "{FEW_MAX} children fit a vector"
        );
        c.get_or_insert_with("0", || 99);
        assert!(
            matches!(c, Children::Few(_)),
            "an existing level adds nothing"
        );
        c.get_or_insert_with(&FEW_MAX.to_string(), || FEW_MAX);
        assert!(matches!(c, Children::Many(_)));
        for i in MANY_MIN..=FEW_MAX {
            assert_eq!(c.remove(&i.to_string()), Some(i));
        }
        assert_eq!(c.len(), MANY_MIN);
        assert!(matches!(c, Children::Many(_)), "still a map at {MANY_MIN}");
        assert_eq!(c.remove("0"), Some(0));
        assert!(matches!(c, Children::Few(_)));
        assert_eq!(c.get("1"), Some(&1));
        assert_eq!(c.get("0"), None);
    }

    #[test]
    fn empty_level_is_a_key() {
        let mut c: Children<u8> = Children::default();
        *c.get_or_insert_with("", || 1) += 1;
        assert_eq!(c.get(""), Some(&2));
        assert_eq!(c.get_mut("x"), None);
    }
}
