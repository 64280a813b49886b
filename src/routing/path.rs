//! The path used for routing: normalised, so that `..`, `.` and encoded dots or slashes cannot
//! move a request from a route with stricter auth into a laxer one. The request itself is
//! forwarded with the path exactly as received.

use std::borrow::Cow;

/// Whether `path` may not be normal: it holds `//`, `/.`, `%` or a backslash. One pass, as
/// most paths are normal.
fn suspicious(path: &[u8]) -> bool {
    let mut after_slash = false;
    path.iter().any(|&b| {
        let odd = b == b'%' || b == b'\\' || (after_slash && (b == b'/' || b == b'.'));
        after_slash = b == b'/';
        odd
    })
}

/// The path as a backend would resolve it: `%2e`/`%2f` decoded, `.` and `..` segments
/// removed (RFC 3986 §5.2.4), repeated slashes collapsed. Borrowed when already normal.
pub fn normalize(path: &str) -> Cow<'_, str> {
    if path.starts_with('/') && !suspicious(path.as_bytes()) {
        return Cow::Borrowed(path);
    }
    let decoded = decode_separators(path);
    let mut out: Vec<&str> = Vec::new();
    for segment in decoded.split(['/', '\\']) {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut normal = String::with_capacity(decoded.len() + 1);
    for s in &out {
        normal.push('/');
        normal.push_str(s);
    }
    if normal.is_empty() || (trailing && !out.is_empty()) {
        normal.push('/');
    }
    Cow::Owned(normal)
}

/// Decodes the escapes that change how a path splits into segments: `%2e` (.), `%2f` (/),
/// `%5c` (\), case-insensitively. Other escapes stay as they are.
fn decode_separators(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let code = &path[i + 1..i + 3];
            let decoded = match code.to_ascii_lowercase().as_str() {
                "2e" => Some('.'),
                "2f" => Some('/'),
                "5c" => Some('\\'),
                _ => None,
            };
            if let Some(c) = decoded {
                out.push(c);
                i += 3;
                continue;
            }
        }
        // Paths are ASCII after URI parsing; copy byte-wise without splitting characters.
        let ch_len = path[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&path[i..i + ch_len]);
        i += ch_len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_are_borrowed() {
        assert!(matches!(normalize("/api/v1/users"), Cow::Borrowed(_)));
        assert!(matches!(normalize("/"), Cow::Borrowed(_)));
        assert!(matches!(normalize("/a.b/c.txt"), Cow::Borrowed(_)));
    }

    #[test]
    fn the_one_pass_check_finds_what_searching_finds() {
        let searched = |p: &str| {
            p.contains("//") || p.contains("/.") || p.bytes().any(|b| b == b'%' || b == b'\\')
        };
        // Every path of up to six of these characters.
        let mut paths = vec![String::new()];
        let mut longest = paths.clone();
        for _ in 0..6 {
            longest = longest
                .iter()
                .flat_map(|p| ['/', '.', '%', '\\', 'a'].map(|c| format!("{p}{c}")))
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
            ("/%41dmin", "/%41dmin"),
            ("/x%", "/x%"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize(raw), want, "{raw}");
        }
    }
}
