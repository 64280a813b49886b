//! The immutable routing table: hosts -> path prefixes -> routes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::auth::RouteAuth;
use crate::balance::RoundRobin;
use crate::config::upstreams::{HeaderPair, Strategy};
use crate::health::{BackendHealth, BackendKey};

/// One upstream server, resolved.
#[derive(Debug, Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    /// Address and TLS flag: the health registry's key.
    pub key: BackendKey,
    /// The `servers` entry it came from, for logs.
    pub name: Arc<str>,
    /// Shared with every route that uses this address, and kept across reloads.
    pub health: Arc<BackendHealth>,
    /// The id sticky-session cookies carry for this backend.
    pub sticky_id: Arc<str>,
}

/// A path prefix of a host with everything needed to serve it.
#[derive(Debug)]
pub struct Route {
    pub host: Box<str>,
    pub prefix: Box<str>,
    pub backends: Box<[Backend]>,
    /// Added to the request sent upstream.
    pub request_headers: Box<[HeaderPair]>,
    /// Redirect plain-HTTP requests to HTTPS.
    pub to_https: bool,
    /// Credentials required on this route; None when it is open.
    pub auth: Option<RouteAuth>,
    pub strategy: Strategy,
    /// Pin clients to a backend with a cookie.
    pub sticky: bool,
    /// Whether health decides rotation (false: every backend always in rotation).
    pub healthcheck: bool,
    /// Verify the certificates of TLS backends.
    pub tls_verify: bool,
    /// Per-read timeout towards backends, when the path sets one.
    pub read_timeout: Option<std::time::Duration>,
    /// Largest request body, when the path sets one.
    pub max_body_size: Option<u64>,
    pub balancer: RoundRobin,
    /// This host's metric series, resolved by the first request (not at compile time: a
    /// 10,000-host table would export 10,000 empty series).
    pub metrics: std::sync::OnceLock<crate::metrics::HostMetrics>,
}

/// The routes of one host, longest prefix first.
#[derive(Debug, Default, Clone)]
pub struct HostRoutes {
    routes: Vec<Arc<Route>>,
}

impl HostRoutes {
    /// The routes, longest prefix first.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    pub fn new(mut routes: Vec<Arc<Route>>) -> Self {
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        HostRoutes { routes }
    }

    /// The route with the longest prefix that matches `path` on a `/` boundary.
    pub fn find(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| prefix_matches(&r.prefix, path))
    }
}

/// `/api` matches `/api` and `/api/x` but not `/apix`; `/api/` matches `/api/x`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (prefix.ends_with('/')
            || path.len() == prefix.len()
            || path.as_bytes()[prefix.len()] == b'/')
}

/// The result of looking a request up.
#[derive(Debug)]
pub enum Lookup<'t> {
    Found(&'t Arc<Route>),
    NoHost,
    NoPath,
}

/// Counts shown in logs and API answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub generation: u64,
    pub hosts: usize,
    pub routes: usize,
    pub backends: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "generation {}: {} hosts, {} routes, {} backends",
            self.generation, self.hosts, self.routes, self.backends
        )
    }
}

/// Host name -> its routes. Hashed with foldhash (seeded per table) rather than SipHash: the
/// map is read on every request and filled with thousands of names on every apply, its keys
/// come from the routing document, and client-sent names are only looked up, never inserted.
pub type HostMap = HashMap<Box<str>, HostRoutes, foldhash::fast::RandomState>;

/// A complete, immutable routing table. Replaced whole on every reload.
#[derive(Debug, Default)]
pub struct RoutingTable {
    /// Exact names.
    hosts: HostMap,
    /// Leading wildcards, by their names as configured (`*.example.com`).
    wildcards: HostMap,
    /// The routes of `default_host`: for requests no other host matches.
    default: Option<HostRoutes>,
    /// Added to every proxied response. Shared: requests keep these, not the whole table.
    pub response_headers: Arc<[HeaderPair]>,
    pub summary: Summary,
}

/// Longest host name we look up (DNS allows 253 characters).
const MAX_HOST: usize = 255;

impl RoutingTable {
    /// A table of exact `hosts` and `*.` `wildcards`; `default` names one of either.
    pub fn new(
        hosts: HostMap,
        wildcards: HostMap,
        default: Option<&str>,
        response_headers: Arc<[HeaderPair]>,
        summary: Summary,
    ) -> Self {
        let default = default
            .and_then(|name| hosts.get(name).or_else(|| wildcards.get(name)))
            .cloned();
        RoutingTable {
            hosts,
            wildcards,
            default,
            response_headers,
            summary,
        }
    }

