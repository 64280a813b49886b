//! The YAML readers that stand in front of serde_yaml ([`yaml_block`] and [`yaml_fast`]) held
//! to it: whatever one of them reads must be serde_yaml's tree, and nothing serde_yaml refuses
//! may be read. serde_yaml stays the reference for meaning, errors and their positions.

use super::tree::Node;
use super::{yaml_block, yaml_fast};

type Reader = fn(&str) -> Option<Node>;

const READERS: [(&str, Reader); 2] = [
    ("yaml_block", yaml_block::read),
    ("yaml_fast", yaml_fast::read),
];

/// A property-test runner with a fixed seed and no failure file, so that CI runs the same
/// cases every time.
fn fixed_seed_runner(cases: u32) -> proptest::test_runner::TestRunner {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

fn reference(text: &str) -> Node {
    let value: serde_yaml::Value =
        serde_yaml::from_str(text).unwrap_or_else(|e| panic!("serde_yaml refused {text:?}: {e}"));
    Node::from(value)
}

/// Each reader gives serde_yaml's tree or declines; saphyr's reader declines none of these,
/// and the block reader none of the block-shaped ones.
#[test]
fn plain_documents_read_as_serde_yaml_does() {
    // Documents the block reader declines; saphyr's reader reads them.
    let others = [
        "text: |\n  two\n  lines\nfolded: >\n  one\n  line\n",
        "---\na: b\n...\n",
        "{\"upstreams\": {\"a.com\": {\"paths\": {\"/\": {\"servers\": [\"127.0.0.1:1\"]}}}}}",
        "a: -foo\nb: +bar\nc: 1_000\nd: 0.0.0.0:80\ne: 1.2.3.4\nf: 5s\n",
        "crlf: yes\r\nnext: line\r\n",
    ];
    // Documents in block layout: both readers read them.
    let block_shaped = [
        "",
        "a:\n- b\n- c\n",
        "# only a comment\n",
        "a: 1\n",
        "upstreams:\n  example.com:\n    paths:\n      \"/\":\n        servers: [\"127.0.0.1:8000\", '10.0.0.2:80']\n        to_https: true\n        headers:\n          - \"X-A: b\"\n",
        "servers:\n  - 127.0.0.1:8000\n  - 10.0.0.1:8080\n",
        "a: ~\nb: null\nc: NULL\nd:\ne: True\nf: FALSE\ng: 0\nh: 18446744073709551615\n",
        "name: host1.bench.local\nstrategy: round_robin\nempty: ''\nquoted: \"42\"\n",
        "flow: {a: [1, 2, {b: c}], d: e}\n",
        "yes: no\non: off\n",
        "---\na: b\n",
        "--- # the routing\na: b\n",
        "unicode: \"h\\u00e9llo\"\nemoji: 🦀\n",
        "path: /api/v1\nurl: http://x:80/y\ntime: 12:30:00\nversion: 1.2.3\n",
        "list: [a, b, c]\nnested:\n  - - x\n    - y\n  - z\n",
        "a: +bar\nc: 1_000\nd: 0.0.0.0:80\ne: 1.2.3.4\nf: 5s\n",
        "after: x # a comment\nkey : spaced\n\"k\": 'it''s'\n",
        "empty_map: {}\nempty_list: []\n\"key: with colon\": v\n",
        "a:\n- b\n- c\nd: e\n",
        "  indented: root\n  second: key\n",
        "list:\n- name: a\n  port: 1\n-   name: b\n    port: 2\n- - x\n  - y\n-\n- last\n",
        "a:\n  - b:\n    - c\n    d:\n  - e\n",
        "a:    # comment after the key\n  # a comment line\n\n  b: c   \n",
        "servers: [127.0.0.1:8000, \"[::1]:80\", a b , {x: y}]\n",
    ];
    for doc in others.iter().chain(&block_shaped) {
        let expected = reference(doc);
        for (name, read) in READERS {
            if let Some(tree) = read(doc) {
                assert_eq!(tree, expected, "{name} on {doc:?}");
            }
        }
        assert_eq!(
            yaml_fast::read(doc),
            Some(expected),
            "yaml_fast declined {doc:?}"
        );
    }
    for doc in block_shaped {
        assert_eq!(
            yaml_block::read(doc),
            Some(reference(doc)),
            "yaml_block on {doc:?}"
        );
    }
    // A mapping past the pair-by-pair duplicate check, with a duplicate at its end.
    let mut big = String::from("upstreams:\n");
    for i in 0..100 {
        big.push_str(&format!(
            "  h{i}.example.com:\n    paths:\n      /:\n        servers: [127.0.0.1:{}]\n",
            8000 + i
        ));
    }
    for (name, read) in READERS {
        assert_eq!(read(&big), Some(reference(&big)), "{name}");
    }
    big.push_str("  h7.example.com: {}\n");
    assert!(serde_yaml::from_str::<serde_yaml::Value>(&big).is_err());
    for (name, read) in READERS {
        assert_eq!(read(&big), None, "{name}");
    }
}

/// Documents left to serde_yaml by every reader: reading them could differ from it.
#[test]
fn both_decline_what_they_would_have_to_guess() {
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
        // Plain scalars over lines: saphyr and libyaml part on where some end.
        "plain: this is\n  folded over lines\n",
        // Where saphyr read what libyaml refuses (found by the broken-text test below).
        "\t0",
        "-\t",
        "|\n0",
        "a: {t,>x: y}\n",
        "a: {t,?x: y}\n",
        "a: {b:, c: d}\n",
        "a: {b: c:?d}\n",
        "a: {b\n&c: d}\n",
        "a: {b\n%c: d}\n",
    ];
    for doc in docs {
        for (name, read) in READERS {
            assert_eq!(read(doc), None, "{name} on {doc:?}");
        }
    }
}

