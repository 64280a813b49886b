//! A faster reader for the plain shape most YAML configs have, producing the tree serde_yaml
//! would (as a [`Node`]).
//!
//! libyaml (under serde_yaml) spends ~35 ms only reading the events of a 10,000-host
//! document, and building serde_yaml's `Value` from them through serde costs another ~15 ms;
//! saphyr's event parser plus a direct build of a [`Node`] takes ~27 ms in all. So documents
//! are read here first, and this reader declines (returns `None`) anything whose meaning it would have to
//! guess at: tags, anchors and aliases, more than one document, duplicate or non-string keys,
//! a leading byte-order mark, very deep nesting, plain scalars that might be numbers other than small decimal integers,
//! and anything saphyr refuses. Those go to serde_yaml, which stays the reference: its tree,
//! its errors and their positions. A differential property test holds the two readers to
//! that: what is read here is the tree serde_yaml gives, and nothing serde_yaml refuses is
//! read here (saphyr reads YAML 1.2, libyaml 1.1: the tests found the forms where they part,
//! an empty key, `[a]:b` and a lone `?` in flow, and a `|2` block after a byte-order mark,
//! which libyaml counts as a column; those are declined).

use saphyr_parser::{Event, Parser, ScalarStyle};
use serde_yaml::Number;

use super::tree::{Map, Node};

/// serde_yaml refuses documents nested deeper than 128 levels; leave those to it.
const MAX_DEPTH: usize = 128;

/// A collection whose end event has not come yet.
enum Open {
    Sequence(Vec<Node>),
    /// The pairs so far and, between a key and its value, the key.
    Mapping(Vec<(Node, Node)>, Option<Node>),
}

/// The document's tree, or `None` when serde_yaml should read it (see the module comment).
/// A text without a document (empty, or only comments) is `Null`, as with serde_yaml.
pub fn read(text: &str) -> Option<Node> {
    // libyaml counts a byte-order mark as a column, which shifts explicit block indentation
    // (`|2`); saphyr does not. Leave such documents to serde_yaml.
    if text.starts_with('\u{feff}') {
        return None;
    }
    let mut open: Vec<Open> = Vec::new();
    let mut root = None;
    let mut documents = 0;
    for item in Parser::new_from_str(text) {
        let (event, _span) = item.ok()?;
        let complete = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return None;
                }
                continue;
            }
            Event::Scalar(value, style, 0, None) => scalar(&value, style)?,
            Event::SequenceStart(0, None) => {
                open.push(Open::Sequence(Vec::new()));
                if open.len() > MAX_DEPTH {
                    return None;
                }
                continue;
            }
            Event::MappingStart(0, None) => {
                open.push(Open::Mapping(Vec::new(), None));
                if open.len() > MAX_DEPTH {
                    return None;
                }
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match open.pop()? {
                Open::Sequence(items) => Node::Sequence(items),
                // serde_yaml refuses duplicate keys, with a position: let it say so.
                Open::Mapping(pairs, None) => Node::Mapping(Map::new(pairs).ok()?),
                // An end between a key and its value: not something saphyr emits.
                Open::Mapping(_, Some(_)) => return None,
            },
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => continue,
            // Anchors, aliases and tags.
            Event::Alias(_)
            | Event::Scalar(..)
            | Event::SequenceStart(..)
            | Event::MappingStart(..) => return None,
        };
        match open.last_mut() {
            None => root = Some(complete),
            Some(Open::Sequence(items)) => items.push(complete),
            // Only string keys: libyaml and saphyr disagree on some others (an empty key
            // is null to saphyr and an error to libyaml; `[::1]:80` inside a flow list is a
            // one-pair mapping to saphyr), and every routing key is a string.
            Some(Open::Mapping(_, key @ None)) => match complete {
                Node::String(_) => *key = Some(complete),
                _ => return None,
            },
            Some(Open::Mapping(pairs, key @ Some(_))) => pairs.push((key.take()?, complete)),
        }
    }
    if !open.is_empty() {
        return None;
    }
    Some(root.unwrap_or(Node::Null))
}

