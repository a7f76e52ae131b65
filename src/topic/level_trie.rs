//! The level structure that holds the wildcard filters of the subscription trie
//! and the shard index (literal filters go to a flat table, see `filter_table`).
//!
//! A node per filter level; `+` and `#` get their own slots instead of living among
//! the literal children, so matching a topic level is one lookup for the literal
//! and one pointer check for each wildcard. What a filter stores at its last
//! level (subscribers, shard counts) is the slot type `S`, so both users share
//! one implementation of walking, matching and pruning.
//!
//! Filters and topics come from clients and can have up to 32,768 levels, so
//! nothing here recurses on the depth: matching keeps its own stack, and dropping
//! a node dismantles its subtree in a loop.

use super::children::Children;

/// What a filter stores where it ends.
pub(crate) trait Slot: Default {
    /// An empty slot is removed, and with it any nodes it alone kept alive.
    fn is_empty(&self) -> bool;
}

/// A trie over the levels of topic filters (the matched part, without any
/// `$share/<group>/` prefix), with a slot `S` at the end of each stored filter.
pub(crate) struct LevelTrie<S> {
    root: Node<S>,
    /// Nodes below the root, so tests and metrics can see that pruning works.
    nodes: usize,
}

struct Node<S> {
    /// Children by literal level.
    children: Children<Node<S>>,
    /// The `+` child. Boxed: most nodes have none.
    plus: Option<Box<Node<S>>>,
    /// The slot of the filter that ends here with `/#` (or is `#`, at the root).
    /// `#` is always the last level, so it needs no node of its own.
    multi: Option<Box<S>>,
    /// The slot of the filter that ends exactly here.
    exact: Option<Box<S>>,
}

/// One level of a filter, as the trie walks it.
#[derive(Clone, Copy)]
enum Step<'a> {
    Literal(&'a str),
    Plus,
}

/// Which slot of its last node a filter uses.
#[derive(Clone, Copy)]
enum End {
    Exact,
    Multi,
}

/// Splits `filter` into the levels that lead to its node, and the slot it uses.
fn parse(filter: &str) -> (impl Iterator<Item = Step<'_>> + Clone, End) {
    let (path, end) = if filter == "#" {
        (None, End::Multi)
    } else if let Some(path) = filter.strip_suffix("/#") {
        (Some(path), End::Multi)
    } else {
        (Some(filter), End::Exact)
    };
    let steps = path
        .into_iter()
        .flat_map(|p| p.split('/'))
        .map(|level| match level {
            "+" => Step::Plus,
            literal => Step::Literal(literal),
        });
    (steps, end)
}

impl<S> Default for Node<S> {
    fn default() -> Self {
        Node {
            children: Children::default(),
            plus: None,
            multi: None,
            exact: None,
        }
    }
}

impl<S> Node<S> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.multi.is_none()
            && self.exact.is_none()
    }

    fn child(&self, step: Step<'_>) -> Option<&Node<S>> {
        match step {
            Step::Literal(level) => self.children.get(level),
            Step::Plus => self.plus.as_deref(),
        }
    }

    fn child_mut(&mut self, step: Step<'_>) -> Option<&mut Node<S>> {
        match step {
            Step::Literal(level) => self.children.get_mut(level),
            Step::Plus => self.plus.as_deref_mut(),
        }
    }

    /// Whether this node holds anything besides its `step` child, and so must stay
    /// when that child goes.
    fn holds_more_than(&self, step: Step<'_>) -> bool {
        let literal_others = match step {
            Step::Literal(_) => self.children.len() > 1,
            Step::Plus => !self.children.is_empty(),
        };
        let plus_other = matches!(step, Step::Literal(_)) && self.plus.is_some();
        literal_others || plus_other || self.multi.is_some() || self.exact.is_some()
    }

    fn slot(&self, end: End) -> Option<&S> {
        match end {
            End::Exact => self.exact.as_deref(),
            End::Multi => self.multi.as_deref(),
        }
    }

    fn slot_mut(&mut self, end: End) -> &mut Option<Box<S>> {
        match end {
            End::Exact => &mut self.exact,
            End::Multi => &mut self.multi,
        }
    }
}

