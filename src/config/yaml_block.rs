//! A line reader for block-style YAML written the way generators and most people write
//! routing documents, producing the tree serde_yaml would (as a [`Node`]).
//!
//! It reads block mappings and sequences laid out by indentation (`key: value`, `- item`,
//! `- key: value`, a list at its key's own indentation), values that fit on their line
//! (plain, 'single' and "double" quoted scalars, and flow lists and mappings such as
//! `servers: ["127.0.0.1:8000"]`), blank lines, comments and one leading `---`. That is the
//! whole of a 10,000-host document from a generator, and this reader takes it in about a
//! tenth of the instructions saphyr's event parser needs, by going over each line once with
//! no tokens or events in between.
//!
//! Anything else it declines (returns `None`) rather than guess at, for
//! [`yaml_fast`](super::yaml_fast) or serde_yaml to read: block scalars (`|`, `>`), scalars or
//! flow collections over several lines, anchors, aliases and tags, explicit keys (`?`),
//! directives, a second document, tabs, carriage returns and other control characters, a
//! byte-order mark, plain scalars that begin with an indicator (`-x`, `:x`, `?x`), keys that
//! are not strings or repeat, and anything YAML refuses. The differential tests in
//! `yaml_readers_tests` hold it to serde_yaml: what is read here is serde_yaml's tree, and
//! nothing serde_yaml refuses is read here.

use super::tree::{Map, Node};
use super::yaml_fast::plain_scalar;

/// serde_yaml refuses documents nested deeper than 128 levels; leave those to it.
const MAX_DEPTH: usize = 128;

/// YAML limits an implicit key to 1,024 characters; leave keys near that to serde_yaml
/// (counted in bytes, with quotes and escapes, which is never fewer).
const MAX_KEY: usize = 1000;

/// The document is outside this reader's subset (or not YAML at all): another reader decides.
struct Decline;

type Read<T> = Result<T, Decline>;

/// What is left of a line: its content from the first non-space, and the column it starts
/// at. After `- ` the rest of a line is read as a line of its own, at the column it starts at,
/// which is how YAML nests `- key: value` and `- - item`.
#[derive(Clone, Copy)]
struct Line<'t> {
    indent: usize,
    content: &'t str,
}

struct Reader<'t> {
    text: &'t str,
    /// Byte offset of the next line not yet looked at.
    next: usize,
    /// The line being read, or `None` past the last one.
    current: Option<Line<'t>>,
    depth: usize,
}

/// The document's tree, or `None` when another reader should read it (see the module comment).
/// A text without content (empty, or only comments) is `Null`, as with serde_yaml.
pub fn read(text: &str) -> Option<Node> {
    if !simple_characters(text) {
        return None;
    }
    let mut reader = Reader {
        text,
        next: 0,
        current: None,
        depth: 0,
    };
    reader.first_line().ok()?;
    let Some(first) = reader.current else {
        return Some(Node::Null);
    };
    let root = reader.block(first.indent).ok()?;
    // A line left over is one less indented than the root began: not YAML.
    match reader.current {
        None => Some(root),
        Some(_) => None,
    }
}

/// No tab, carriage return or other control character, and no character that libyaml treats
/// as a line break or refuses (NEL, U+2028, U+2029, a byte-order mark, non-characters).
fn simple_characters(text: &str) -> bool {
    let controls = text.bytes().any(|b| (b < 0x20 && b != b'\n') || b == 0x7f);
    if controls {
        return false;
    }
    text.is_ascii()
        || text.chars().all(|c| {
            matches!(c, '\u{20}'..='\u{7e}' | '\n' | '\u{a0}'..='\u{2027}' | '\u{202a}'..='\u{d7ff}' | '\u{e000}'..='\u{fefe}' | '\u{ff00}'..='\u{fffd}' | '\u{10000}'..)
        })
}

