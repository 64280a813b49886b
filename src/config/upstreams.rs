//! upstreams.yaml: the routing document, from any source (file, Consul, `POST /conf`).
//!
//! The document is walked by hand rather than derived with serde so that one pass reports
//! every problem, each with its key path and position, instead of stopping at the first.

use http::header::{HeaderName, HeaderValue};

use super::error::{ConfigError, Issue, IssueSink};
use super::runtime::MAX_READ_TIMEOUT;
use super::spans::{KeyPath, LazySpans};
use super::tree::{Map, Node};
use super::yaml::load_tree;

const TOP_KEYS: &[&str] = &[
    "provider",
    "strategy",
    "sticky_sessions",
    "to_https",
    "headers",
    "authorization",
    "consul",
    "upstreams",
    "default_host",
];
const HOST_KEYS: &[&str] = &["paths"];
const PATH_KEYS: &[&str] = &[
    "servers",
    "strategy",
    "healthcheck",
    "tls_verify",
    "read_timeout",
    "max_body_size",
    "headers",
    "to_https",
    "authorization",
    "sticky_sessions",
];
const AUTH_KEYS: &[&str] = &["type", "creds"];
const AUTH_TYPES: &[&str] = &["basic", "apikey", "jwt", "none"];
const PROVIDERS: &[&str] = &["file", "consul"];
const CONSUL_KEYS: &[&str] = &["servers", "token", "services"];
const CONSUL_SERVICE_KEYS: &[&str] = &[
    "proxy",
    "real",
    "path",
    "headers",
    "to_https",
    "authorization",
];

/// What validation needs to know about the running process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidationContext {
    /// Whether a TLS listener is configured (required by `to_https`).
    pub tls_listener: bool,
}

/// How a route chooses among its healthy servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Rotate over the healthy servers.
    #[default]
    RoundRobin,
    /// Everything to the first healthy server in list order.
    Failover,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    File,
    Consul,
}

/// A header to add, already checked to be a valid name and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderPair {
    pub name: HeaderName,
    /// The name as the config writes it, sent in that case. Pingora keeps a header's case
    /// next to its name and would otherwise allocate a copy of the lowercase name per request.
    pub written: bytes::Bytes,
    pub value: HeaderValue,
}

/// A `servers` entry: a host (IP literal or name, resolved when applied) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEntry {
    pub host: String,
    pub port: u16,
    /// Where the entry was written, for errors found while resolving it (the position is
    /// looked up from this path only if there is such an error: `ConfigError::locate`). None
    /// for IP literals, which cannot fail to resolve: formatting a path for each of 20,000
    /// servers was measurable in a 10,000-host apply.
    pub key_path: Option<String>,
}

impl ServerEntry {
    /// The entry as written, `host:port` (IPv6 in brackets).
    pub fn display(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A `user:secret` entry of basic auth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicCredential {
    pub user: String,
    pub secret: BasicSecret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BasicSecret {
    Plain(String),
    /// A bcrypt hash as `htpasswd -B` writes it (`$2y$...`).
    Bcrypt(String),
}

/// `authorization:` of the document or of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfig {
    /// `type: none`: open, overriding a document-wide setting.
    None,
    Basic(Vec<BasicCredential>),
    /// Any of these keys in the `x-api-key` header.
    ApiKey(Vec<String>),
    /// HMAC secret of HS256 tokens.
    Jwt(String),
}

/// One path prefix of a host and what to do with its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathConfig {
    pub prefix: String,
    pub servers: Vec<ServerEntry>,
    /// Added to the request sent upstream.
    pub request_headers: Vec<HeaderPair>,
    /// None: inherit the document-wide setting.
    pub to_https: Option<bool>,
    pub authorization: Option<AuthConfig>,
    pub sticky_sessions: Option<bool>,
    /// None: inherit the document-wide strategy.
    pub strategy: Option<Strategy>,
    /// false: never probe this path's servers; they stay in rotation.
    pub healthcheck: bool,
    /// Verify TLS backends' certificates against the system roots and the request host.
    pub tls_verify: bool,
    /// Servers come from this Consul service instead of `servers`.
    pub discover: Option<String>,
    /// Seconds per read from a backend; None: main.yaml's upstream_read_timeout.
    pub read_timeout: Option<u64>,
    /// Largest request body in bytes; None: main.yaml's max_body_size.
    pub max_body_size: Option<u64>,
}

impl PathConfig {
    /// A path with nothing set but its prefix: every attribute at its default.
    pub fn new(prefix: &str) -> PathConfig {
        PathConfig {
            prefix: prefix.to_string(),
            servers: Vec::new(),
            request_headers: Vec::new(),
            to_https: None,
            authorization: None,
            sticky_sessions: None,
            strategy: None,
            healthcheck: true,
            tls_verify: false,
            discover: None,
            read_timeout: None,
            max_body_size: None,
        }
    }
}

/// Where the Consul provider looks for instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulSettings {
    /// Base URLs, e.g. `http://127.0.0.1:8500`, tried in turn.
    pub servers: Vec<String>,
    pub token: Option<String>,
    /// Consul service names to watch.
    pub services: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// Lowercased, without a trailing dot.
    pub name: String,
    pub paths: Vec<PathConfig>,
}

/// A validated upstreams.yaml document.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamsConfig {
    pub provider: Provider,
    pub strategy: Strategy,
    pub sticky_sessions: bool,
    pub to_https: bool,
    /// Added to every proxied response.
    pub response_headers: Vec<HeaderPair>,
    pub authorization: Option<AuthConfig>,
    /// Set when `provider: consul`.
    pub consul: Option<ConsulSettings>,
    pub hosts: Vec<HostConfig>,
    /// The host (one of `hosts`) that serves requests no other host matches.
    pub default_host: Option<String>,
}