/// An untagged scalar's value under serde_yaml's rules (YAML 1.2 core schema), or `None` for
/// plain scalars this reader does not resolve itself.
fn scalar(text: &str, style: ScalarStyle) -> Option<Node> {
    if style != ScalarStyle::Plain {
        return Some(Node::String(text.to_string()));
    }
    match text {
        // A lone `?` in a flow collection is a plain scalar to saphyr (YAML 1.2) and an
        // error to libyaml.
        "?" => return None,
        "" | "~" | "null" | "Null" | "NULL" => return Some(Node::Null),
        "true" | "True" | "TRUE" => return Some(Node::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Node::Bool(false)),
        _ => {}
    }
    if let Some(n) = small_decimal(text) {
        return Some(Node::Number(Number::from(n)));
    }
    if could_be_number(text) {
        return None;
    }
    Some(Node::String(text.to_string()))
}

/// `0` or a decimal integer without sign or leading zero that fits in a u64.
fn small_decimal(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let plain_digits = !bytes.is_empty()
        && bytes.iter().all(u8::is_ascii_digit)
        && (bytes[0] != b'0' || bytes.len() == 1);
    if plain_digits {
        text.parse().ok()
    } else {
        None
    }
}

/// Whether serde_yaml might read `text` as a number (or an infinity or NaN). Errs towards yes:
/// a yes only sends the document to serde_yaml.
fn could_be_number(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    unsigned.starts_with("0x")
        || unsigned.starts_with("0o")
        || unsigned.starts_with("0b")
        || unsigned.starts_with('.')
        // Rust's float syntax takes in every decimal integer and float form YAML has, and
        // more (`inf`, `1e5`, `+.5`): all of those go to serde_yaml.
        || text.parse::<f64>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(text: &str) -> Node {
        let value: serde_yaml::Value = serde_yaml::from_str(text)
            .unwrap_or_else(|e| panic!("serde_yaml refused {text:?}: {e}"));
        Node::from(value)
    }

    /// Documents read here: the tree must be serde_yaml's.
    #[test]
    fn reads_plain_documents_as_serde_yaml_does() {
        let docs = [
            "",
            "# only a comment\n",
            "a: 1\n",
            "upstreams:\n  example.com:\n    paths:\n      \"/\":\n        servers: [\"127.0.0.1:8000\", '10.0.0.2:80']\n        to_https: true\n        headers:\n          - \"X-A: b\"\n",
            "servers:\n  - 127.0.0.1:8000\n  - 10.0.0.1:8080\n",
            "a: ~\nb: null\nc: NULL\nd:\ne: True\nf: FALSE\ng: 0\nh: 18446744073709551615\n",
            "name: host1.bench.local\nstrategy: round_robin\nempty: ''\nquoted: \"42\"\n",
            "text: |\n  two\n  lines\nfolded: >\n  one\n  line\n",
            "flow: {a: [1, 2, {b: c}], d: e}\n",
            "yes: no\non: off\n",
            "---\na: b\n...\n",
            "{\"upstreams\": {\"a.com\": {\"paths\": {\"/\": {\"servers\": [\"127.0.0.1:1\"]}}}}}",
            "unicode: \"h\\u00e9llo\"\nemoji: 🦀\n",
            "path: /api/v1\nurl: http://x:80/y\ntime: 12:30:00\nversion: 1.2.3\n",
            "list: [a, b, c]\nnested:\n  - - x\n    - y\n  - z\n",
            "a: -foo\nb: +bar\nc: 1_000\nd: 0.0.0.0:80\ne: 1.2.3.4\nf: 5s\n",
            "crlf: yes\r\nnext: line\r\n",
            "plain: this is\n  folded over lines\nafter: x # a comment\n",
            "empty_map: {}\nempty_list: []\n\"key: with colon\": v\n",
            "a:\n- b\n- c\n",
        ];
        for doc in docs {
            assert_eq!(read(doc), Some(reference(doc)), "document {doc:?}");
        }
        // A mapping past the pair-by-pair duplicate check, with a duplicate at its end.
        let mut big = String::from("upstreams:\n");
        for i in 0..100 {
            big.push_str(&format!(
                "  h{i}.example.com:\n    paths:\n      /:\n        servers: [127.0.0.1:{}]\n",
                8000 + i
            ));
        }
        assert_eq!(read(&big), Some(reference(&big)));
        big.push_str("  h7.example.com: {}\n");
        assert!(serde_yaml::from_str::<serde_yaml::Value>(&big).is_err());
        assert_eq!(read(&big), None);
    }

    /// Documents left to serde_yaml: reading them here could differ from it.
    #[test]
    fn declines_what_it_would_have_to_guess() {
        let docs = [
            "a: &x 1\nb: *x\n",
            "a: !!str 1\n",
            "a: !custom b\n",
            "a: 1\n---\nb: 2\n",
            "a: 1\na: 2\n",
            "a: 0x1f\n",
            "a: 0o17\n",
            "a: 0b101\n",
            "a: -5\n",
            "a: +5\n",
            "a: 1.5\n",
            "a: 1e3\n",
            "a: .inf\n",
            "a: -.inf\n",
            "a: .nan\n",
            "a: inf\n",
            "a: NaN\n",
            "a: 0123\n",
            "a: 18446744073709551616\n",
            "a: [1, 2\n",
            "keys:\n  1: one\n  true: yes\n",
            ": empty key\n",
            "a: [[::1]:80]\n",
            "a: b: c\n",
        ];
        for doc in docs {
            assert_eq!(read(doc), None, "document {doc:?}");
        }
    }

    /// Scalar forms the random documents below do not build (block scalars, escapes, folding,
    /// comments, directives), each as a mapping value, a list item and a nested value.
    #[test]
    fn scalar_forms_read_as_serde_yaml_does() {
        // The value after `key:`; continuation lines are indented under the key here.
        let forms = [
            " |\n  line one\n  line two\n",
            " |-\n  no final newline\n",
            " |+\n  kept\n\n",
            " |2\n    indented by two more\n",
            " >\n  folded\n  text\n\n  new paragraph\n",
            " >-\n  a\n  b\n",
            " \"tab\\there\"\n",
            " \"hex \\x41, \\u00e9, \\U0001F600\"\n",
            " \"next line \\N, nbsp \\_, nul \\0, slash \\/\"\n",
            " \"bell \\a, esc \\e, vt \\v, ff \\f, cr \\r\"\n",
            " \"contin\\\n  ued\"\n",
            " \"folded\n  double\"\n",
            " 'it''s'\n",
            " 'multi\n  line'\n",
            " plain\n  over lines\n",
            " value # a comment\n",
            " value\t\n",
            " 'a # not a comment'\n",
            " \"\"\n",
            " ''\n",
            " -dash\n",
            " a-b_c.d\n",
            " /path/with:colon\n",
            " http://host:80/x?y=1#frag\n",
        ];
        for form in forms {
            let nested = form.replace("\n  ", "\n      ");
            let docs = [
                format!("key:{form}"),
                format!("list:\n  -{}", form.replace("\n  ", "\n    ")),
                format!("outer:\n    inner:{nested}"),
                format!("%YAML 1.1\n---\nkey:{form}"),
                format!("\u{feff}key:{form}"),
                format!("key:{}", form.replace('\n', "\r\n")),
            ];
            for doc in docs {
                if let Ok(value) = serde_yaml::from_str::<serde_yaml::Value>(&doc) {
                    if let Some(ours) = read(&doc) {
                        assert_eq!(ours, Node::from(value), "document {doc:?}");
                    }
                } else {
                    assert_eq!(read(&doc), None, "serde_yaml refuses {doc:?}");
                }
            }
        }
        // Most of them are read here, not declined.
        let read_here = forms
            .iter()
            .filter(|f| read(&format!("key:{f}")).is_some())
            .count();
        assert!(
            read_here >= forms.len() - 2,
            "{read_here} of {}",
            forms.len()
        );
    }

    #[test]
    fn deep_nesting_is_left_to_serde_yaml() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(read(&deep), None);
        let fine = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(read(&fine), Some(reference(&fine)));
    }

    /// Random documents built from scalars that sit on the edges of YAML's typing rules, in
    /// block and flow style: whatever both readers accept must give the same tree.
    mod differential {
        use super::super::read;
        use crate::config::tree::Node;
        use proptest::prelude::*;
        use std::cell::Cell;

        const SCALARS: &[&str] = &[
            "a",
            "host1.example.com",
            "127.0.0.1:8080",
            "[::1]:80",
            "/api/v1",
            "x y",
            "é",
            "0",
            "1",
            "42",
            "-1",
            "+1",
            "0x1F",
            "0o7",
            "0b1",
            "1.5",
            "1e3",
            ".5",
            "5.",
            "+.5",
            ".inf",
            "-.inf",
            ".nan",
            "inf",
            "NaN",
            "null",
            "Null",
            "~",
            "true",
            "False",
            "TRUE",
            "yes",
            "no",
            "on",
            "0123",
            "1_000",
            "12:30:00",
            "2001-12-14",
            "1.2.3",
            "0.0.0.0:80",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "a#b",
            "a: b",
            "-",
            "?",
            "&x",
            "*x",
            "!t",
            "'q'",
            "\"q\"",
            "#c",
            "%",
            "@",
            "`",
            "a,b",
            "[a]",
            "{a}",
            "",
        ];

        #[derive(Debug, Clone)]
        enum Doc {
            Scalar(usize, u8),
            List(Vec<Doc>),
            Map(Vec<(usize, Doc)>),
        }

        fn doc() -> impl Strategy<Value = Doc> {
            let leaf = (0..SCALARS.len(), 0..4u8).prop_map(|(i, style)| Doc::Scalar(i, style));
            leaf.prop_recursive(4, 40, 5, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5).prop_map(Doc::List),
                    prop::collection::vec((0..SCALARS.len(), inner), 0..5).prop_map(Doc::Map),
                ]
            })
        }

        /// A scalar as plain text, single-quoted or double-quoted (style 0-1 plain).
        fn scalar(text: &str, style: u8) -> String {
            match style {
                0 | 1 => text.to_string(),
                2 => format!("'{}'", text.replace('\'', "''")),
                _ => format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")),
            }
        }

        fn flow(d: &Doc) -> String {
            match d {
                Doc::Scalar(i, style) => scalar(SCALARS[*i], *style),
                Doc::List(items) => format!(
                    "[{}]",
                    items.iter().map(flow).collect::<Vec<_>>().join(", ")
                ),
                Doc::Map(pairs) => format!(
                    "{{{}}}",
                    pairs
                        .iter()
                        .map(|(k, v)| format!("{}: {}", scalar(SCALARS[*k], 3), flow(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }

        /// Block style, scalars (and empty collections) in flow style.
        fn block(d: &Doc, indent: usize, out: &mut String) {
            let pad = " ".repeat(indent);
            match d {
                Doc::List(items) if !items.is_empty() => {
                    for item in items {
                        out.push_str(&format!("{pad}-"));
                        match item {
                            Doc::Scalar(..) => out.push_str(&format!(" {}\n", flow(item))),
                            _ => {
                                out.push('\n');
                                block(item, indent + 2, out);
                            }
                        }
                    }
                }
                Doc::Map(pairs) if !pairs.is_empty() => {
                    for (k, v) in pairs {
                        out.push_str(&format!("{pad}{}:", scalar(SCALARS[*k], 0)));
                        match v {
                            Doc::Scalar(..) => out.push_str(&format!(" {}\n", flow(v))),
                            _ => {
                                out.push('\n');
                                block(v, indent + 2, out);
                            }
                        }
                    }
                }
                other => out.push_str(&format!("{pad}{}\n", flow(other))),
            }
        }

        /// Deterministic (a fixed seed), so that CI runs the same 3,000 documents every time.
        #[test]
        fn what_this_reader_accepts_is_serde_yamls_tree() {
            use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
            let config = ProptestConfig {
                cases: 3000,
                failure_persistence: None,
                ..ProptestConfig::default()
            };
            let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
            let mut runner = TestRunner::new_with_rng(config, rng);
            // The runner takes a `Fn`, so the tally is a cell.
            let compared = Cell::new(0);
            let result = runner.run(&(doc(), any::<bool>()), |(d, as_flow)| {
                let text = if as_flow {
                    flow(&d)
                } else {
                    let mut out = String::new();
                    block(&d, 0, &mut out);
                    out
                };
                let theirs = serde_yaml::from_str::<serde_yaml::Value>(&text);
                match (read(&text), theirs) {
                    (Some(ours), Ok(theirs)) => {
                        compared.set(compared.get() + 1);
                        prop_assert_eq!(ours, Node::from(theirs), "{}", text);
                    }
                    (Some(ours), Err(e)) => {
                        prop_assert!(
                            false,
                            "read {:?} that serde_yaml refuses ({}):\n{}",
                            ours,
                            e,
                            text
                        )
                    }
                    (None, _) => {}
                }
                Ok(())
            });
            if let Err(e) = result {
                panic!("{e}");
            }
            // The comparison must have happened often enough to mean something.
            assert!(compared.get() > 1000, "compared only {}", compared.get());
        }
    }

    #[test]
    fn the_shipped_configs_are_read_here() {
        for file in ["etc/upstreams.yaml", "etc/main.yaml"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(read(&text), Some(reference(&text)), "{file}");
        }
    }
}