impl<'t> Reader<'t> {
    /// Moves to the first line with content, past one `---` that starts the document.
    fn first_line(&mut self) -> Read<()> {
        let line = self.scan();
        if let Some(Line { indent: 0, content }) = line {
            if let Some(after) = marker(content, "---") {
                if !after.is_empty() {
                    // `--- value` or `--- !tag`: leave it to the others.
                    return Err(Decline);
                }
                return self.advance();
            }
        }
        self.current = Self::checked(line)?;
        Ok(())
    }

    fn advance(&mut self) -> Read<()> {
        let line = self.scan();
        self.current = Self::checked(line)?;
        Ok(())
    }

    /// Refuses directives, and a second document or the end of one.
    fn checked(line: Option<Line<'t>>) -> Read<Option<Line<'t>>> {
        if let Some(Line { indent: 0, content }) = line {
            if content.starts_with('%')
                || marker(content, "---").is_some()
                || marker(content, "...").is_some()
            {
                return Err(Decline);
            }
        }
        Ok(line)
    }

    /// The next line with content, skipping blank and comment lines.
    fn scan(&mut self) -> Option<Line<'t>> {
        while self.next < self.text.len() {
            let rest = &self.text[self.next..];
            let end = memchr::memchr(b'\n', rest.as_bytes()).unwrap_or(rest.len());
            let line = &rest[..end];
            self.next += end + 1;
            let content = line.trim_start_matches(' ');
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let indent = line.len() - content.len();
            return Some(Line { indent, content });
        }
        None
    }

    fn enter(&mut self) -> Read<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Decline);
        }
        Ok(())
    }

    /// The block collection whose first line is the current one, at column `indent`.
    fn block(&mut self, indent: usize) -> Read<Node> {
        self.enter()?;
        let content = self.current.ok_or(Decline)?.content;
        let node = if is_entry(content) {
            self.sequence(indent)
        } else {
            self.mapping(indent)
        };
        self.depth -= 1;
        node
    }

    fn sequence(&mut self, indent: usize) -> Read<Node> {
        let mut items = Vec::new();
        while let Some(line) = self.current {
            if line.indent < indent || (line.indent == indent && !is_entry(line.content)) {
                // The list ended; at its own column that is the next key of the mapping it
                // is the value of (`key:\n- a\nnext: b`), which that mapping checks.
                break;
            }
            if line.indent > indent {
                return Err(Decline);
            }
            let after_dash = &line.content[1..];
            let rest = after_dash.trim_start_matches(' ');
            if rest.is_empty() || rest.starts_with('#') {
                // `-` alone: the item is the block below it, or nothing.
                self.advance()?;
                items.push(self.block_below(indent)?);
            } else {
                let column = indent + 1 + (after_dash.len() - rest.len());
                self.current = Some(Line {
                    indent: column,
                    content: rest,
                });
                items.push(self.after_dash(indent, column)?);
            }
        }
        Ok(Node::Sequence(items))
    }

    /// What follows `- ` on the current line: a list (`- - a`), a mapping (`- key: value`)
    /// that goes on at `column` on the lines below, or a value.
    fn after_dash(&mut self, dash: usize, column: usize) -> Read<Node> {
        let content = self.current.ok_or(Decline)?.content;
        if is_entry(content) || split_key(content)?.is_some() {
            self.block(column)
        } else {
            self.value_line(dash)
        }
    }

    fn mapping(&mut self, indent: usize) -> Read<Node> {
        let mut pairs = Vec::new();
        while let Some(line) = self.current {
            if line.indent < indent {
                break;
            }
            if line.indent > indent {
                return Err(Decline);
            }
            let (key, after_colon) = split_key(line.content)?.ok_or(Decline)?;
            let rest = after_colon.trim_start_matches(' ');
            let value = if rest.is_empty() || rest.starts_with('#') {
                self.advance()?;
                match self.current {
                    // A list may sit at its key's own column.
                    Some(next) if next.indent == indent && is_entry(next.content) => {
                        self.block(indent)?
                    }
                    _ => self.block_below(indent)?,
                }
            } else {
                // `a: - b` and `a: b: c` are not YAML.
                if is_entry(rest) || split_key(rest)?.is_some() {
                    return Err(Decline);
                }
                self.current = Some(Line {
                    indent: line.indent + line.content.len() - rest.len(),
                    content: rest,
                });
                self.value_line(indent)?
            };
            pairs.push((Node::String(key), value));
        }
        Map::new(pairs).map(Node::Mapping).map_err(|_| Decline)
    }

    /// After a key or a dash with nothing behind it: the block on the lines below, when they
    /// are indented further than `parent`, else nothing (null).
    fn block_below(&mut self, parent: usize) -> Read<Node> {
        match self.current {
            Some(next) if next.indent > parent => self.block(next.indent),
            _ => Ok(Node::Null),
        }
    }

    /// A value that must end on the current line. The next line may not be indented past
    /// `parent` (the key's or the dash's column): that would continue a plain scalar.
    fn value_line(&mut self, parent: usize) -> Read<Node> {
        let content = self.current.ok_or(Decline)?.content;
        let (node, after) = value(content, self.depth)?;
        if !only_comment(after) {
            return Err(Decline);
        }
        self.advance()?;
        match self.current {
            Some(next) if next.indent > parent => Err(Decline),
            _ => Ok(node),
        }
    }
}