impl UpstreamsConfig {
    /// Parses and validates a document; `file` names it in errors.
    pub fn parse(
        text: &str,
        file: &str,
        ctx: ValidationContext,
    ) -> Result<UpstreamsConfig, ConfigError> {
        let (config, issues) = Self::parse_all(text, file, ctx)?;
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { issues })
        }
    }

    /// Every problem of a document, with what could be read of it (entries with problems
    /// left out), so that `-t` can go on to resolve its server names. Fails only when the
    /// text is not a YAML mapping.
    pub fn parse_all(
        text: &str,
        file: &str,
        ctx: ValidationContext,
    ) -> Result<(UpstreamsConfig, Vec<Issue>), ConfigError> {
        let spans = LazySpans::new(text);
        let root = load_tree(text, file)?;
        let mut walker = Walker {
            sink: IssueSink::new(file, &spans),
            ctx,
            host_names: Default::default(),
            servers_seen: Default::default(),
        };
        let config = walker.document(&root);
        // The YAML tree and the name sets of a big document take milliseconds to free.
        crate::retire::retire((root, walker.host_names, walker.servers_seen));
        Ok((config, walker.sink.into_issues()))
    }

    /// Counts of hosts, routes (paths) and distinct server entries.
    pub fn counts(&self) -> (usize, usize, usize) {
        let routes = self.hosts.iter().map(|h| h.paths.len()).sum();
        let mut servers: Vec<String> = self
            .hosts
            .iter()
            .flat_map(|h| h.paths.iter())
            .flat_map(|p| p.servers.iter().map(ServerEntry::display))
            .collect();
        servers.sort();
        servers.dedup();
        (self.hosts.len(), routes, servers.len())
    }
}

/// The document root, where top-level key paths start.
static ROOT: KeyPath<'static> = KeyPath::Root;

struct Walker<'a> {
    sink: IssueSink<'a>,
    ctx: ValidationContext,
    /// Host names seen under `upstreams:` (a linear search made 10,000 hosts quadratic).
    host_names: foldhash::HashSet<String>,
    /// `servers` entries already parsed, by their text: generated documents repeat a few
    /// backends across thousands of hosts, and parsing each entry anew was a fifth of reading
    /// a 10,000-host JSON document.
    servers_seen: foldhash::HashMap<String, ParsedServer>,
}

/// A valid `servers` entry, split.
#[derive(Clone)]
struct ParsedServer {
    host: String,
    port: u16,
    /// An IP literal, which cannot fail to resolve (so its place is never needed).
    is_ip: bool,
}