    /// Every host and its routes, in no particular order.
    pub fn hosts(&self) -> impl Iterator<Item = (&str, &HostRoutes)> {
        self.hosts
            .iter()
            .chain(&self.wildcards)
            .map(|(k, v)| (&**k, v))
    }

    /// Whether `name` (lower case, as configured) is one of the table's hosts.
    pub fn has_host(&self, name: &str) -> bool {
        self.hosts.contains_key(name) || self.wildcards.contains_key(name)
    }

    /// Finds the route for a request. `host` is the Host header or `:authority` as sent (any
    /// case, with or without a port); `path` is the URI path. Does not allocate.
    pub fn lookup(&self, host: &str, path: &str) -> Lookup<'_> {
        let host = strip_port(host);
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.len() > MAX_HOST {
            return Lookup::NoHost;
        }
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            // Made only for a host with capitals: zeroing it for every lookup cost more.
            let mut buf = [0u8; MAX_HOST];
            let lower = &mut buf[..host.len()];
            lower.copy_from_slice(host.as_bytes());
            lower.make_ascii_lowercase();
            // Lowercasing ASCII bytes keeps the text valid UTF-8.
            return self.find(std::str::from_utf8(lower).unwrap_or(host), path);
        }
        self.find(host, path)
    }

    /// The route for `path` under `host` (lowercase, no port), as nginx picks a
    /// `server_name`: the exact name, else the longest matching wildcard, else the default.
    fn find(&self, host: &str, path: &str) -> Lookup<'_> {
        let routes = match self.hosts.get(host) {
            Some(routes) => Some(routes),
            None => self.wildcard(host).or(self.default.as_ref()),
        };
        match routes {
            None => Lookup::NoHost,
            Some(routes) => match routes.find(path) {
                Some(route) => Lookup::Found(route),
                None => Lookup::NoPath,
            },
        }
    }

    /// The longest `*.suffix` that `host` ends with after a non-empty label: `*.example.com`
    /// matches `a.example.com` and `a.b.example.com`, not `example.com`. Tried from the
    /// first dot on, so the first hit is the longest.
    fn wildcard(&self, host: &str) -> Option<&HostRoutes> {
        if self.wildcards.is_empty() {
            return None;
        }
        let mut buf = [0u8; MAX_HOST + 1];
        buf[0] = b'*';
        for (i, _) in host.match_indices('.').filter(|(i, _)| *i > 0) {
            let suffix = &host.as_bytes()[i..];
            let key = &mut buf[..=suffix.len()];
            key[1..].copy_from_slice(suffix);
            // `*` and a suffix of valid UTF-8 that starts at an ASCII dot.
            if let Ok(key) = std::str::from_utf8(key) {
                if let Some(routes) = self.wildcards.get(key) {
                    return Some(routes);
                }
            }
        }
        None
    }
}