/// `content` starts with `marker` (`---`, `...`) standing alone: what follows it, with a
/// comment counted as nothing.
fn marker<'a>(content: &'a str, marker: &str) -> Option<&'a str> {
    let after = content.strip_prefix(marker)?;
    if !after.is_empty() && !after.starts_with(' ') {
        return None;
    }
    let rest = after.trim_start_matches(' ');
    Some(if rest.starts_with('#') { "" } else { rest })
}

/// A block sequence entry: `-` followed by a space or the end of the line.
fn is_entry(content: &str) -> bool {
    let bytes = content.as_bytes();
    bytes.first() == Some(&b'-') && matches!(bytes.get(1), None | Some(b' '))
}

/// Blanks to the end of the line, or blanks and a comment.
fn only_comment(after: &str) -> bool {
    let rest = after.trim_start_matches(' ');
    rest.is_empty() || (rest.len() < after.len() && rest.starts_with('#'))
}

/// The first character of a plain scalar this reader reads: not an indicator. YAML lets
/// `-`, `?` and `:` start one when a non-blank follows; those are left to the others.
fn plain_start(byte: u8) -> bool {
    !matches!(
        byte,
        b'-' | b'?'
            | b':'
            | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'#'
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'\''
            | b'"'
            | b'%'
            | b'@'
            | b'`'
    )
}

/// Where a plain scalar in block context stops.
enum Stop {
    /// At a `:` followed by a blank or the line's end: the scalar is a key.
    Colon,
    /// At ` #`, or at the end of the line.
    Value,
}

fn block_plain_end(content: &str) -> (usize, Stop) {
    let bytes = content.as_bytes();
    let mut from = 0;
    while let Some(found) = memchr::memchr2(b':', b'#', &bytes[from..]) {
        let at = from + found;
        if bytes[at] == b':' {
            if matches!(bytes.get(at + 1), None | Some(b' ')) {
                return (at, Stop::Colon);
            }
        } else if at > 0 && bytes[at - 1] == b' ' {
            // The comment takes the blank before it.
            return (at - 1, Stop::Value);
        }
        from = at + 1;
    }
    (bytes.len(), Stop::Value)
}

/// A block mapping key at the start of `content`, and what follows its `:`; `None` when the
/// line is not a `key:` line (a value, or a list entry).
fn split_key(content: &str) -> Read<Option<(String, &str)>> {
    let (key, after) = match content.as_bytes().first() {
        Some(b'"' | b'\'') => {
            let (key, after) = quoted(content)?;
            match after.strip_prefix(':') {
                Some(rest) if rest.is_empty() || rest.starts_with(' ') => (key, rest),
                _ => return Ok(None),
            }
        }
        Some(&first) if plain_start(first) => match block_plain_end(content) {
            (end, Stop::Colon) => {
                let text = content[..end].trim_end_matches(' ');
                (string_key(text)?, &content[end + 1..])
            }
            (_, Stop::Value) => return Ok(None),
        },
        // A flow collection, or a scalar starting with an indicator: a value, or nothing
        // this reader reads.
        _ => return Ok(None),
    };
    if content.len() - after.len() > MAX_KEY {
        return Err(Decline);
    }
    Ok(Some((key, after)))
}