impl Walker<'_> {
    fn document(&mut self, root: &Map) -> UpstreamsConfig {
        let mut consul_section = None;
        let mut config = UpstreamsConfig {
            provider: Provider::File,
            strategy: Strategy::default(),
            sticky_sessions: false,
            to_https: false,
            response_headers: Vec::new(),
            authorization: None,
            consul: None,
            hosts: Vec::new(),
            default_host: None,
        };
        let upstreams = ROOT.key("upstreams");
        for (key, value) in root {
            let Some(key) = self.key_str(key, &ROOT) else {
                continue;
            };
            match key {
                "provider" => {
                    if let Some(p) = self.string(value, &ROOT.key("provider")) {
                        match p.to_ascii_lowercase().as_str() {
                            "file" => config.provider = Provider::File,
                            "consul" => config.provider = Provider::Consul,
                            _ => self.sink.push(
                                "provider",
                                format!(
                                    "unknown provider {p:?}; expected one of {}",
                                    PROVIDERS.join(", ")
                                ),
                            ),
                        }
                    }
                }
                "strategy" => {
                    config.strategy = self
                        .strategy(value, &ROOT.key("strategy"))
                        .unwrap_or_default();
                }
                "sticky_sessions" => {
                    config.sticky_sessions = self
                        .boolean(value, &ROOT.key("sticky_sessions"))
                        .unwrap_or(false)
                }
                "to_https" => {
                    config.to_https = self
                        .https_redirect(value, &ROOT.key("to_https"))
                        .unwrap_or(false);
                }
                "headers" => config.response_headers = self.headers(value, &ROOT.key("headers")),
                "authorization" => {
                    config.authorization = self.authorization(value, &ROOT.key("authorization"))
                }
                "consul" => consul_section = Some(value),
                "default_host" => {
                    config.default_host = self
                        .string(value, &ROOT.key("default_host"))
                        .map(|h| h.trim_end_matches('.').to_ascii_lowercase());
                }
                "upstreams" => match value {
                    Node::Mapping(hosts) => {
                        for (host, body) in hosts {
                            if let Some(name) = self.key_str(host, &upstreams) {
                                self.host(&mut config.hosts, name, body, &upstreams.key(name));
                            }
                        }
                    }
                    Node::Null => {}
                    other => self.wrong_kind(&upstreams, "a mapping of hosts", other),
                },
                // The older form: hosts beside `provider`. A key whose value is not a host
                // body is more likely a misspelt top-level key.
                other if is_host_body(value) => {
                    self.host(&mut config.hosts, other, value, &ROOT.key(other))
                }
                other => self.sink.unknown_key(ROOT, other, TOP_KEYS),
            }
        }
        match (config.provider, consul_section) {
            (Provider::Consul, Some(section)) => {
                config.consul = self.consul(section, &mut config.hosts);
            }
            (Provider::Consul, None) => self
                .sink
                .push("provider", "provider consul needs a `consul:` section"),
            // A consul section under `provider: file` is kept for switching back and forth.
            (Provider::File, _) => {}
        }
        if let Some(name) = &config.default_host {
            if !config.hosts.iter().any(|h| &h.name == name) {
                self.sink.push(
                    "default_host",
                    format!("{name:?} is not one of the hosts listed under upstreams"),
                );
            }
        }
        config
    }

    /// The `consul:` section: settings for the provider, and one discovered route per service,
    /// added to `hosts` (a host also listed under `upstreams:` is an error).
    fn consul(&mut self, value: &Node, hosts: &mut Vec<HostConfig>) -> Option<ConsulSettings> {
        let consul = ROOT.key("consul");
        let body = self.mapping(value, &consul, "a mapping with `servers` and `services`")?;
        let static_hosts: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
        let mut settings = ConsulSettings {
            servers: Vec::new(),
            token: None,
            services: Vec::new(),
        };
        for (key, value) in body {
            let Some(key) = self.key_str(key, &consul) else {
                continue;
            };
            let key_path = consul.key(key);
            match key {
                "servers" => {
                    for (i, url) in self
                        .string_or_list(value, &key_path)
                        .unwrap_or_default()
                        .into_iter()
                        .enumerate()
                    {
                        let url = url.trim_end_matches('/').to_string();
                        if url.starts_with("http://") || url.starts_with("https://") {
                            settings.servers.push(url);
                        } else {
                            self.sink.push(
                                key_path.index(i),
                                format!("{url:?} must be an http:// or https:// URL"),
                            );
                        }
                    }
                }
                "token" => settings.token = self.string(value, &key_path).map(str::to_string),
                "services" => {
                    let Some(list) =
                        self.sequence(value, &key_path, "a list of {proxy, real} services")
                    else {
                        continue;
                    };
                    for (i, item) in list.iter().enumerate() {
                        let item_path = key_path.index(i);
                        if let Some((host, route)) = self.consul_service(item, &item_path) {
                            if static_hosts.contains(&host) {
                                self.sink.push(
                                    item_path,
                                    format!("host {host:?} is also listed under upstreams"),
                                );
                                continue;
                            }
                            if let Some(real) = &route.discover {
                                if !settings.services.contains(real) {
                                    settings.services.push(real.clone());
                                }
                            }
                            match hosts.iter_mut().find(|h| h.name == host) {
                                Some(h) if h.paths.iter().any(|p| p.prefix == route.prefix) => {
                                    self.sink.push(
                                        item_path,
                                        format!("{host}{} is listed twice", route.prefix),
                                    );
                                }
                                Some(h) => h.paths.push(route),
                                None => hosts.push(HostConfig {
                                    name: host,
                                    paths: vec![route],
                                }),
                            }
                        }
                    }
                }
                other => self.sink.unknown_key(consul, other, CONSUL_KEYS),
            }
        }
        if settings.servers.is_empty() {
            self.sink
                .push("consul.servers", "consul needs at least one server URL");
        }
        if settings.services.is_empty() {
            self.sink
                .push("consul.services", "consul needs at least one service");
        }
        Some(settings)
    }

    fn consul_service(&mut self, value: &Node, path: &KeyPath<'_>) -> Option<(String, PathConfig)> {
        let body = self.mapping(value, path, "a mapping with `proxy` and `real`")?;
        let mut proxy = None;
        let mut route = PathConfig::new("/");
        for (key, value) in body {
            let Some(key) = self.key_str(key, path) else {
                continue;
            };
            let key_path = path.key(key);
            match key {
                "proxy" => {
                    proxy = self
                        .string(value, &key_path)
                        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
                }
                "real" => route.discover = self.string(value, &key_path).map(str::to_string),
                "path" => {
                    if let Some(p) = self.string(value, &key_path) {
                        if p.starts_with('/') {
                            route.prefix = p.to_string();
                        } else {
                            self.sink
                                .push(key_path, format!("path {p:?} must start with `/`"));
                        }
                    }
                }
                "headers" => route.request_headers = self.request_headers(value, &key_path),
                "to_https" => route.to_https = self.https_redirect(value, &key_path),
                "authorization" => route.authorization = self.authorization(value, &key_path),
                other => self.sink.unknown_key(path, other, CONSUL_SERVICE_KEYS),
            }
        }
        if let Some(why) = proxy
            .as_deref()
            .filter(|h| !h.is_empty())
            .and_then(host_pattern_error)
        {
            self.sink
                .push(path.key("proxy"), format!("host {proxy:?}: {why}"));
            return None;
        }
        match (proxy, &route.discover) {
            (Some(host), Some(real)) if !host.is_empty() && !real.is_empty() => Some((host, route)),
            _ => {
                self.sink.push(
                    path,
                    "a consul service needs `proxy` (the host) and `real` (the service name)",
                );
                None
            }
        }
    }

    fn host(
        &mut self,
        hosts: &mut Vec<HostConfig>,
        raw_name: &str,
        body: &Node,
        path: &KeyPath<'_>,
    ) {
        let name = raw_name.trim_end_matches('.').to_ascii_lowercase();
        // A refused name is reported, and its body is still checked (then dropped).
        let refusal = if name.is_empty() || name.contains(['/', ' ', '\t']) {
            Some(format!("{raw_name:?} is not a host name"))
        } else if has_port(&name) {
            Some(format!(
                "host {raw_name:?} must not carry a port: hosts match whatever the port"
            ))
        } else if let Some(why) = host_pattern_error(&name) {
            Some(format!("host {raw_name:?}: {why}"))
        } else if !self.host_names.insert(name.clone()) {
            Some(format!(
                "host {raw_name:?} is listed twice (host names are case-insensitive)"
            ))
        } else {
            None
        };
        if let Some(message) = &refusal {
            self.sink.push_key(path, message.as_str());
        }
        let Some(body) = self.mapping(body, path, "a mapping with `paths`") else {
            return;
        };
        let mut host = HostConfig {
            name,
            paths: Vec::new(),
        };
        let mut saw_paths = false;
        for (key, value) in body {
            let Some(key) = self.key_str(key, path) else {
                continue;
            };
            if key != "paths" {
                self.sink.unknown_key(path, key, HOST_KEYS);
                continue;
            }
            saw_paths = true;
            let paths_path = path.key("paths");
            let Some(paths) = self.mapping(value, &paths_path, "a mapping of path prefixes") else {
                continue;
            };
            if paths.is_empty() {
                self.sink.push(paths_path, "host has no paths");
            }
            for (prefix, route) in paths {
                if let Some(prefix) = self.key_str(prefix, &paths_path) {
                    let route_path = paths_path.key(prefix);
                    if let Some(p) = self.route(prefix, route, &route_path) {
                        host.paths.push(p);
                    }
                }
            }
        }
        if !saw_paths {
            self.sink.push(path, "host has no `paths`");
        }
        if refusal.is_none() {
            hosts.push(host);
        }
    }

    fn route(&mut self, prefix: &str, body: &Node, path: &KeyPath<'_>) -> Option<PathConfig> {
        // A refused prefix is reported, and its body is still checked (then dropped).
        let valid = prefix.starts_with('/');
        if !valid {
            self.sink
                .push_key(path, format!("path {prefix:?} must start with `/`"));
        }
        let body = self.mapping(body, path, "a mapping with `servers`")?;
        let mut route = PathConfig::new(prefix);
        let mut saw_servers = false;
        for (key, value) in body {
            let Some(key) = self.key_str(key, path) else {
                continue;
            };
            let key_path = path.key(key);
            match key {
                "servers" => {
                    saw_servers = true;
                    route.servers = self.servers(value, &key_path);
                }
                "headers" => route.request_headers = self.request_headers(value, &key_path),
                "to_https" => route.to_https = self.https_redirect(value, &key_path),
                "authorization" => route.authorization = self.authorization(value, &key_path),
                "sticky_sessions" => route.sticky_sessions = self.boolean(value, &key_path),
                "strategy" => route.strategy = self.strategy(value, &key_path),
                "healthcheck" => route.healthcheck = self.boolean(value, &key_path).unwrap_or(true),
                "tls_verify" => route.tls_verify = self.boolean(value, &key_path).unwrap_or(false),
                "read_timeout" => route.read_timeout = self.read_timeout(value, &key_path),
                "max_body_size" => route.max_body_size = self.positive(value, &key_path),
                other => self.sink.unknown_key(path, other, PATH_KEYS),
            }
        }
        if !saw_servers {
            self.sink.push(path, "route has no `servers`");
        }
        valid.then_some(route)
    }

    fn servers(&mut self, value: &Node, path: &KeyPath<'_>) -> Vec<ServerEntry> {
        let Some(list) = self.sequence(value, path, "a list of host:port entries") else {
            return Vec::new();
        };
        if list.is_empty() {
            self.sink.push(path, "the servers list is empty");
        }
        let mut out = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let item_path = path.index(i);
            let Some(text) = self.string(item, &item_path) else {
                continue;
            };
            let parsed = match self.servers_seen.get(text) {
                Some(seen) => seen.clone(),
                None => match parse_server(text) {
                    Ok((host, port)) => {
                        let is_ip = host.parse::<std::net::IpAddr>().is_ok();
                        let parsed = ParsedServer { host, port, is_ip };
                        self.servers_seen.insert(text.to_string(), parsed.clone());
                        parsed
                    }
                    Err(msg) => {
                        self.sink.push(item_path, msg);
                        continue;
                    }
                },
            };
            out.push(ServerEntry {
                key_path: (!parsed.is_ip).then(|| item_path.to_string()),
                host: parsed.host,
                port: parsed.port,
            });
        }
        out
    }

    fn headers(&mut self, value: &Node, path: &KeyPath<'_>) -> Vec<HeaderPair> {
        self.headers_refusing(value, path, |_| None)
    }

    /// A route's request headers: as [`headers`](Self::headers), but never `X-Forwarded-For`,
    /// the client address chain the proxy extends (a backend trusts its last entry).
    fn request_headers(&mut self, value: &Node, path: &KeyPath<'_>) -> Vec<HeaderPair> {
        self.headers_refusing(value, path, |h| {
            (h.name == "x-forwarded-for").then_some(
                "X-Forwarded-For is the client chain the proxy extends; a route cannot set it",
            )
        })
    }

    /// A list of `Name:Value` headers, each checked by `refused` (an error message or None).
    fn headers_refusing(
        &mut self,
        value: &Node,
        path: &KeyPath<'_>,
        refused: fn(&HeaderPair) -> Option<&'static str>,
    ) -> Vec<HeaderPair> {
        let Some(list) = self.sequence(value, path, "a list of \"Name:Value\" strings") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let item_path = path.index(i);
            let Some(text) = self.string(item, &item_path) else {
                continue;
            };
            match parse_header(text) {
                Ok(h) => match refused(&h) {
                    Some(why) => self.sink.push(item_path, why.to_string()),
                    None => out.push(h),
                },
                Err(msg) => self.sink.push(item_path, msg),
            }
        }
        out
    }

    fn authorization(&mut self, value: &Node, path: &KeyPath<'_>) -> Option<AuthConfig> {
        let body = self.mapping(value, path, "a mapping with `type` and `creds`")?;
        let mut kind = None;
        let mut creds: Option<(Vec<String>, KeyPath<'_>)> = None;
        for (key, value) in body {
            let Some(key) = self.key_str(key, path) else {
                continue;
            };
            let key_path = path.key(key);
            match key {
                "type" => {
                    if let Some(t) = self.string(value, &key_path) {
                        let t = t.to_ascii_lowercase();
                        if AUTH_TYPES.contains(&t.as_str()) {
                            kind = Some(t);
                        } else {
                            self.sink.push(
                                key_path,
                                format!(
                                    "unknown authorization type {t:?}; expected one of {}",
                                    AUTH_TYPES.join(", ")
                                ),
                            );
                        }
                    }
                }
                "creds" => creds = self.string_or_list(value, &key_path).map(|c| (c, key_path)),
                other => self.sink.unknown_key(path, other, AUTH_KEYS),
            }
        }
        let kind = kind.or_else(|| {
            self.sink.push(path, "authorization needs a `type`");
            None
        })?;
        if kind == "none" {
            return Some(AuthConfig::None);
        }
        let Some((creds, creds_path)) =
            creds.filter(|(c, _)| !c.is_empty() && c.iter().all(|s| !s.is_empty()))
        else {
            self.sink.push(
                path,
                format!("authorization type {kind} needs non-empty `creds`"),
            );
            return None;
        };
        match kind.as_str() {
            "basic" => {
                let mut entries = Vec::new();
                for (i, entry) in creds.iter().enumerate() {
                    let item_path = creds_path.index(i);
                    let entry_path = if creds.len() == 1 {
                        &creds_path
                    } else {
                        &item_path
                    };
                    match parse_basic(entry) {
                        Ok(c) => entries.push(c),
                        Err(msg) => self.sink.push(entry_path, msg),
                    }
                }
                Some(AuthConfig::Basic(entries))
            }
            "apikey" => Some(AuthConfig::ApiKey(creds)),
            _ => {
                if creds.len() != 1 {
                    self.sink
                        .push(creds_path, "jwt creds is one secret, not a list");
                }
                Some(AuthConfig::Jwt(
                    creds.into_iter().next().unwrap_or_default(),
                ))
            }
        }
    }

    fn positive(&mut self, value: &Node, path: &KeyPath<'_>) -> Option<u64> {
        match value.as_u64() {
            Some(n) if n > 0 => Some(n),
            _ => {
                self.wrong_kind(path, "a whole number above 0", value);
                None
            }
        }
    }

    /// Seconds from 1 to [`MAX_READ_TIMEOUT`]: larger ones overflow timers.
    fn read_timeout(&mut self, value: &Node, path: &KeyPath<'_>) -> Option<u64> {
        let n = self.positive(value, path)?;
        if n > MAX_READ_TIMEOUT {
            self.sink.push(
                path,
                format!("{n} is out of range: from 1 to {MAX_READ_TIMEOUT} seconds"),
            );
            return None;
        }
        Some(n)
    }

    fn strategy(&mut self, value: &Node, path: &KeyPath<'_>) -> Option<Strategy> {
        match self.string(value, path)?.to_ascii_lowercase().as_str() {
            "roundrobin" | "round_robin" => Some(Strategy::RoundRobin),
            "failover" => Some(Strategy::Failover),
            other => {
                self.sink.push(
                    path,
                    format!("unknown strategy {other:?}; expected roundrobin or failover"),
                );
                None
            }
        }
    }

    fn string_or_list(&mut self, value: &Node, path: &KeyPath<'_>) -> Option<Vec<String>> {
        match value {
            Node::String(s) => Some(vec![s.clone()]),
            Node::Sequence(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    out.push(self.string(item, &path.index(i))?.to_string());
                }
                Some(out)
            }
            other => {
                self.wrong_kind(path, "a string or a list of strings", other);
                None
            }
        }
    }

    fn https_redirect(&mut self, value: &Node, path: &KeyPath<'_>) -> Option<bool> {
        let on = self.boolean(value, path)?;
        if on && !self.ctx.tls_listener {
            self.sink.push(
                path,
                "to_https needs a TLS listener: set proxy_address_tls in main.yaml",
            );
        }
        Some(on)
    }

    // --- typed accessors: each reports a kind mismatch at `path` and returns None ---

    fn key_str<'v>(&mut self, key: &'v Node, parent: &KeyPath<'_>) -> Option<&'v str> {
        match key {
            Node::String(s) => Some(s),
            other => {
                self.sink.push(
                    parent,
                    format!("keys must be strings, found {}", other.kind()),
                );
                None
            }
        }
    }

    fn string<'v>(&mut self, value: &'v Node, path: &KeyPath<'_>) -> Option<&'v str> {
        match value {
            Node::String(s) => Some(s),
            other => {
                self.wrong_kind(path, "a string", other);
                None
            }
        }
    }

    fn boolean(&mut self, value: &Node, path: &KeyPath<'_>) -> Option<bool> {
        match value {
            Node::Bool(b) => Some(*b),
            other => {
                self.wrong_kind(path, "true or false", other);
                None
            }
        }
    }

    fn mapping<'v>(&mut self, value: &'v Node, path: &KeyPath<'_>, what: &str) -> Option<&'v Map> {
        match value {
            Node::Mapping(m) => Some(m),
            other => {
                self.wrong_kind(path, what, other);
                None
            }
        }
    }

    fn sequence<'v>(
        &mut self,
        value: &'v Node,
        path: &KeyPath<'_>,
        what: &str,
    ) -> Option<&'v [Node]> {
        match value {
            Node::Sequence(s) => Some(s),
            other => {
                self.wrong_kind(path, what, other);
                None
            }
        }
    }

    fn wrong_kind(&mut self, path: &KeyPath<'_>, expected: &str, found: &Node) {
        self.sink
            .push(path, format!("expected {expected}, found {}", found.kind()));
    }
}

