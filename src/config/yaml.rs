//! Shared YAML loading: file reading and turning serde_yaml errors into positioned issues.

use std::path::Path;

use serde_yaml::{Mapping, Value};

use super::error::{ConfigError, Issue, Location};
use super::spans::SpanIndex;
use super::tree::{Map, Node};

/// Reads a config file as UTF-8 text.
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigError::whole_file(&path.display().to_string(), format!("cannot read: {e}"))
    })
}

/// serde_yaml writes " at line L column C" into its messages; we print the position ourselves.
fn bare_message(e: &serde_yaml::Error) -> String {
    let mut text = e.to_string();
    while let Some(start) = text.find(" at line ") {
        let rest = &text[start..];
        let end = match rest.find(" column ") {
            Some(c) => {
                let digits = rest[c + 8..].bytes().take_while(u8::is_ascii_digit).count();
                start + c + 8 + digits
            }
            None => text.len(),
        };
        text.replace_range(start..end, "");
    }
    text
}

/// Parses a routing document into its tree. JSON is YAML too, and a document written as JSON
/// (generated configs with thousands of hosts often are) is read by serde_json, about five
/// times faster than libyaml reads the same text; the result is the same tree. Other documents
/// are read by the first reader that takes them: [`yaml_block`](super::yaml_block) (block
/// layout, values on one line: what generators write), [`yaml_fast`](super::yaml_fast) (the
/// rest of plain YAML), else serde_yaml. A broken document always ends at serde_yaml, whose
/// errors say what and where.
fn parse_tree(text: &str) -> Result<Node, serde_yaml::Error> {
    if text.trim_start().starts_with('{') {
        if let Ok(node) = serde_json::from_str::<Node>(text) {
            return Ok(node);
        }
    }
    if let Some(node) = super::yaml_block::read(text) {
        return Ok(node);
    }
    if let Some(node) = super::yaml_fast::read(text) {
        return Ok(node);
    }
    serde_yaml::from_str::<Value>(text).map(Node::from)
}

/// Parses `text` (the routing document) as one YAML or JSON document whose root is a
/// mapping. An empty document (nothing but blanks and comments) is refused: it is far more
/// often a save caught half-way or a truncated file than a wish to drop every route, and
/// applying it would do exactly that. `upstreams: {}` says "no hosts" on purpose.
pub fn load_tree(text: &str, file: &str) -> Result<Map, ConfigError> {
    match parse_tree(text).map_err(|e| syntax_error(&e, file, text))? {
        Node::Null => Err(ConfigError::whole_file(
            file,
            "the document is empty (a save in progress or a truncated file?); \
             write `upstreams: {}` to serve no hosts",
        )),
        Node::Mapping(m) => Ok(m),
        other => Err(not_a_mapping(other.kind(), file)),
    }
}

/// Parses `text` (main.yaml: a few keys, read once) with serde_yaml, for serde to deserialize
/// into typed settings. An empty document is an empty mapping.
pub fn load_mapping(text: &str, file: &str) -> Result<Mapping, ConfigError> {
    match serde_yaml::from_str(text).map_err(|e| syntax_error(&e, file, text))? {
        Value::Null => Ok(Mapping::new()),
        Value::Mapping(m) => Ok(m),
        other => Err(not_a_mapping(Node::from(other).kind(), file)),
    }
}

fn syntax_error(e: &serde_yaml::Error, file: &str, text: &str) -> ConfigError {
    let message = bare_message(e);
    let issue = repeated_key(&message, file, text).unwrap_or_else(|| Issue {
        file: file.to_string(),
        location: e.location().map(|l| Location {
            line: l.line(),
            column: l.column(),
        }),
        key_path: String::new(),
        message: format!("invalid YAML: {message}"),
    });
    ConfigError {
        issues: vec![issue],
    }
}

/// serde_yaml refuses a key written twice in one mapping, but places the error at the
/// mapping; the operator wants the second key, and where the first one is. Only a string key
/// named in serde_yaml's message is matched, so this never points at another repeat.
fn repeated_key(message: &str, file: &str, text: &str) -> Option<Issue> {
    const REFUSAL: &str = "duplicate entry with key ";
    let named = &message[message.find(REFUSAL)? + REFUSAL.len()..];
    let spans = SpanIndex::build(text);
    let repeat = spans
        .repeated_keys()
        .iter()
        .find(|r| named == format!("{:?}", r.key))?;
    Some(Issue {
        file: file.to_string(),
        location: Some(repeat.again),
        key_path: repeat.parent.clone(),
        message: format!(
            "{:?} is written twice in this mapping (first at line {}, column {}); keys must be unique",
            repeat.key, repeat.first.line, repeat.first.column
        ),
    })
}

