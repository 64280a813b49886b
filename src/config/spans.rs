//! Where each key and value of a YAML document sits, so that errors found after parsing
//! (by validation, or by serde) can name a line and column.
//!
//! serde_yaml keeps no positions once a document is deserialized, so we run saphyr's event
//! parser over the same text and record the position of every node under its key path.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, Span, SpannedEventReceiver};

use super::error::Location;

/// Key path -> position of the key and of its value.
#[derive(Debug, Default)]
pub struct SpanIndex {
    values: HashMap<String, Location>,
    keys: HashMap<String, Location>,
    repeated: Vec<RepeatedKey>,
}

/// A key written twice in one mapping, with both places: serde_yaml refuses the document but
/// points at the mapping, not at the second key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepeatedKey {
    /// Path of the mapping that holds the key; empty for the root.
    pub parent: String,
    pub key: String,
    pub first: Location,
    pub again: Location,
}

/// Appends a map key to a path: `a` + `b` -> `a.b`.
pub fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Appends a sequence index to a path: `a` + 1 -> `a[1]`.
pub fn join_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// Where a value sits in the document, as a chain of borrowed steps on the validator's stack.
/// It becomes text (`upstreams.a.com.paths./.servers[0]`, as [`join_key`] and [`join_index`]
/// write it) only when an issue is reported: formatting every path up front was a fifth of
/// validating a 10,000-host document.
#[derive(Debug, Clone, Copy)]
pub enum KeyPath<'a> {
    Root,
    Key(&'a KeyPath<'a>, &'a str),
    Index(&'a KeyPath<'a>, usize),
}

impl<'a> KeyPath<'a> {
    /// The path of `key` under this one.
    pub fn key(&'a self, key: &'a str) -> KeyPath<'a> {
        KeyPath::Key(self, key)
    }

    /// The path of item `index` of the list here.
    pub fn index(&'a self, index: usize) -> KeyPath<'a> {
        KeyPath::Index(self, index)
    }
}

impl std::fmt::Display for KeyPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyPath::Root => Ok(()),
            KeyPath::Key(KeyPath::Root, key) => f.write_str(key),
            KeyPath::Key(parent, key) => write!(f, "{parent}.{key}"),
            KeyPath::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

impl SpanIndex {
    /// Indexes the first document of `text`. A text that does not parse gives a partial index
    /// (the parse error itself is reported by serde_yaml).
    pub fn build(text: &str) -> SpanIndex {
        let mut builder = Builder::default();
        // Errors are ignored on purpose: see above.
        let _ = Parser::new_from_str(text).load(&mut builder, false);
        builder.index
    }

    /// Position of the value at `path`, falling back to the nearest indexed parent.
    pub fn value_at(&self, path: &str) -> Option<Location> {
        let mut p = path;
        loop {
            if let Some(loc) = self.values.get(p) {
                return Some(*loc);
            }
            p = parent_of(p)?;
        }
    }

    /// Position of the key that ends `path` (or of its value when the key is not indexed).
    pub fn key_at(&self, path: &str) -> Option<Location> {
        self.keys.get(path).copied().or_else(|| self.value_at(path))
    }

    /// Keys written twice in one mapping, in document order.
    pub fn repeated_keys(&self) -> &[RepeatedKey] {
        &self.repeated
    }
}

/// A span index built on first use: positions are needed only when something is wrong, and
/// indexing a 10,000-host document costs as much as validating it.
pub struct LazySpans<'a> {
    text: &'a str,
    index: std::cell::OnceCell<SpanIndex>,
}

impl<'a> LazySpans<'a> {
    pub fn new(text: &'a str) -> Self {
        LazySpans {
            text,
            index: std::cell::OnceCell::new(),
        }
    }

    pub fn get(&self) -> &SpanIndex {
        self.index.get_or_init(|| SpanIndex::build(self.text))
    }
}

fn parent_of(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    // Keys may contain dots (host names), so the parent is found by trying the shorter
    // prefixes; the index lookup in `value_at` decides which one exists.
    match path.rfind(['.', '[']) {
        Some(i) => Some(&path[..i]),
        None => Some(""),
    }
}

enum Frame {
    Map {
        key: Option<String>,
        key_loc: Option<Location>,
        /// The keys met so far in this mapping, to find one written twice.
        seen: HashMap<String, Location>,
    },
    Seq {
        index: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<(Frame, String)>,
    index: SpanIndex,
    documents: usize,
}

impl Builder {
    /// Path of the node that starts now, or None when the node is a map key.
    fn current_value_path(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some((Frame::Map { key: None, .. }, _)) => None,
            Some((Frame::Map { key: Some(k), .. }, path)) => Some(join_key(path, k)),
            Some((Frame::Seq { index }, path)) => Some(join_index(path, *index)),
        }
    }

    /// Called when a value node (scalar, alias, or a closed collection) is complete.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some((Frame::Map { key, key_loc, .. }, _)) => {
                *key = None;
                *key_loc = None;
            }
            Some((Frame::Seq { index }, _)) => *index += 1,
            None => {}
        }
    }

    fn start_node(&mut self, loc: Location) -> Option<String> {
        let path = self.current_value_path()?;
        if let Some((
            Frame::Map {
                key_loc: Some(kl), ..
            },
            _,
        )) = self.stack.last()
        {
            self.index.keys.insert(path.clone(), *kl);
        }
        self.index.values.insert(path.clone(), loc);
        Some(path)
    }
}