/// Why `name` (lower case) is not a host pattern: an exact name, or `*.` and a domain
/// (nginx's leading wildcard). None when it is one.
pub fn host_pattern_error(name: &str) -> Option<&'static str> {
    if name == "*" {
        return Some("`*` alone is not a host; name the catch-all host with `default_host:`");
    }
    let exact = name.strip_prefix("*.").unwrap_or(name);
    if exact.contains('*') {
        return Some(
            "a wildcard is only `*.` before a domain (`*.example.com`), not inside or after a name",
        );
    }
    if exact.is_empty() || exact.starts_with('.') || exact.contains("..") {
        return Some("a host name has no empty labels");
    }
    None
}

fn is_host_body(value: &Node) -> bool {
    value.as_mapping().is_some_and(|m| m.get("paths").is_some())
}

fn has_port(host: &str) -> bool {
    match host.rsplit_once(':') {
        Some((h, p)) => !h.contains(':') && p.parse::<u16>().is_ok(),
        None => false,
    }
}

/// Splits a `servers` entry into host and port: `host:port` or `[v6]:port`.
pub fn parse_server(text: &str) -> Result<(String, u16), String> {
    let text = text.trim();
    if text.contains("://") {
        return Err(format!("{text:?} must be host:port, without a scheme"));
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        match rest.split_once(']') {
            Some((_, "")) => return Err(format!("{text:?} has no port")),
            Some((h, p)) => match p.strip_prefix(':') {
                Some(p) => {
                    if h.parse::<std::net::Ipv6Addr>().is_err() {
                        return Err(format!("{text:?}: {h:?} is not an IPv6 address"));
                    }
                    (h, p)
                }
                None => return Err(format!("{text:?}: expected `:port` after `]`")),
            },
            None => return Err(format!("{text:?}: missing `]`")),
        }
    } else {
        match text.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err(format!("{text:?}: write IPv6 addresses as [addr]:port"))
            }
            Some((h, p)) => (h, p),
            None => return Err(format!("{text:?} has no port")),
        }
    };
    if host.is_empty() {
        return Err(format!("{text:?} has no host"));
    }
    if host.contains(['/', ' ', '\t']) {
        return Err(format!("{text:?}: {host:?} is not a host name"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!(
            "{text:?}: port {port:?} is not a number from 1 to 65535"
        )),
        Ok(p) => Ok((host.to_string(), p)),
    }
}