/// Tears the subtree down level by level, so a 30,000-level chain built by a
/// hostile filter cannot overflow the stack through nested drops.
impl<S> Drop for Node<S> {
    fn drop(&mut self) {
        let mut pending = Vec::new();
        self.children.drain_into(&mut pending);
        pending.extend(self.plus.take().map(|b| *b));
        while let Some(mut node) = pending.pop() {
            node.children.drain_into(&mut pending);
            pending.extend(node.plus.take().map(|b| *b));
            // `node` drops here with no children left: no recursion.
        }
    }
}

impl<S> Default for LevelTrie<S> {
    fn default() -> Self {
        LevelTrie {
            root: Node::default(),
            nodes: 0,
        }
    }
}

impl<S> LevelTrie<S> {
    /// Nodes below the root. Zero once every filter is gone.
    pub(crate) fn node_count(&self) -> usize {
        self.nodes
    }

    /// Whether no filter is stored: then matching can skip the walk.
    pub(crate) fn is_empty(&self) -> bool {
        self.root.is_empty()
    }
}

impl<S: Slot> LevelTrie<S> {
    /// The slot of `filter`, if it has one.
    pub(crate) fn get(&self, filter: &str) -> Option<&S> {
        let (steps, end) = parse(filter);
        let mut node = &self.root;
        for step in steps {
            node = node.child(step)?;
        }
        node.slot(end)
    }

    /// The slot of `filter`, created empty (with any missing nodes) if needed.
    ///
    /// The caller must leave something in it: an empty slot is only pruned by
    /// [`LevelTrie::update`].
    pub(crate) fn get_or_create(&mut self, filter: &str) -> &mut S {
        let (steps, end) = parse(filter);
        let mut node = &mut self.root;
        for step in steps {
            node = match step {
                Step::Literal(level) => node.children.get_or_insert_with(level, || {
                    self.nodes += 1;
                    Node::default()
                }),
                Step::Plus => node.plus.get_or_insert_with(|| {
                    self.nodes += 1;
                    Box::default()
                }),
            };
        }
        node.slot_mut(end).get_or_insert_with(Box::default)
    }

    /// Applies `change` to the slot of `filter`, if it has one, then removes the
    /// slot if it is left empty, along with every node nothing else keeps alive.
    pub(crate) fn update<R>(
        &mut self,
        filter: &str,
        change: impl FnOnce(&mut S) -> R,
    ) -> Option<R> {
        let (steps, end) = parse(filter);

        // First pass, read-only: does the slot exist, and which is the deepest
        // node on the path that stays if the slot's node turns out to be empty?
        // Everything below it is then a chain that only led to that slot.
        let mut node = &self.root;
        let mut depth = 0;
        let mut keep = 0;
        for step in steps.clone() {
            if depth > 0 && node.holds_more_than(step) {
                keep = depth;
            }
            node = node.child(step)?;
            depth += 1;
        }
        node.slot(end)?;

        // Second pass: change the slot, and drop it if it is empty now.
        let mut node = &mut self.root;
        for step in steps.clone() {
            node = node.child_mut(step)?;
        }
        let slot = node.slot_mut(end);
        let result = change(slot.as_deref_mut()?);
        if slot.as_deref().is_some_and(S::is_empty) {
            *slot = None;
        }
        if depth == 0 || !node.is_empty() {
            return Some(result);
        }

        // Third pass: cut the dead chain off below the node that stays.
        let mut steps = steps;
        let mut node = &mut self.root;
        for _ in 0..keep {
            let step = steps.next()?;
            node = node.child_mut(step)?;
        }
        let removed = match steps.next()? {
            Step::Literal(level) => node.children.remove(level).is_some(),
            Step::Plus => node.plus.take().is_some(),
        };
        if removed {
            self.nodes -= depth - keep;
        }
        Some(result)
    }

