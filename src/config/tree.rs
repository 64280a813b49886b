//! The tree of a routing document, as the upstreams walker reads it.
//!
//! serde_yaml's `Value` keeps mappings in hash-indexed maps; the walker only ever goes through
//! a mapping in order, so here a mapping is a list of pairs, checked once for duplicate keys
//! when it is built. Building this tree from a 10,000-host document costs about a third of
//! building a `Value` from it.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_yaml::Number;

/// One value of the document.
#[derive(Debug, Clone, PartialEq, Hash)]
pub enum Node {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Sequence(Vec<Node>),
    Mapping(Map),
    /// A value with a YAML tag (`!name value`), which no routing key accepts.
    Tagged(Box<Node>),
}

// serde_yaml's numbers compare NaN equal to itself, so equality is total.
impl Eq for Node {}

/// A mapping's pairs in document order, without two equal keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Map {
    entries: Vec<(Node, Node)>,
}

/// A mapping that names the same key twice.
#[derive(Debug)]
pub struct DuplicateKey(pub Node);

/// Up to this many pairs a mapping is checked for duplicates pair by pair; past it, with a
/// hash set.
const LINEAR_CHECK: usize = 16;

impl Map {
    /// A mapping of `entries`, refused if two keys are equal.
    pub fn new(entries: Vec<(Node, Node)>) -> Result<Map, DuplicateKey> {
        if let Some(key) = first_duplicate(&entries) {
            return Err(DuplicateKey(key.clone()));
        }
        Ok(Map { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> MapIter<'_> {
        MapIter(self.entries.iter())
    }

    /// The value under the string key `key`.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.iter()
            .find(|(k, _)| matches!(k, Node::String(s) if s == key))
            .map(|(_, v)| v)
    }
}

fn first_duplicate(entries: &[(Node, Node)]) -> Option<&Node> {
    if entries.len() <= LINEAR_CHECK {
        return entries
            .iter()
            .enumerate()
            .find(|(i, (key, _))| entries[..*i].iter().any(|(k, _)| k == key))
            .map(|(_, (key, _))| key);
    }
    let mut seen = foldhash::HashSet::with_capacity_and_hasher(entries.len(), Default::default());
    entries
        .iter()
        .map(|(key, _)| key)
        .find(|key| !seen.insert(*key))
}

/// The pairs of a [`Map`], as `(key, value)` references.
pub struct MapIter<'a>(std::slice::Iter<'a, (Node, Node)>);

impl<'a> Iterator for MapIter<'a> {
    type Item = (&'a Node, &'a Node);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k, v))
    }
}

impl<'a> IntoIterator for &'a Map {
    type Item = (&'a Node, &'a Node);
    type IntoIter = MapIter<'a>;

    fn into_iter(self) -> MapIter<'a> {
        self.iter()
    }
}

impl Node {
    /// A short name for the kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "nothing",
            Node::Bool(_) => "a boolean",
            Node::Number(_) => "a number",
            Node::String(_) => "a string",
            Node::Sequence(_) => "a list",
            Node::Mapping(_) => "a mapping",
            Node::Tagged(_) => "a tagged value",
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Node::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub fn as_mapping(&self) -> Option<&Map> {
        match self {
            Node::Mapping(m) => Some(m),
            _ => None,
        }
    }
}

/// Documents serde_yaml read (the ones the fast reader leaves to it). serde_yaml has already
/// refused duplicate keys, so none are checked here.
impl From<serde_yaml::Value> for Node {
    fn from(value: serde_yaml::Value) -> Node {
        use serde_yaml::Value;
        match value {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(b),
            Value::Number(n) => Node::Number(n),
            Value::String(s) => Node::String(s),
            Value::Sequence(items) => Node::Sequence(items.into_iter().map(Node::from).collect()),
            Value::Mapping(map) => Node::Mapping(Map {
                entries: map
                    .into_iter()
                    .map(|(k, v)| (Node::from(k), Node::from(v)))
                    .collect(),
            }),
            Value::Tagged(tagged) => Node::Tagged(Box::new(Node::from(tagged.value))),
        }
    }
}

/// Documents written as JSON are read by serde_json straight into a tree.
impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node, E> {
        Ok(Node::Bool(b))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Node, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Node, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Node, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_str<E>(self, s: &str) -> Result<Node, E> {
        Ok(Node::String(s.to_string()))
    }

    fn visit_string<E>(self, s: String) -> Result<Node, E> {
        Ok(Node::String(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Node, A::Error> {
        let mut entries = Vec::with_capacity(access.size_hint().unwrap_or(0));
        while let Some(pair) = access.next_entry()? {
            entries.push(pair);
        }
        Map::new(entries)
            .map(Node::Mapping)
            .map_err(|DuplicateKey(key)| {
                serde::de::Error::custom(format_args!("duplicate entry with key {key:?}"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Node {
        Node::String(text.to_string())
    }

    #[test]
    fn duplicate_keys_are_refused_in_small_and_large_mappings() {
        let small = vec![
            (s("a"), Node::Null),
            (s("b"), Node::Null),
            (s("a"), Node::Null),
        ];
        assert!(matches!(Map::new(small), Err(DuplicateKey(k)) if k == s("a")));
        let mut large: Vec<_> = (0..100)
            .map(|i| (s(&format!("k{i}")), Node::Null))
            .collect();
        assert!(Map::new(large.clone()).is_ok());
        large.push((s("k42"), Node::Bool(true)));
        assert!(matches!(Map::new(large), Err(DuplicateKey(k)) if k == s("k42")));
        // Keys of different kinds are different keys.
        let mixed = vec![(s("1"), Node::Null), (Node::Number(1.into()), Node::Null)];
        assert!(Map::new(mixed).is_ok());
    }

    #[test]
    fn json_reads_into_the_tree_serde_yaml_would_build() {
        let json = r#"{"a": [1, -2, 1.5, true, null, "x"], "b": {"c": {}}}"#;
        let node: Node = serde_json::from_str(json).unwrap();
        let value: serde_yaml::Value = serde_yaml::from_str(json).unwrap();
        assert_eq!(node, Node::from(value));
        let err = serde_json::from_str::<Node>(r#"{"a": 1, "a": 2}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate entry"), "{err}");
    }

    #[test]
    fn lookups_and_kinds() {
        let map = Map::new(vec![(s("paths"), Node::Number(3.into()))]).unwrap();
        assert_eq!(map.get("paths").and_then(Node::as_u64), Some(3));
        assert_eq!(map.get("other"), None);
        assert_eq!(Node::Mapping(map).kind(), "a mapping");
    }
}