/// Parses a basic-auth entry: `user:password` or `user:$2y$...` (bcrypt).
pub fn parse_basic(entry: &str) -> Result<BasicCredential, String> {
    let Some((user, secret)) = entry.split_once(':') else {
        return Err("basic creds must be \"user:password\" or \"user:<bcrypt hash>\"".into());
    };
    if user.is_empty() {
        return Err("basic creds have an empty user name".into());
    }
    let secret = if secret.starts_with("$2") {
        if secret.len() != 60 || !matches!(secret.get(..4), Some("$2a$" | "$2b$" | "$2x$" | "$2y$"))
        {
            return Err(format!(
                "the password of {user:?} looks like a bcrypt hash but is not a valid one"
            ));
        }
        BasicSecret::Bcrypt(secret.to_string())
    } else {
        BasicSecret::Plain(secret.to_string())
    };
    Ok(BasicCredential {
        user: user.to_string(),
        secret,
    })
}

/// Parses a `Name:Value` header entry.
pub fn parse_header(text: &str) -> Result<HeaderPair, String> {
    let Some((name, value)) = text.split_once(':') else {
        return Err(format!("{text:?} must be \"Name:Value\""));
    };
    let name = name.trim();
    let value = value.trim();
    let written = bytes::Bytes::copy_from_slice(name.as_bytes());
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{text:?}: {name:?} is not a valid header name"))?;
    let value = HeaderValue::from_str(value)
        .map_err(|_| format!("{text:?}: the value is not a valid header value"))?;
    Ok(HeaderPair {
        name,
        written,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TLS: ValidationContext = ValidationContext { tls_listener: true };
    const PLAIN: ValidationContext = ValidationContext {
        tls_listener: false,
    };

    fn errors(text: &str, ctx: ValidationContext) -> Vec<String> {
        match UpstreamsConfig::parse(text, "upstreams.yaml", ctx) {
            Ok(_) => Vec::new(),
            Err(e) => e.issues.iter().map(|i| i.to_string()).collect(),
        }
    }

    #[test]
    fn parses_the_upstreams_form() {
        let c = UpstreamsConfig::parse(
            "provider: file\nheaders: [\"Access-Control-Allow-Origin:*\"]\nupstreams:\n  App.Example.COM:\n    paths:\n      \"/\":\n        servers: [\"10.0.0.1:8000\", \"[::1]:81\"]\n        headers: [\"X-Proxy-From: Aralez\"]\n      \"/api/v2\":\n        to_https: true\n        servers: [\"backend.local:8443\"]\n",
            "u",
            TLS,
        )
        .unwrap();
        assert_eq!(c.hosts.len(), 1);
        assert_eq!(c.hosts[0].name, "app.example.com");
        let root = &c.hosts[0].paths[0];
        assert_eq!(root.servers[1].host, "::1");
        assert_eq!(root.servers[1].port, 81);
        assert_eq!(root.request_headers[0].name, "x-proxy-from");
        assert_eq!(root.request_headers[0].value, "Aralez");
        assert_eq!(c.hosts[0].paths[1].to_https, Some(true));
        assert_eq!(c.response_headers[0].value, "*");
        assert_eq!(c.counts(), (1, 2, 3));
    }

    #[test]
    fn parses_the_older_top_level_form() {
        let c = UpstreamsConfig::parse(
            "provider: file\nexample.com:\n  paths:\n    \"/\":\n      servers: [\"127.0.0.1:80\"]\n",
            "u",
            PLAIN,
        )
        .unwrap();
        assert_eq!(c.hosts[0].name, "example.com");
    }

    #[test]
    fn missing_port_names_file_line_and_path() {
        let text = "upstreams:\n  app.example.com:\n    paths:\n      \"/api\":\n        servers:\n          - \"10.0.0.2:80\"\n          - \"10.0.0.1\"\n";
        assert_eq!(
            errors(text, PLAIN),
            vec!["upstreams.yaml:7:13: upstreams.app.example.com.paths./api.servers[1]: \"10.0.0.1\" has no port"]
        );
    }

    #[test]
    fn a_route_cannot_set_the_client_chain() {
        let text = "headers: [\"X-Forwarded-For: 1.2.3.4\"]\nupstreams:\n  a.com:\n    paths:\n      \"/\":\n        servers: [\"127.0.0.1:80\"]\n        headers: [\"X-Real-IP: 1\", \"x-forwarded-for: 10.0.0.9\"]\n";
        assert_eq!(
            errors(text, PLAIN),
            vec!["upstreams.yaml:7:35: upstreams.a.com.paths./.headers[1]: X-Forwarded-For is the client chain the proxy extends; a route cannot set it"]
        );
    }

    #[test]
    fn reports_every_error_at_once() {
        let text = "provider: zookeeper\nupstreams:\n  a.com:\n    paths:\n      api:\n        servers: [\"x:1\"]\n      \"/b\":\n        servers: []\n      \"/c\":\n        servers: [\"h:99999\"]\n        headers: [\"NoColon\", \"Bad Name:v\"]\n        to_https: true\n  A.COM:\n    paths:\n      \"/\":\n        servers: [\"h:1\"]\n";
        let errs = errors(text, PLAIN);
        let expect = [
            "upstreams.yaml:1:11: provider: unknown provider \"zookeeper\"",
            "upstreams.a.com.paths.api: path \"api\" must start with `/`",
            "upstreams.a.com.paths./b.servers: the servers list is empty",
            "upstreams.a.com.paths./c.servers[0]: \"h:99999\": port \"99999\" is not a number",
            "upstreams.a.com.paths./c.headers[0]: \"NoColon\" must be \"Name:Value\"",
            "upstreams.a.com.paths./c.headers[1]: \"Bad Name:v\": \"Bad Name\" is not a valid header name",
            "upstreams.a.com.paths./c.to_https: to_https needs a TLS listener",
            "upstreams.A.COM: host \"A.COM\" is listed twice",
        ];
        assert_eq!(errs.len(), expect.len(), "{errs:#?}");
        for (got, want) in errs.iter().zip(expect) {
            assert!(got.contains(want), "{got:?} should contain {want:?}");
        }
    }

    #[test]
    fn repeated_server_entries_read_the_same_and_keep_their_own_places() {
        let text = "a.com:\n  paths:\n    \"/\":\n      servers: [\"be.internal:80\", \"10.0.0.1:80\"]\nb.com:\n  paths:\n    \"/\":\n      servers: [\"be.internal:80\", \"10.0.0.1:80\", \"10.0.0.1:0\"]\n";
        // The bad entry is reported at its place, every time it appears.
        let errs = errors(
            &format!("{text}c.com:\n  paths:\n    \"/\":\n      servers: [\"10.0.0.1:0\"]\n"),
            PLAIN,
        );
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("upstreams.yaml:8:50: b.com.paths./.servers[2]"),
            "{errs:?}"
        );
        assert!(
            errs[1].starts_with("upstreams.yaml:12:17: c.com.paths./.servers[0]"),
            "{errs:?}"
        );
        let text = text.replace(", \"10.0.0.1:0\"", "");
        let config = UpstreamsConfig::parse(&text, "upstreams.yaml", PLAIN).unwrap();
        let servers: Vec<&ServerEntry> = config
            .hosts
            .iter()
            .flat_map(|h| h.paths.iter().flat_map(|p| p.servers.iter()))
            .collect();
        let named: Vec<_> = servers
            .iter()
            .map(|s| (s.host.as_str(), s.port, s.key_path.as_deref()))
            .collect();
        assert_eq!(
            named,
            [
                ("be.internal", 80, Some("a.com.paths./.servers[0]")),
                ("10.0.0.1", 80, None),
                ("be.internal", 80, Some("b.com.paths./.servers[0]")),
                ("10.0.0.1", 80, None),
            ]
        );
    }

    #[test]
    fn misspelt_keys_get_suggestions() {
        let text = "upstream:\n  a.com:\n    paths: {}\n";
        let errs = errors(text, PLAIN);
        assert_eq!(
            errs,
            vec!["upstreams.yaml:1:1: upstream: unknown key `upstream`; did you mean `upstreams`?"]
        );
        let text = "a.com:\n  paths:\n    \"/\":\n      servrs: [\"h:1\"]\n";
        let errs = errors(text, PLAIN);
        assert!(
            errs[0].contains("unknown key `servrs`; did you mean `servers`?"),
            "{errs:?}"
        );
        assert!(errs[1].contains("route has no `servers`"), "{errs:?}");
    }

    #[test]
    fn wrong_kinds_are_reported_not_dropped() {
        let errs = errors(
            "a.com:\n  paths:\n    \"/\":\n      servers: \"h:1\"\n",
            PLAIN,
        );
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].contains("expected a list of host:port entries, found a string"),
            "{errs:?}"
        );
        let errs = errors("to_https: yes please\n", TLS);
        assert!(errs[0].contains("expected true or false"), "{errs:?}");
    }

    #[test]
    fn wildcard_hosts_and_the_default_host() {
        let c = UpstreamsConfig::parse(
            "default_host: Fallback.org.\nupstreams:\n  \"*.Example.com\":\n    paths:\n      \"/\":\n        servers: [\"h:1\"]\n  fallback.org:\n    paths:\n      \"/\":\n        servers: [\"h:1\"]\n",
            "u",
            PLAIN,
        )
        .unwrap();
        assert_eq!(c.hosts[0].name, "*.example.com");
        assert_eq!(c.default_host.as_deref(), Some("fallback.org"));
        let errs = errors(
            "default_host: nowhere.org\nupstreams:\n  \"a*.com\":\n    paths: {\"/\": {servers: [\"h:1\"]}}\n  \"*\":\n    paths: {\"/\": {servers: [\"h:1\"]}}\n  \"a.*.com\":\n    paths: {\"/\": {servers: [\"h:1\"]}}\n  \"www.example.*\":\n    paths: {\"/\": {servers: [\"h:1\"]}}\n  \"*.\":\n    paths: {\"/\": {servers: [\"h:1\"]}}\n",
            PLAIN,
        );
        let want = [
            "upstreams.yaml:3:3: upstreams.a*.com: host \"a*.com\": a wildcard is only `*.`",
            "upstreams.yaml:5:3: upstreams.*: host \"*\": `*` alone is not a host; name the catch-all host with `default_host:`",
            "upstreams.yaml:7:3: upstreams.a.*.com: host \"a.*.com\": a wildcard is only",
            "upstreams.yaml:9:3: upstreams.www.example.*: host \"www.example.*\": a wildcard is only",
            "upstreams.*.: host \"*.\": ",
            "upstreams.yaml:1:15: default_host: \"nowhere.org\" is not one of the hosts",
        ];
        assert_eq!(errs.len(), want.len(), "{errs:#?}");
        for (got, want) in errs.iter().zip(want) {
            assert!(got.contains(want), "{got:?} should contain {want:?}");
        }
    }

    #[test]
    fn refused_names_and_prefixes_still_have_their_bodies_checked() {
        let errs = errors(
            "upstreams:\n  \"a b\":\n    paths:\n      \"/\":\n        servers: [\"nope\"]\n  c.com:\n    paths:\n      api:\n        servers: [\"x:0\"]\n        read_timeout: 86401\n",
            PLAIN,
        );
        let want = [
            "upstreams.a b: \"a b\" is not a host name",
            "upstreams.a b.paths./.servers[0]: \"nope\" has no port",
            "upstreams.c.com.paths.api: path \"api\" must start with `/`",
            "upstreams.c.com.paths.api.servers[0]: \"x:0\": port",
            "upstreams.yaml:10:23: upstreams.c.com.paths.api.read_timeout: 86401 is out of range: from 1 to 86400 seconds",
        ];
        assert_eq!(errs.len(), want.len(), "{errs:#?}");
        for (got, want) in errs.iter().zip(want) {
            assert!(got.contains(want), "{got:?} should contain {want:?}");
        }
    }

    #[test]
    fn server_entries() {
        assert_eq!(parse_server("10.0.0.1:80"), Ok(("10.0.0.1".into(), 80)));
        assert_eq!(
            parse_server("[2001:db8::1]:443"),
            Ok(("2001:db8::1".into(), 443))
        );
        assert_eq!(
            parse_server("name.internal:8080"),
            Ok(("name.internal".into(), 8080))
        );
        for bad in [
            "10.0.0.1",
            "10.0.0.1:",
            "10.0.0.1:0",
            "h:x",
            ":80",
            "2001:db8::1:80",
            "[::1]",
            "http://h:80",
            "[zz]:80",
        ] {
            assert!(parse_server(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn header_entries() {
        let h = parse_header("X-A: b: c").unwrap();
        assert_eq!(h.name, "x-a");
        assert_eq!(h.value, "b: c");
        assert!(parse_header(":v").is_err());
        assert!(parse_header("X-A:bad\u{7f}").is_err());
    }

    #[test]
    fn authorization_forms() {
        let c = UpstreamsConfig::parse(
            "authorization:\n  type: jwt\n  creds: s3cret\na.com:\n  paths:\n    \"/\":\n      servers: [\"h:1\"]\n      authorization: {type: basic, creds: [\"u:p\", \"v:$2y$05$abcdefghijklmnopqrstuuPbbQKvc6b/R8dFM1x7Yf4mLzrKQjS.6\"]}\n    \"/open\":\n      servers: [\"h:1\"]\n      authorization: {type: none}\n    \"/k\":\n      servers: [\"h:1\"]\n      authorization: {type: apikey, creds: key1}\n",
            "u",
            PLAIN,
        )
        .unwrap();
        assert_eq!(c.authorization, Some(AuthConfig::Jwt("s3cret".into())));
        let paths = &c.hosts[0].paths;
        let Some(AuthConfig::Basic(entries)) = &paths[0].authorization else {
            panic!("basic expected");
        };
        assert_eq!(entries[0].secret, BasicSecret::Plain("p".into()));
        assert!(matches!(entries[1].secret, BasicSecret::Bcrypt(_)));
        assert_eq!(paths[1].authorization, Some(AuthConfig::None));
        assert_eq!(
            paths[2].authorization,
            Some(AuthConfig::ApiKey(vec!["key1".into()]))
        );
    }

    #[test]
    fn bad_authorization_is_reported() {
        let errs = errors("authorization:\n  type: oauth\n  creds: x\n", PLAIN);
        assert!(
            errs[0].contains("unknown authorization type \"oauth\""),
            "{errs:?}"
        );
        let errs = errors("authorization:\n  type: basic\n  creds: nocolon\n", PLAIN);
        assert!(
            errs[0].contains("authorization.creds: basic creds must be"),
            "{errs:?}"
        );
        let errs = errors("authorization:\n  type: jwt\n", PLAIN);
        assert!(errs[0].contains("needs non-empty `creds`"), "{errs:?}");
        let errs = errors(
            "authorization:\n  type: basic\n  creds: \"u:$2y$broken\"\n",
            PLAIN,
        );
        assert!(errs[0].contains("not a valid one"), "{errs:?}");
    }
}
