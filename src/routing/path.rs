//! The path used for routing, as a backend would resolve it: every `%XX` decoded, `;`
//! parameters dropped from each segment, `.` and `..` segments resolved, repeated slashes
//! collapsed, so that no spelling of a path moves a request from a route with stricter auth
//! into a laxer one. nginx matches locations on the decoded path the same way; Tomcat and
//! Spring also drop `;...` from segments, so `/admin;x=1` and `/public/..;/admin` are
//! `/admin` here as they are there. The request itself is forwarded with the path exactly as
//! received.

use std::borrow::Cow;

/// Why a path is refused (400) rather than routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `%` not followed by two hex digits: no backend reads it the same as another.
    #[error("a % in the path is not followed by two hex digits")]
    BadEscape,
    /// A control byte (`%00`, `%0a`, ...): a NUL ends the path in C backends, CR and LF
    /// split log lines and heads.
    #[error("the path encodes a control character")]
    Control,
}

/// Whether `path` may not be normal: it holds `//`, `/.`, `%`, `;` or a backslash. One pass,
/// as most paths are normal.
fn suspicious(path: &[u8]) -> bool {
    let mut after_slash = false;
    path.iter().any(|&b| {
        let odd = b == b'%'
            || b == b'\\'
            || b == b';'
            || b < 0x20
            || b == 0x7f
            || (after_slash && (b == b'/' || b == b'.'));
        after_slash = b == b'/';
        odd
    })
}

/// The path to route on (see the module's comment); borrowed when already normal.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if path.starts_with('/') && !suspicious(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode(path.as_bytes())?;
    let mut out: Vec<&[u8]> = Vec::new();
    let mut last = &b""[..];
    for segment in decoded.split(|&b| b == b'/' || b == b'\\') {
        // `name;params` is `name` (RFC 3986 §3.3 leaves parameters to the server).
        let segment = match memchr::memchr(b';', segment) {
            Some(at) => &segment[..at],
            None => segment,
        };
        last = segment;
        match segment {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    // A path that ends in `/`, `/.` or `/..` names a folder.
    let trailing = matches!(last, b"" | b"." | b"..");
    let mut normal = Vec::with_capacity(decoded.len() + 1);
    for s in &out {
        normal.push(b'/');
        normal.extend_from_slice(s);
    }
    if normal.is_empty() || (trailing && !out.is_empty()) {
        normal.push(b'/');
    }
    // Bytes that are not UTF-8 match no configured prefix (which is text) past them.
    Ok(Cow::Owned(match String::from_utf8(normal) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }))
}

/// `path` with every `%XX` decoded (once), refusing bad escapes and control bytes.
fn decode(path: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let mut b = path[i];
        if b == b'%' {
            let hex = |at: usize| path.get(at).and_then(|&h| (h as char).to_digit(16));
            let (Some(high), Some(low)) = (hex(i + 1), hex(i + 2)) else {
                return Err(PathError::BadEscape);
            };
            b = (high * 16 + low) as u8;
            i += 2;
        }
        if b < 0x20 || b == 0x7f {
            return Err(PathError::Control);
        }
        out.push(b);
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(path: &str) -> String {
        normalize(path).unwrap().into_owned()
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for path in ["/api/v1/users", "/", "/a.b/c.txt", "/x-y_z~"] {
            assert!(matches!(normalize(path), Ok(Cow::Borrowed(_))), "{path}");
        }
    }

    #[test]
    fn the_one_pass_check_finds_what_searching_finds() {
        let searched = |p: &str| {
            p.contains("//")
                || p.contains("/.")
                || p.bytes().any(|b| b == b'%' || b == b'\\' || b == b';')
        };
        // Every path of up to six of these characters.
        let mut paths = vec![String::new()];
        let mut longest = paths.clone();
        for _ in 0..6 {
            longest = longest
                .iter()
                .flat_map(|p| ['/', '.', '%', '\\', ';', 'a'].map(|c| format!("{p}{c}")))
                .collect();
            paths.extend(longest.iter().cloned());
        }
        for p in &paths {
            assert_eq!(suspicious(p.as_bytes()), searched(p), "{p:?}");
        }
    }

    #[test]
    fn tricks_are_resolved() {
        let cases = [
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2e/admin/", "/admin/"),
            ("/public%2f..%2fadmin", "/admin"),
            ("//admin", "/admin"),
            ("/./admin/./x", "/admin/x"),
            ("/../../admin", "/admin"),
            ("/a/..", "/"),
            ("/public/..\\admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/adm%69n/secret", "/admin/secret"),
            ("/bas%69c/x", "/basic/x"),
            ("/admin;x=1", "/admin"),
            ("/admin;x=1/y;z", "/admin/y"),
            ("/public/..;/admin", "/admin"),
            ("/public;a/../admin/", "/admin/"),
            ("/%2561dmin", "/%61dmin"),
            ("/caf%C3%A9", "/café"),
        ];
        for (raw, want) in cases {
            assert_eq!(normal(raw), want, "{raw}");
        }
    }

    #[test]
    fn bad_escapes_and_control_bytes_are_refused() {
        for path in ["/x%", "/x%4", "/x%zz", "/%g0"] {
            assert_eq!(normalize(path), Err(PathError::BadEscape), "{path}");
        }
        for path in ["/admin%00", "/a%0d%0ab", "/%7f", "/%1F"] {
            assert_eq!(normalize(path), Err(PathError::Control), "{path}");
        }
    }

    proptest::proptest! {
        // A fixed seed: the same paths on every run.
        #![proptest_config(proptest::test_runner::Config {
            cases: 512,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x9a70_0001),
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// Any spelling of a path (each byte after the leading `/` percent-encoded or not,
        /// in either case of hex) routes as the path itself.
        #[test]
        fn every_encoding_of_a_path_normalises_alike(
            path in "/[a-z./;\\\\-]{0,24}",
            choices in proptest::collection::vec(0u8..3, 24),
        ) {
            let encoded: String = std::iter::once('/')
                .map(String::from)
                .chain(path[1..].bytes().zip(choices.iter().cycle()).map(|(b, c)| match c {
                    0 => format!("%{b:02X}"),
                    1 => format!("%{b:02x}"),
                    _ => (b as char).to_string(),
                }))
                .collect();
            let want = normalize(&path).unwrap();
            proptest::prop_assert_eq!(normalize(&encoded).unwrap(), want.clone(), "{}", encoded);
            // What is routed on is normal: nothing left to resolve.
            proptest::prop_assert!(want.starts_with('/'));
            proptest::prop_assert!(!want.contains("//") && !want.contains(';'));
            proptest::prop_assert!(want.split('/').all(|s| s != "." && s != ".."), "{}", want);
        }
    }
}