/// A plain key, which must resolve to a string (`1:`, `true:` and `null:` are left to the
/// others: no routing key is one).
fn string_key(text: &str) -> Read<String> {
    match plain_scalar(text) {
        Some(Node::String(key)) => Ok(key),
        _ => Err(Decline),
    }
}

/// The value at the start of `content` (which is not blank), and what is left of the line.
fn value(content: &str, depth: usize) -> Read<(Node, &str)> {
    match content.as_bytes().first() {
        Some(b'"' | b'\'') => quoted(content).map(|(s, rest)| (Node::String(s), rest)),
        Some(b'[' | b'{') => flow(content, depth),
        Some(&first) if plain_start(first) => match block_plain_end(content) {
            (end, Stop::Value) => plain_until(content, end),
            (_, Stop::Colon) => Err(Decline),
        },
        _ => Err(Decline),
    }
}

/// The plain scalar that ends at byte `end` of `content` (blanks before it dropped), resolved,
/// and what follows it.
fn plain_until(content: &str, end: usize) -> Read<(Node, &str)> {
    let text = content[..end].trim_end_matches(' ');
    Ok((plain_scalar(text).ok_or(Decline)?, &content[end..]))
}

/// A quoted scalar that closes on this line, and what follows the closing quote.
fn quoted(content: &str) -> Read<(String, &str)> {
    match content.strip_prefix('\'') {
        Some(body) => single_quoted(body),
        None => double_quoted(content.strip_prefix('"').ok_or(Decline)?),
    }
}

fn single_quoted(body: &str) -> Read<(String, &str)> {
    let mut text = String::new();
    let mut rest = body;
    loop {
        let at = memchr::memchr(b'\'', rest.as_bytes()).ok_or(Decline)?;
        text.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        match rest.strip_prefix('\'') {
            // `''` is one quote.
            Some(after) => {
                text.push('\'');
                rest = after;
            }
            None => return Ok((text, rest)),
        }
    }
}

fn double_quoted(body: &str) -> Read<(String, &str)> {
    let mut text = String::new();
    let mut rest = body;
    loop {
        let at = memchr::memchr2(b'"', b'\\', rest.as_bytes()).ok_or(Decline)?;
        text.push_str(&rest[..at]);
        if rest.as_bytes()[at] == b'"' {
            return Ok((text, &rest[at + 1..]));
        }
        // Every escape this reader knows is one ASCII letter, so the slice after it is on a
        // character boundary.
        let escape = rest
            .as_bytes()
            .get(at + 1)
            .copied()
            .filter(u8::is_ascii)
            .ok_or(Decline)?;
        rest = &rest[at + 2..];
        let c = match escape {
            b'0' => '\0',
            b'a' => '\u{7}',
            b'b' => '\u{8}',
            b't' => '\t',
            b'n' => '\n',
            b'v' => '\u{b}',
            b'f' => '\u{c}',
            b'r' => '\r',
            b'e' => '\u{1b}',
            b' ' => ' ',
            b'"' => '"',
            b'/' => '/',
            b'\\' => '\\',
            b'N' => '\u{85}',
            b'_' => '\u{a0}',
            b'L' => '\u{2028}',
            b'P' => '\u{2029}',
            b'x' | b'u' | b'U' => {
                let digits = match escape {
                    b'x' => 2,
                    b'u' => 4,
                    _ => 8,
                };
                let hex = rest.get(..digits).ok_or(Decline)?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Decline);
                }
                rest = &rest[digits..];
                let code = u32::from_str_radix(hex, 16).map_err(|_| Decline)?;
                char::from_u32(code).ok_or(Decline)?
            }
            // Anything else, and an escaped line break (a scalar over lines).
            _ => return Err(Decline),
        };
        text.push(c);
    }
}

