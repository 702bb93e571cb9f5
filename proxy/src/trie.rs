//! The route trie: longest-prefix match by whole path segments.
//!
//! Keys and lookups are sequences of decoded segments. A node without a value is only a step
//! on the way and never matches; the root (no segments) is an ordinary route that catches
//! everything else. Lookups walk at most one node per segment and never allocate.

use std::collections::HashMap;

/// A trie of values keyed by path segments.
#[derive(Debug)]
pub struct Trie<T> {
    root: Node<T>,
}

#[derive(Debug)]
struct Node<T> {
    value: Option<T>,
    children: HashMap<Box<str>, Node<T>>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Self {
            value: None,
            children: HashMap::new(),
        }
    }
}

impl<T> Default for Trie<T> {
    fn default() -> Self {
        Self {
            root: Node::default(),
        }
    }
}

impl<T> Trie<T> {
    /// Stores `value` under `key`, returning the value it replaces.
    pub fn insert<'a>(&mut self, key: impl IntoIterator<Item = &'a str>, value: T) -> Option<T> {
        let mut node = &mut self.root;
        for segment in key {
            node = node.children.entry(segment.into()).or_default();
        }
        node.value.replace(value)
    }

    /// The value stored exactly under `key`.
    pub fn get_exact<'a>(&self, key: impl IntoIterator<Item = &'a str>) -> Option<&T> {
        let mut node = &self.root;
        for segment in key {
            node = node.children.get(segment)?;
        }
        node.value.as_ref()
    }

    /// The value of the longest stored prefix of `path`, with the number of segments it spans.
    pub fn longest_prefix<S: AsRef<str>>(
        &self,
        path: impl IntoIterator<Item = S>,
    ) -> Option<(&T, usize)> {
        let mut node = &self.root;
        let mut best = node.value.as_ref().map(|v| (v, 0));
        for (depth, segment) in path.into_iter().enumerate() {
            match node.children.get(segment.as_ref()) {
                Some(child) => node = child,
                None => break,
            }
            if let Some(v) = &node.value {
                best = Some((v, depth + 1));
            }
        }
        best
    }

    /// Removes the value under `key` and prunes branches left empty.
    pub fn remove<'a>(&mut self, key: impl IntoIterator<Item = &'a str>) -> Option<T> {
        let segments: Vec<&str> = key.into_iter().collect();
        remove_at(&mut self.root, &segments)
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.root.value.is_none() && self.root.children.is_empty()
    }
}

fn remove_at<T>(node: &mut Node<T>, segments: &[&str]) -> Option<T> {
    let Some((first, rest)) = segments.split_first() else {
        return node.value.take();
    };
    let child = node.children.get_mut(*first)?;
    let removed = remove_at(child, rest);
    if child.value.is_none() && child.children.is_empty() {
        node.children.remove(*first);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(path: &str) -> Vec<&str> {
        let rest = path.strip_prefix('/').unwrap_or(path);
        if rest.is_empty() {
            vec![]
        } else {
            rest.split('/').collect()
        }
    }

    fn lookup<'a>(t: &'a Trie<&'static str>, path: &str) -> Option<&'a str> {
        t.longest_prefix(split(path)).map(|(v, _)| *v)
    }

    #[test]
    fn root_catches_everything() {
        let mut t = Trie::default();
        assert_eq!(lookup(&t, "/not/found"), None);
        t.insert(split("/"), "root");
        assert_eq!(lookup(&t, "/1/etc/etc/"), Some("root"));
        assert_eq!(lookup(&t, "/"), Some("root"));
        assert_eq!(lookup(&t, ""), Some("root"));
    }

    #[test]
    fn whole_segments_only() {
        let mut t = Trie::default();
        t.insert(split("/1"), "1");
        t.insert(split("/a/b/c/d"), "abcd");
        t.insert(split("/b/c"), "bc");
        t.insert(split("/b/c/d"), "bcd");
        assert_eq!(lookup(&t, "/1/etc/etc/"), Some("1"));
        assert_eq!(lookup(&t, "/a"), None, "intermediate nodes never match");
        assert_eq!(lookup(&t, "/a/b/c"), None);
        assert_eq!(lookup(&t, "/b/c/d/word"), Some("bcd"));
        assert_eq!(lookup(&t, "/b/c/dword"), Some("bc"));
        assert_eq!(
            t.longest_prefix(split("/b/c/d/word")).map(|(_, n)| n),
            Some(3)
        );
    }

    #[test]
    fn removal_prunes_and_keeps_subtrees() {
        let mut t = Trie::default();
        t.insert(split("/"), "root");
        t.insert(split("/b"), "b");
        t.insert(split("/b/c"), "bc");
        t.insert(split("/a/b/c/d"), "abcd");
        assert_eq!(t.remove(split("/b")), Some("b"));
        assert_eq!(lookup(&t, "/b/c/x"), Some("bc"));
        assert_eq!(lookup(&t, "/b/x"), Some("root"));
        assert_eq!(t.remove(split("/a/b/c/d")), Some("abcd"));
        assert!(!t.root.children.contains_key("a"), "empty branch pruned");
        assert_eq!(t.remove(split("/")), Some("root"));
        assert_eq!(lookup(&t, "/x"), None);
        assert_eq!(t.remove(split("/nothing")), None);
    }

    #[test]
    fn sub_paths_fall_back_until_added() {
        let mut t = Trie::default();
        t.insert(split("/"), "root");
        t.insert(split("/prefix/sub/tree"), "tree");
        assert_eq!(lookup(&t, "/prefix"), Some("root"));
        assert_eq!(lookup(&t, "/prefix/sub"), Some("root"));
        t.insert(split("/prefix"), "prefix");
        assert_eq!(lookup(&t, "/prefix/sub"), Some("prefix"));
        assert_eq!(lookup(&t, "/prefix/sub/tree/x"), Some("tree"));
    }

    #[test]
    fn empty_segments_are_distinct() {
        let mut t = Trie::default();
        t.insert(split("/user/alice"), "alice");
        assert_eq!(lookup(&t, "/user//alice/x"), None);
        assert_eq!(lookup(&t, "/user/alice/"), Some("alice"));
    }

    proptest! {
        // The trie agrees with a naive scan over all keys for the longest whole-segment prefix.
        #[test]
        fn agrees_with_linear_scan(
            keys in proptest::collection::vec("(/[ab]{0,2}){0,4}", 0..12),
            path in "(/[ab]{0,2}){0,5}",
        ) {
            let mut t = Trie::default();
            for k in &keys {
                t.insert(split(k), k.clone());
            }
            let segs = split(&path);
            let naive = keys
                .iter()
                .filter(|k| {
                    let ks = split(k);
                    ks.len() <= segs.len() && ks.iter().zip(&segs).all(|(a, b)| a == b)
                })
                .max_by_key(|k| split(k).len());
            let got = t.longest_prefix(segs.iter().copied()).map(|(v, _)| v);
            prop_assert_eq!(got.map(|k| split(k)), naive.map(|k| split(k)));
        }
    }
}