fn not_a_mapping(found: &str, file: &str) -> ConfigError {
    ConfigError {
        issues: vec![Issue {
            file: file.to_string(),
            location: Some(Location { line: 1, column: 1 }),
            key_path: String::new(),
            message: format!("the document must be a mapping of keys, found {found}"),
        }],
    }
}

/// A serde error with the key path where it happened, placed with the span index.
pub fn type_error(
    e: serde_path_to_error::Error<serde_yaml::Error>,
    file: &str,
    spans: &SpanIndex,
) -> ConfigError {
    let key_path = e.path().to_string();
    let key_path = if key_path == "." {
        String::new()
    } else {
        key_path
    };
    ConfigError {
        issues: vec![Issue {
            file: file.to_string(),
            location: spans.value_at(&key_path),
            message: bare_message(e.inner()),
            key_path,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_carry_a_position() {
        for err in [
            load_mapping("a: 1\nb: [1, 2\n", "f.yaml").unwrap_err(),
            load_tree("a: 1\nb: [1, 2\n", "f.yaml").unwrap_err(),
        ] {
            let issue = &err.issues[0];
            assert_eq!(
                issue.location,
                Some(Location { line: 3, column: 1 }),
                "{err}"
            );
            assert!(
                issue.message.starts_with("invalid YAML: "),
                "{}",
                issue.message
            );
            assert!(!issue.message.contains(" at line "), "{}", issue.message);
        }
    }

    #[test]
    fn json_documents_give_the_same_tree_as_yaml() {
        let yaml = "upstreams:\n  a.com:\n    paths:\n      \"/\":\n        servers: [\"127.0.0.1:1\"]\n        port: 1.5\n        x: null\n        y: true\n";
        let json = r#"  {"upstreams": {"a.com": {"paths": {"/": {"servers": ["127.0.0.1:1"], "port": 1.5, "x": null, "y": true}}}}}"#;
        assert_eq!(
            load_tree(yaml, "f.yaml").unwrap(),
            load_tree(json, "f.json").unwrap()
        );
        assert_eq!(
            load_mapping(yaml, "f.yaml").unwrap(),
            load_mapping(json, "f.json").unwrap()
        );
        // YAML flow style is not JSON, and still a valid document.
        let flow = load_tree("{a: 1, b: [x, y]}", "f.yaml").unwrap();
        assert_eq!(flow.len(), 2);
        // Duplicate keys are refused in JSON as in YAML, at the second, naming the first.
        for (text, again) in [
            (
                r#"{"a": 1, "a": 2}"#,
                Location {
                    line: 1,
                    column: 10,
                },
            ),
            ("a: 1\na: 2\n", Location { line: 2, column: 1 }),
        ] {
            for err in [
                load_tree(text, "f").unwrap_err(),
                load_mapping(text, "f").unwrap_err(),
            ] {
                assert_eq!(err.issues[0].location, Some(again), "{err}");
                assert!(
                    err.to_string()
                        .contains("\"a\" is written twice in this mapping (first at line 1"),
                    "{err}"
                );
            }
        }
        // Nested: the path of the mapping that holds the key.
        let err = load_tree("u:\n  h.com: 1\n  i.com: 2\n  h.com: 3\n", "f.yaml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.yaml:4:3: u: \"h.com\" is written twice in this mapping (first at line 2, column 3); keys must be unique"
        );
        // A broken JSON document is reported with a position.
        let err = load_tree("{\"a\": [1,\n 2\n", "f.json").unwrap_err();
        assert!(err.issues[0].location.is_some(), "{err}");
        assert!(err.to_string().contains("invalid YAML"), "{err}");
    }

    #[test]
    fn documents_the_fast_reader_declines_read_the_same() {
        // An alias: serde_yaml reads this one.
        let tree = load_tree("a: &x [1, 2]\nb: *x\n", "f.yaml").unwrap();
        assert_eq!(tree.get("a"), tree.get("b"));
        assert_eq!(tree.get("a").map(Node::kind), Some("a list"));
    }

    #[test]
    fn root_must_be_a_mapping() {
        for err in [
            load_mapping("- a\n- b\n", "f.yaml").unwrap_err(),
            load_tree("- a\n- b\n", "f.yaml").unwrap_err(),
        ] {
            assert!(err.to_string().contains("must be a mapping"), "{err}");
        }
    }

    #[test]
    fn empty_document_is_refused_but_an_empty_mapping_is_not() {
        for text in ["", "\n  \n", "# only a comment\n", "---\n"] {
            let err = load_tree(text, "f.yaml").unwrap_err().to_string();
            assert!(
                err.contains("f.yaml") && err.contains("empty"),
                "{text:?}: {err}"
            );
        }
        assert!(load_tree("{}", "f.yaml").unwrap().is_empty());
    }
}