    /// Calls `visit` with the slot of every stored filter that matches `topic`.
    ///
    /// `$`-topics are not matched by a `+` or `#` at the first level
    /// [MQTT-4.7.2-1]. Allocates nothing unless more than [`INLINE_FRAMES`] `+`
    /// branches are pending at once.
    pub(crate) fn for_each_match<'t>(&'t self, topic: &str, mut visit: impl FnMut(&'t S)) {
        let system = topic.starts_with('$');
        let mut pending = Pending::new();
        if !system {
            if let Some(slot) = self.root.multi.as_deref() {
                visit(slot);
            }
        }
        let (level, rest) = split_level(topic);
        if !system {
            if let Some(plus) = self.root.plus.as_deref() {
                pending.push((plus, rest));
            }
        }
        if let Some(child) = self.root.children.get(level) {
            pending.push((child, rest));
        }
        // Each frame is a node reached by the levels before `rest`. Follow the
        // literal path in place; leave `+` branches on the stack for later.
        while let Some((mut node, mut rest)) = pending.pop() {
            loop {
                if let Some(slot) = node.multi.as_deref() {
                    visit(slot);
                }
                let Some(remaining) = rest else {
                    if let Some(slot) = node.exact.as_deref() {
                        visit(slot);
                    }
                    break;
                };
                let (level, tail) = split_level(remaining);
                if let Some(plus) = node.plus.as_deref() {
                    pending.push((plus, tail));
                }
                match node.children.get(level) {
                    Some(child) => (node, rest) = (child, tail),
                    None => break,
                }
            }
        }
    }

    /// Checks what the counters and pruning promise, by walking every node.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let mut pending: Vec<&Node<S>> = self.root.children.values().collect();
        pending.extend(self.root.plus.as_deref());
        let mut seen = 0;
        while let Some(node) = pending.pop() {
            seen += 1;
            assert!(!node.is_empty(), "an empty node was left behind");
            for slot in [&node.multi, &node.exact].into_iter().flatten() {
                assert!(!slot.is_empty(), "an empty slot was left behind");
            }
            pending.extend(node.children.values());
            pending.extend(node.plus.as_deref());
        }
        assert_eq!(seen, self.nodes, "node count");
    }
}

/// Splits off the first level of `topic`; the rest is `None` after the last level.
fn split_level(topic: &str) -> (&str, Option<&str>) {
    match memchr::memchr(b'/', topic.as_bytes()) {
        Some(at) => (&topic[..at], Some(&topic[at + 1..])),
        None => (topic, None),
    }
}

/// Frames kept on the stack before [`Pending`] spills to the heap: one per `+`
/// branch still to explore, which is a handful even for wildcard-heavy tries.
const INLINE_FRAMES: usize = 16;

type Frame<'t, 's, S> = (&'t Node<S>, Option<&'s str>);

/// The matcher's stack of branches still to explore: inline first, so a publish
/// does not allocate, then a `Vec` for the rare deep fan-out.
struct Pending<'t, 's, S> {
    inline: [Option<Frame<'t, 's, S>>; INLINE_FRAMES],
    len: usize,
    spill: Vec<Frame<'t, 's, S>>,
}