/// Forms the block reader leaves to the others, though YAML reads them fine.
#[test]
fn the_block_reader_declines_forms_outside_its_subset() {
    let docs = [
        "text: |\n  two\n  lines\n",
        "folded: >\n  one\n  line\n",
        "plain: this is\n  folded over lines\n",
        "flow: [a,\n  b]\n",
        "'multi\n  line': x\n",
        "crlf: yes\r\nnext: line\r\n",
        "tab:\tvalue\n",
        "\u{feff}a: b\n",
        "---\na: b\n...\n",
        "%YAML 1.1\n---\na: b\n",
        "--- a\n",
        "a: -foo\n",
        "? a\n: b\n",
        "a: [b, ]\n",
        "a: {b}\n",
        "-\n  scalar below a dash\n",
        // A backslash before a character of several bytes (found by tests/it/config_fuzz.rs).
        "a: \"\\é\"\n",
        "a: 1\n",
    ];
    for doc in &docs[..docs.len() - 1] {
        assert_eq!(yaml_block::read(doc), None, "{doc:?}");
    }
    // The last one is read: the list above is not declined wholesale.
    assert!(yaml_block::read(docs[docs.len() - 1]).is_some());
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
            let theirs = serde_yaml::from_str::<serde_yaml::Value>(&doc);
            for (name, read) in READERS {
                match (&theirs, read(&doc)) {
                    (Ok(value), Some(ours)) => {
                        assert_eq!(ours, Node::from(value.clone()), "{name} on {doc:?}")
                    }
                    (Err(_), Some(ours)) => {
                        panic!("{name} read {ours:?} from {doc:?}, which serde_yaml refuses")
                    }
                    (_, None) => {}
                }
            }
        }
    }
    // Most of them are read by each reader, not declined.
    for (name, read) in READERS {
        let read_here = forms
            .iter()
            .filter(|f| read(&format!("key:{f}")).is_some())
            .count();
        let floor = if name == "yaml_block" {
            forms.len() - 12
        } else {
            forms.len() - 2
        };
        assert!(read_here >= floor, "{name}: {read_here} of {}", forms.len());
    }
}

#[test]
fn deep_nesting_is_left_to_serde_yaml() {
    let deep_flow = format!("a: {}{}", "[".repeat(200), "]".repeat(200));
    let fine_flow = format!("a: {}{}", "[".repeat(100), "]".repeat(100));
    let mut deep_block = String::new();
    for level in 0..200 {
        deep_block.push_str(&format!("{}k:\n", " ".repeat(level)));
    }
    for (name, read) in READERS {
        assert_eq!(read(&deep_flow), None, "{name}");
        assert_eq!(read(&deep_block), None, "{name}");
        assert_eq!(read(&fine_flow), Some(reference(&fine_flow)), "{name}");
    }
}

#[test]
fn the_shipped_configs_are_read_by_both() {
    for file in ["etc/upstreams.yaml", "etc/main.yaml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        for (name, read) in READERS {
            assert_eq!(read(&text), Some(reference(&text)), "{name} on {file}");
        }
    }
}