/// `example.com:8080` -> `example.com`; `[::1]:80` -> `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    // Searched byte by byte: hosts are short, too short for a vector search to pay off.
    match host.bytes().rposition(|b| b == b':') {
        Some(i) if host.as_bytes()[i + 1..].iter().all(u8::is_ascii_digit) => &host[..i],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: &str, prefix: &str) -> Arc<Route> {
        Arc::new(Route {
            host: host.into(),
            prefix: prefix.into(),
            backends: Box::new([]),
            request_headers: Box::new([]),
            to_https: false,
            auth: None,
            strategy: Strategy::RoundRobin,
            sticky: false,
            healthcheck: true,
            tls_verify: false,
            read_timeout: None,
            max_body_size: None,
            balancer: RoundRobin::default(),
            metrics: Default::default(),
        })
    }

    fn table() -> RoutingTable {
        let mut hosts = HostMap::default();
        hosts.insert(
            "example.com".into(),
            HostRoutes::new(vec![
                route("example.com", "/"),
                route("example.com", "/api"),
                route("example.com", "/api/v2"),
                route("example.com", "/static/"),
            ]),
        );
        hosts.insert(
            "only-api.com".into(),
            HostRoutes::new(vec![route("only-api.com", "/api")]),
        );
        RoutingTable::new(
            hosts,
            HostMap::default(),
            None,
            Arc::from([]),
            Summary::default(),
        )
    }

    fn found(t: &RoutingTable, host: &str, path: &str) -> Option<String> {
        match t.lookup(host, path) {
            Lookup::Found(r) => Some(r.prefix.to_string()),
            _ => None,
        }
    }

    #[test]
    fn longest_prefix_on_segment_boundary() {
        let t = table();
        assert_eq!(found(&t, "example.com", "/").as_deref(), Some("/"));
        assert_eq!(found(&t, "example.com", "/api").as_deref(), Some("/api"));
        assert_eq!(found(&t, "example.com", "/api/x").as_deref(), Some("/api"));
        assert_eq!(found(&t, "example.com", "/apix").as_deref(), Some("/"));
        assert_eq!(
            found(&t, "example.com", "/api/v2/users").as_deref(),
            Some("/api/v2")
        );
        assert_eq!(
            found(&t, "example.com", "/api/v20").as_deref(),
            Some("/api")
        );
        assert_eq!(
            found(&t, "example.com", "/static/a.css").as_deref(),
            Some("/static/")
        );
        assert_eq!(found(&t, "example.com", "/static").as_deref(), Some("/"));
    }

    #[test]
    fn host_is_case_insensitive_and_port_free() {
        let t = table();
        assert!(found(&t, "EXAMPLE.com:8080", "/").is_some());
        assert!(found(&t, "example.com.", "/").is_some());
        assert!(matches!(t.lookup("other.com", "/"), Lookup::NoHost));
        assert!(matches!(t.lookup("", "/"), Lookup::NoHost));
        assert!(matches!(t.lookup("only-api.com", "/web"), Lookup::NoPath));
        let long = "a".repeat(300);
        assert!(matches!(t.lookup(&long, "/"), Lookup::NoHost));
    }

    fn named(hosts: &[&str], default: Option<&str>) -> RoutingTable {
        let (mut exact, mut wild) = (HostMap::default(), HostMap::default());
        for h in hosts {
            let map = if h.starts_with("*.") {
                &mut wild
            } else {
                &mut exact
            };
            map.insert((*h).into(), HostRoutes::new(vec![route(h, "/")]));
        }
        RoutingTable::new(exact, wild, default, Arc::from([]), Summary::default())
    }

    fn host_of(t: &RoutingTable, host: &str) -> Option<String> {
        match t.lookup(host, "/") {
            Lookup::Found(r) => Some(r.host.to_string()),
            _ => None,
        }
    }

    #[test]
    fn exact_then_longest_wildcard_then_default() {
        let t = named(
            &[
                "a.example.com",
                "*.example.com",
                "*.b.example.com",
                "fallback.org",
            ],
            Some("fallback.org"),
        );
        let cases = [
            ("a.example.com", "a.example.com"),
            ("A.Example.COM:8080", "a.example.com"),
            ("x.example.com", "*.example.com"),
            ("x.y.example.com", "*.example.com"),
            ("b.example.com", "*.example.com"),
            ("x.b.example.com", "*.b.example.com"),
            ("X.y.B.example.com.", "*.b.example.com"),
            ("example.com", "fallback.org"),
            ("other.net", "fallback.org"),
            (".example.com", "fallback.org"),
            ("*.example.com", "*.example.com"),
            ("", "fallback.org"),
        ];
        for (asked, want) in cases {
            assert_eq!(host_of(&t, asked).as_deref(), Some(want), "{asked}");
        }
        assert!(t.has_host("*.b.example.com"));
        assert_eq!(t.hosts().count(), 4);
    }

    #[test]
    fn without_a_default_unknown_hosts_are_not_found() {
        let t = named(&["*.example.com"], None);
        assert!(matches!(t.lookup("example.com", "/"), Lookup::NoHost));
        assert!(matches!(t.lookup("example.org", "/"), Lookup::NoHost));
        assert!(matches!(t.lookup("ex.ample.com", "/"), Lookup::NoHost));
        assert_eq!(
            host_of(&t, "a.example.com").as_deref(),
            Some("*.example.com")
        );
        // A wildcard host is not matched by name: only `*.example.com` as sent is.
        let t = named(&["a.com"], None);
        assert!(matches!(t.lookup("*.a.com", "/"), Lookup::NoHost));
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("a.com:80"), "a.com");
        assert_eq!(strip_port("a.com"), "a.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
