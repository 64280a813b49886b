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
    // Tabs: saphyr takes them where YAML 1.2 does (`\t0`, `-\t`), libyaml refuses many.
    if memchr::memchr(b'\t', text.as_bytes()).is_some() || directive_line(text) {
        return None;
    }
    if colon_before_flow_indicator(text) {
        return None;
    }
    let mut open: Vec<Open> = Vec::new();
    let mut root = None;
    let mut documents = 0;
    for item in Parser::new_from_str(text) {
        let (event, span) = item.ok()?;
        // A plain scalar over several lines: saphyr folds in continuation lines that libyaml
        // ends the scalar at (one that starts with `&` inside a flow collection, say).
        if matches!(event, Event::Scalar(_, ScalarStyle::Plain, ..))
            && span.start.line() != span.end.line()
        {
            return None;
        }
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
            // A scalar as the whole document is never a routing document, and saphyr and
            // libyaml part on block scalars there (`|\n0`): serde_yaml reads those.
            None if matches!(complete, Node::Sequence(_) | Node::Mapping(_)) => {
                root = Some(complete)
            }
            None => return None,
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

/// Whether a line starts with `%`, which libyaml takes for a directive anywhere, even inside a
/// flow collection where saphyr reads on. A lone carriage return breaks a line too.
fn directive_line(text: &str) -> bool {
    memchr::memchr(b'%', text.as_bytes()).is_some()
        && text.split(['\n', '\r']).any(|line| line.starts_with('%'))
}

/// A `:` right before `,?[]{}`: libyaml refuses `{a:, b}` ("unexpected ':'"), saphyr reads a
/// key with no value. Quoted text may hold it harmlessly; those documents go to serde_yaml too.
fn colon_before_flow_indicator(text: &str) -> bool {
    let bytes = text.as_bytes();
    memchr::memchr_iter(b':', bytes).any(|at| {
        matches!(
            bytes.get(at + 1),
            Some(b',' | b'?' | b'[' | b']' | b'{' | b'}')
        )
    })
}

/// A plain (unquoted, untagged) scalar's value under serde_yaml's rules, or `None` for forms
/// this reader does not resolve itself. Shared with [`yaml_block`](super::yaml_block).
pub(super) fn plain_scalar(text: &str) -> Option<Node> {
    scalar(text, ScalarStyle::Plain)
}

/// An untagged scalar's value under serde_yaml's rules (YAML 1.2 core schema), or `None` for
/// plain scalars this reader does not resolve itself.
fn scalar(text: &str, style: ScalarStyle) -> Option<Node> {
    if style != ScalarStyle::Plain {
        return Some(Node::String(text.to_string()));
    }
    // Indicators that may not start a plain scalar; saphyr lets some through in flow
    // collections (`{>a: b}`), libyaml refuses them, or takes `?a` and `:a` there for an
    // explicit key and a value.
    if text.starts_with([
        ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`', '?', ':',
    ]) {
        return None;
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