/// The shape benches/lib.sh generates (and config generators write): the block reader must
/// take it, or a 10,000-host push costs ten times the instructions.
#[test]
fn a_generated_many_host_document_is_read_by_the_block_reader() {
    let mut doc = String::from("upstreams:\n  bench.local:\n    paths:\n      \"/\":\n        servers: [\"127.0.0.1:9101\", \"127.0.0.1:9102\", \"127.0.0.1:9103\"]\n        headers: [\"X-Proxy-From:Aralez\"]\n");
    for i in 0..200 {
        doc.push_str(&format!("  host{i}.bench.local:\n    paths:\n      \"/\":\n        servers: [\"127.0.0.1:9101\", \"127.0.0.1:9102\"]\n"));
    }
    assert_eq!(yaml_block::read(&doc), Some(reference(&doc)));
}

/// Random documents built from scalars that sit on the edges of YAML's typing rules, in
/// block and flow style and in several block layouts: whatever a reader and serde_yaml both
/// accept must give the same tree, and a reader may not accept what serde_yaml refuses.
mod differential {
    use super::{Node, READERS};
    use proptest::prelude::*;
    use std::cell::RefCell;

    /// The first [`TAME`] are scalars every reader reads plain, and the first [`STRINGS`] of
    /// those are strings (keys must be): the layouts get tried with them. The rest sit on
    /// the edges of YAML's typing and syntax.
    const SCALARS: &[&str] = &[
        "a",
        "host1.example.com",
        "127.0.0.1:8080",
        "/api/v1",
        "x y",
        "é",
        "yes",
        "no",
        "on",
        "12:30:00",
        "2001-12-14",
        "1.2.3",
        "0.0.0.0:80",
        "a#b",
        "0",
        "1",
        "42",
        "null",
        "Null",
        "~",
        "true",
        "False",
        "TRUE",
        "a,b",
        "[a]",
        "{a}",
        "[::1]:80",
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
        "0123",
        "1_000",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
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
        "",
    ];
    const TAME: usize = 26;
    const STRINGS: usize = 14;

    #[derive(Debug, Clone)]
    enum Doc {
        Scalar(usize, u8),
        List(Vec<Doc>),
        Map(Vec<(usize, Doc)>),
    }

    fn key() -> impl Strategy<Value = usize> {
        prop_oneof![1 => 0..SCALARS.len(), 3 => 0..STRINGS]
    }