impl<'input> SpannedEventReceiver<'input> for Builder {
    fn on_event(&mut self, ev: Event<'input>, span: Span) {
        let loc = Location {
            line: span.start.line(),
            column: span.start.col() + 1,
        };
        if self.documents > 1 {
            return;
        }
        match ev {
            Event::DocumentStart(_) => self.documents += 1,
            Event::Scalar(value, ..) => {
                if let Some((
                    Frame::Map {
                        key: key @ None,
                        key_loc,
                        seen,
                    },
                    parent,
                )) = self.stack.last_mut()
                {
                    if let Some(first) = seen.insert(value.to_string(), loc) {
                        self.index.repeated.push(RepeatedKey {
                            parent: parent.clone(),
                            key: value.to_string(),
                            first,
                            again: loc,
                        });
                    }
                    *key = Some(value.into_owned());
                    *key_loc = Some(loc);
                } else {
                    self.start_node(loc);
                    self.value_done();
                }
            }
            Event::Alias(_) => {
                self.start_node(loc);
                self.value_done();
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                // A collection used as a map key gets a placeholder path; we never report
                // errors under such keys.
                let path = self.start_node(loc).unwrap_or_else(|| "?".to_string());
                let frame = if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map {
                        key: None,
                        key_loc: None,
                        seen: HashMap::new(),
                    }
                } else {
                    Frame::Seq { index: 0 }
                };
                self.stack.push((frame, path));
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                if let Some((
                    Frame::Map {
                        key: key @ None, ..
                    },
                    _,
                )) = self.stack.last_mut()
                {
                    // The collection was a key; its value follows.
                    *key = Some("?".to_string());
                } else {
                    self.value_done();
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_render_like_joined_strings() {
        let root = KeyPath::Root;
        let up = root.key("upstreams");
        let host = up.key("a.com");
        let servers = host.key("servers");
        let item = servers.index(2);
        let expected = join_index(
            &join_key(&join_key(&join_key("", "upstreams"), "a.com"), "servers"),
            2,
        );
        assert_eq!(item.to_string(), expected);
        assert_eq!(expected, "upstreams.a.com.servers[2]");
        assert_eq!(root.to_string(), "");
        assert_eq!(root.index(0).to_string(), "[0]");
    }

    const DOC: &str = "\
provider: file
upstreams:
  app.example.com:
    paths:
      \"/api\":
        servers:
          - \"10.0.0.1:80\"
          - \"10.0.0.1\"
";

    #[test]
    fn indexes_values_and_keys_by_path() {
        let idx = SpanIndex::build(DOC);
        assert_eq!(
            idx.value_at("upstreams.app.example.com.paths./api.servers[1]"),
            Some(Location {
                line: 8,
                column: 13
            })
        );
        assert_eq!(
            idx.key_at("provider"),
            Some(Location { line: 1, column: 1 })
        );
        assert_eq!(
            idx.value_at("provider"),
            Some(Location {
                line: 1,
                column: 11
            })
        );
        assert_eq!(
            idx.key_at("upstreams.app.example.com"),
            Some(Location { line: 3, column: 3 })
        );
    }

    #[test]
    fn unknown_paths_fall_back_to_a_parent() {
        let idx = SpanIndex::build(DOC);
        assert_eq!(
            idx.value_at("upstreams.app.example.com.paths./api.headers"),
            idx.value_at("upstreams.app.example.com.paths./api")
        );
    }

    #[test]
    fn repeated_keys_are_found_with_both_places() {
        let text = "a:\n  x: 1\n  y:\n    z: 1\nb: 2\na:\n  x: 1\n  y:\n    z: 1\n    z: 2\n";
        let idx = SpanIndex::build(text);
        // `a` again at line 6, and `z` twice in the second `a`'s `y` (the keys under the
        // second `a` that the first `a` also has are not repeats: other mappings).
        assert_eq!(
            idx.repeated_keys(),
            [
                RepeatedKey {
                    parent: String::new(),
                    key: "a".into(),
                    first: Location { line: 1, column: 1 },
                    again: Location { line: 6, column: 1 },
                },
                RepeatedKey {
                    parent: "a.y".into(),
                    key: "z".into(),
                    first: Location { line: 9, column: 5 },
                    again: Location {
                        line: 10,
                        column: 5
                    },
                },
            ]
        );
        let json = "{\"u\": {\"h.com\": 1,\n \"h.com\": 2}}";
        let idx = SpanIndex::build(json);
        assert_eq!(
            idx.repeated_keys(),
            [RepeatedKey {
                parent: "u".into(),
                key: "h.com".into(),
                first: Location { line: 1, column: 8 },
                again: Location { line: 2, column: 2 },
            }]
        );
        assert!(SpanIndex::build(DOC).repeated_keys().is_empty());
    }

    #[test]
    fn broken_yaml_does_not_panic() {
        let idx = SpanIndex::build("a: [1, 2\nb: {");
        let _ = idx.value_at("a");
    }
}