/// A flow list or mapping that closes on this line, and what follows it.
fn flow(content: &str, depth: usize) -> Read<(Node, &str)> {
    let depth = depth + 1;
    if depth > MAX_DEPTH {
        return Err(Decline);
    }
    let (close, mut rest) = match content.as_bytes().first() {
        Some(b'[') => (b']', &content[1..]),
        Some(b'{') => (b'}', &content[1..]),
        _ => return Err(Decline),
    };
    let mut items = Vec::new();
    let mut pairs = Vec::new();
    rest = rest.trim_start_matches(' ');
    if let Some(after) = rest.strip_prefix(close as char) {
        rest = after;
    } else {
        loop {
            if close == b']' {
                let (item, after) = flow_item(rest, depth)?;
                items.push(item);
                rest = after;
            } else {
                let (key, after) = flow_key(rest)?;
                let (item, after) = flow_item(after.trim_start_matches(' '), depth)?;
                pairs.push((Node::String(key), item));
                rest = after;
            }
            rest = rest.trim_start_matches(' ');
            match rest.as_bytes().first() {
                Some(b',') => {
                    rest = rest[1..].trim_start_matches(' ');
                    // A trailing comma is left to the others.
                    if rest.as_bytes().first() == Some(&close) {
                        return Err(Decline);
                    }
                }
                Some(&b) if b == close => {
                    rest = &rest[1..];
                    break;
                }
                _ => return Err(Decline),
            }
        }
    }
    let node = if close == b']' {
        Node::Sequence(items)
    } else {
        Node::Mapping(Map::new(pairs).map_err(|_| Decline)?)
    };
    Ok((node, rest))
}

/// A key inside a flow mapping, up to and past its `: `.
fn flow_key(content: &str) -> Read<(String, &str)> {
    let (key, after) = match content.as_bytes().first() {
        Some(b'"' | b'\'') => quoted(content)?,
        Some(&first) if plain_start(first) => {
            let (end, stop) = flow_plain_end(content);
            if !matches!(stop, FlowStop::Colon) {
                return Err(Decline);
            }
            let text = content[..end].trim_end_matches(' ');
            (string_key(text)?, &content[end..])
        }
        _ => return Err(Decline),
    };
    if content.len() - after.len() > MAX_KEY {
        return Err(Decline);
    }
    match after.strip_prefix(": ") {
        Some(rest) => Ok((key, rest)),
        None => Err(Decline),
    }
}

/// An item of a flow collection: a scalar or a nested flow collection.
fn flow_item(content: &str, depth: usize) -> Read<(Node, &str)> {
    match content.as_bytes().first() {
        Some(b'"' | b'\'') => quoted(content).map(|(s, rest)| (Node::String(s), rest)),
        Some(b'[' | b'{') => flow(content, depth),
        Some(&first) if plain_start(first) => match flow_plain_end(content) {
            (end, FlowStop::End) => plain_until(content, end),
            _ => Err(Decline),
        },
        _ => Err(Decline),
    }
}

enum FlowStop {
    /// At `,`, `]` or `}`: the scalar ends.
    End,
    /// At a `:` followed by a blank: the scalar is a key.
    Colon,
    /// At something this reader leaves alone: `[` or `{` inside a scalar, a comment, or the
    /// line's end (a collection over several lines).
    Decline,
}

fn flow_plain_end(content: &str) -> (usize, FlowStop) {
    let bytes = content.as_bytes();
    for (at, &b) in bytes.iter().enumerate() {
        match b {
            b',' | b']' | b'}' => return (at, FlowStop::End),
            b'[' | b'{' => return (at, FlowStop::Decline),
            b':' => match bytes.get(at + 1) {
                None | Some(b' ') => return (at, FlowStop::Colon),
                // libyaml refuses `a:,` and the like in a flow collection.
                Some(b',' | b'?' | b'[' | b']' | b'{' | b'}') => return (at, FlowStop::Decline),
                _ => {}
            },
            b'#' if at > 0 && bytes[at - 1] == b' ' => return (at, FlowStop::Decline),
            _ => {}
        }
    }
    (bytes.len(), FlowStop::Decline)
}