impl<'t, 's, S> Pending<'t, 's, S> {
    fn new() -> Self {
        Pending {
            inline: [None; INLINE_FRAMES],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, frame: Frame<'t, 's, S>) {
        if self.len < INLINE_FRAMES {
            self.inline[self.len] = Some(frame);
            self.len += 1;
        } else {
            self.spill.push(frame);
        }
    }

    fn pop(&mut self) -> Option<Frame<'t, 's, S>> {
        if let Some(frame) = self.spill.pop() {
            return Some(frame);
        }
        self.len = self.len.checked_sub(1)?;
        self.inline[self.len].take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Slot for u32 {
        fn is_empty(&self) -> bool {
            *self == 0
        }
    }

    fn add(trie: &mut LevelTrie<u32>, filter: &str) {
        *trie.get_or_create(filter) += 1;
        trie.check_invariants();
    }

    fn sub(trie: &mut LevelTrie<u32>, filter: &str) -> Option<u32> {
        let left = trie.update(filter, |n| {
            *n -= 1;
            *n
        });
        trie.check_invariants();
        left
    }

    fn matched(trie: &LevelTrie<u32>, topic: &str) -> u32 {
        let mut total = 0;
        trie.for_each_match(topic, |n| total += n);
        total
    }

    #[test]
    fn prunes_only_what_nothing_else_needs() {
        let mut t = LevelTrie::default();
        add(&mut t, "a/b/c/d");
        add(&mut t, "a/b");
        add(&mut t, "a/+/c/#");
        assert_eq!(t.node_count(), 6);
        assert_eq!(sub(&mut t, "a/b/c/d"), Some(0));
        assert_eq!(t.node_count(), 4, "c and d go, a/b stays");
        assert_eq!(sub(&mut t, "a/b/c/d"), None);
        assert_eq!(sub(&mut t, "a/+/c/#"), Some(0));
        assert_eq!(t.node_count(), 2);
        assert_eq!(sub(&mut t, "a/b"), Some(0));
        assert_eq!(t.node_count(), 0);
    }

    #[test]
    fn slot_on_an_inner_node_keeps_it() {
        let mut t = LevelTrie::default();
        add(&mut t, "a/#");
        add(&mut t, "a/b");
        add(&mut t, "a");
        assert_eq!(sub(&mut t, "a/b"), Some(0));
        assert_eq!(t.node_count(), 1);
        assert_eq!(sub(&mut t, "a/#"), Some(0));
        assert_eq!(t.node_count(), 1);
        assert_eq!(matched(&t, "a"), 1);
        assert_eq!(sub(&mut t, "a"), Some(0));
        assert_eq!(t.node_count(), 0);
    }

    #[test]
    fn root_wildcards_and_system_topics() {
        let mut t = LevelTrie::default();
        add(&mut t, "#");
        add(&mut t, "+");
        add(&mut t, "+/x");
        add(&mut t, "$SYS/#");
        assert_eq!(matched(&t, "a"), 2);
        assert_eq!(matched(&t, "a/x"), 2);
        assert_eq!(matched(&t, "$SYS"), 1);
        assert_eq!(matched(&t, "$SYS/x"), 1);
        assert_eq!(sub(&mut t, "#"), Some(0));
        assert_eq!(sub(&mut t, "$SYS/#"), Some(0));
        assert_eq!(sub(&mut t, "+/x"), Some(0));
        assert_eq!(sub(&mut t, "+"), Some(0));
        assert_eq!(t.node_count(), 0);
    }

    #[test]
    fn deep_filters_do_not_overflow_the_stack() {
        let levels = 30_000;
        let plus = vec!["+"; levels].join("/");
        let literal = vec!["x"; levels].join("/");
        let mut t = LevelTrie::default();
        *t.get_or_create(&plus) += 1;
        *t.get_or_create(&literal) += 1;
        *t.get_or_create(&format!("{literal}/#")) += 1;
        assert_eq!(t.node_count(), 2 * levels);
        assert_eq!(matched(&t, &literal), 3);
        assert_eq!(matched(&t, &vec!["y"; levels].join("/")), 1);
        assert_eq!(t.update(&plus, std::mem::take), Some(1));
        assert_eq!(t.node_count(), levels);
        drop(t);
    }

    /// What `for_each_match` promises: no allocation while at most
    /// `INLINE_FRAMES` branches are pending; past that, frames spill and come
    /// back last in, first out.
    #[test]
    fn pending_frames_stay_inline_then_spill() {
        let node = Node::<u32>::default();
        let mut pending = Pending::new();
        for _ in 0..INLINE_FRAMES {
            pending.push((&node, None));
        }
        assert!(
            pending.spill.is_empty(),
            "{INLINE_FRAMES} frames fit inline"
        );
        pending.push((&node, Some("x")));
        assert_eq!(pending.spill.len(), 1);
        assert_eq!(pending.pop().map(|f| f.1), Some(Some("x")));
        let mut popped = 0;
        while let Some((_, rest)) = pending.pop() {
            assert_eq!(rest, None);
            popped += 1;
        }
        assert_eq!(popped, INLINE_FRAMES);
    }

    #[test]
    fn many_plus_branches_spill_and_still_match() {
        let mut t = LevelTrie::default();
        // Every level offers a `+` and a literal branch: 2^n paths for n levels.
        for i in 0..20 {
            let f: Vec<&str> = (0..20).map(|l| if l == i { "+" } else { "x" }).collect();
            add(&mut t, &f.join("/"));
        }
        assert_eq!(matched(&t, &vec!["x"; 20].join("/")), 20);
    }
}