    fn doc() -> impl Strategy<Value = Doc> {
        let index = prop_oneof![1 => 0..SCALARS.len(), 3 => 0..TAME];
        let leaf = (index, 0..4u8).prop_map(|(i, style)| Doc::Scalar(i, style));
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Doc::List),
                prop::collection::vec((key(), inner), 0..5).prop_map(Doc::Map),
            ]
        })
    }

    /// How a block document is laid out.
    #[derive(Debug, Clone)]
    struct Layout {
        /// Spaces per level.
        step: usize,
        /// `- key: value` and `- - item` rather than the item on the lines below the dash.
        compact: bool,
        /// A list under a key at the key's own column.
        list_at_key: bool,
        /// Keys double-quoted rather than plain.
        quoted_keys: bool,
        /// Comment lines, blank lines and comments after values.
        comments: bool,
    }

    fn layout() -> impl Strategy<Value = Layout> {
        (
            1..=4usize,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(step, compact, list_at_key, quoted_keys, comments)| Layout {
                    step,
                    compact,
                    list_at_key,
                    quoted_keys,
                    comments,
                },
            )
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

    fn is_block(d: &Doc) -> bool {
        match d {
            Doc::List(items) => !items.is_empty(),
            Doc::Map(pairs) => !pairs.is_empty(),
            Doc::Scalar(..) => false,
        }
    }

    /// Block style, scalars (and empty collections) in flow style.
    fn block(d: &Doc, indent: usize, layout: &Layout, out: &mut String) {
        let pad = " ".repeat(indent);
        let note = if layout.comments { " # note" } else { "" };
        if layout.comments {
            out.push_str(&format!("\n{pad}# about what follows\n"));
        }
        match d {
            Doc::List(items) if !items.is_empty() => {
                for item in items {
                    out.push_str(&format!("{pad}-"));
                    if !is_block(item) {
                        out.push_str(&format!(" {}{note}\n", flow(item)));
                    } else if layout.compact {
                        // The item's first line goes after the dash, at the column below it.
                        let mut inner = String::new();
                        let plain = Layout {
                            comments: false,
                            ..layout.clone()
                        };
                        block(item, indent + 2, &plain, &mut inner);
                        out.push(' ');
                        out.push_str(&inner[indent + 2..]);
                    } else {
                        out.push('\n');
                        block(item, indent + layout.step, layout, out);
                    }
                }
            }
            Doc::Map(pairs) if !pairs.is_empty() => {
                for (k, v) in pairs {
                    let key_style = if layout.quoted_keys { 3 } else { 0 };
                    out.push_str(&format!("{pad}{}:", scalar(SCALARS[*k], key_style)));
                    if !is_block(v) {
                        out.push_str(&format!(" {}{note}\n", flow(v)));
                    } else {
                        out.push_str(&format!("{note}\n"));
                        let at_key = layout.list_at_key && matches!(v, Doc::List(_));
                        let below = if at_key { indent } else { indent + layout.step };
                        block(v, below, layout, out);
                    }
                }
            }
            other => out.push_str(&format!("{pad}{}\n", flow(other))),
        }
    }

    /// Deterministic (a fixed seed), so that CI runs the same 4,000 documents every time. A quarter are
    /// flow documents, which the block reader declines at their root.
    #[test]
    fn what_a_reader_accepts_is_serde_yamls_tree() {
        let mut runner = super::fixed_seed_runner(4000);
        // The runner takes a `Fn`, so the tallies are in a cell.
        let compared = RefCell::new([0usize; READERS.len()]);
        let result = runner.run(
            &(doc(), prop::bool::weighted(0.25), layout()),
            |(d, as_flow, layout)| {
                let text = if as_flow {
                    flow(&d)
                } else {
                    let mut out = String::new();
                    block(&d, 0, &layout, &mut out);
                    out
                };
                let theirs = serde_yaml::from_str::<serde_yaml::Value>(&text);
                for (index, (name, read)) in READERS.iter().enumerate() {
                    match (read(&text), &theirs) {
                        (Some(ours), Ok(theirs)) => {
                            compared.borrow_mut()[index] += 1;
                            prop_assert_eq!(
                                ours,
                                Node::from(theirs.clone()),
                                "{}:\n{}",
                                name,
                                text
                            );
                        }
                        (Some(ours), Err(e)) => prop_assert!(
                            false,
                            "{} read {:?} that serde_yaml refuses ({}):\n{}",
                            name,
                            ours,
                            e,
                            text
                        ),
                        (None, _) => {}
                    }
                }
                Ok(())
            },
        );
        if let Err(e) = result {
            panic!("{e}");
        }
        // The comparison must have happened often enough to mean something.
        for (index, (name, _)) in READERS.iter().enumerate() {
            let count = compared.borrow()[index];
            assert!(count > 1000, "{name} compared only {count}");
        }
    }
}

/// Text from YAML's punctuation and mutations of a routing document: no reader panics, and
/// what a reader takes, serde_yaml takes and reads the same (a fixed seed, as above).
#[test]
fn broken_text_never_panics_a_reader_or_reads_differently() {
    use proptest::prelude::*;
    const GOOD: &str = "upstreams:\n  a.example.com:\n    paths:\n      \"/\":\n        servers: [\"127.0.0.1:8000\", '[::1]:81']\n        headers:\n          - \"X-A: 1\"\n        authorization: {type: apikey, creds: k}\n      /api:\n        - x # c\n";
    let punctuation = "[ a-z0-9:#'\"\\[\\]{},\\\\\n!&*|>?%@`~é🟰\t\r-]{0,120}";
    let mutated = (0..GOOD.len(), 0..GOOD.len(), punctuation).prop_map(|(a, b, insert)| {
        let (lo, hi) = (a.min(b), a.max(b));
        let mut text = GOOD.as_bytes().to_vec();
        text.splice(lo..hi, insert.bytes().take(8));
        String::from_utf8_lossy(&text).into_owned()
    });
    let mut runner = fixed_seed_runner(3000);
    let result = runner.run(&prop_oneof![punctuation, mutated], |text| {
        let theirs = serde_yaml::from_str::<serde_yaml::Value>(&text);
        for (name, read) in READERS {
            if let Some(ours) = read(&text) {
                match &theirs {
                    Ok(value) => {
                        prop_assert_eq!(ours, Node::from(value.clone()), "{}:\n{}", name, text)
                    }
                    Err(e) => prop_assert!(
                        false,
                        "{} read {:?} that serde_yaml refuses ({}):\n{}",
                        name,
                        ours,
                        e,
                        text
                    ),
                }
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
