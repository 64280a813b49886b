//! main.yaml: process-wide settings, read once at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{ConfigError, Issue, IssueSink};
use super::spans::LazySpans;
use super::yaml::{load_mapping, read_file, type_error};

/// The keys main.yaml accepts; kept equal to `MainConfig`'s fields by a unit test.
pub const MAIN_KEYS: &[&str] = &[
    "threads",
    "work_stealing",
    "user",
    "group",
    "daemon",
    "upstream_keepalive_pool_size",
    "pid_file",
    "error_log",
    "upgrade_sock",
    "config_address",
    "config_tls_address",
    "config_tls_certificate",
    "config_tls_key_file",
    "proxy_address_http",
    "proxy_address_tls",
    "proxy_certificates",
    "upstreams_conf",
    "log_level",
    "hc_method",
    "hc_interval",
    "hc_fall",
    "hc_rise",
    "master_key",
    "connect_timeout",
    "h2c",
    "client_read_timeout",
    "upstream_read_timeout",
    "max_body_size",
    "access_log",
    "cluster",
    "access_log_format",
    "websocket_idle_timeout",
    "shutdown_timeout",
    "header_timeout",
    "keepalive_timeout",
    "fast_lane",
];

pub const LOG_LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
pub const HC_METHODS: &[&str] = &["HEAD", "GET", "POST"];

/// `cluster:` of main.yaml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Consul base URL(s), tried in turn.
    #[serde(deserialize_with = "one_or_many")]
    pub consul: Vec<String>,
    /// The KV key that holds upstreams.yaml.
    pub key: String,
    /// ACL token, sent as `X-Consul-Token`.
    #[serde(default)]
    pub token: Option<String>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// main.yaml as written, with the documented defaults for absent keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MainConfig {
    /// Proxy worker threads; defaults to the number of CPUs.
    pub threads: Option<usize>,
    /// Let idle worker threads take tasks queued on busy ones (one tokio work-stealing
    /// runtime). Off by default: one single-threaded runtime per thread, each connection stays
    /// on the thread that accepted it, as in nginx, HAProxy and Envoy; measured with
    /// `benches/load.sh` at one thread: p99 46 -> 18 ms, same requests/s.
    pub work_stealing: bool,
    /// Drop root privileges to this user after binding.
    pub user: Option<String>,
    /// Drop root privileges to this group after binding.
    pub group: Option<String>,
    /// Run in the background (`-d` also does).
    pub daemon: bool,
    /// Idle upstream connections kept for reuse: across all backends on Pingora's proxy path,
    /// per backend and worker thread on the direct path (`proxy::direct`). Busy proxies hold one
    /// upstream connection per request in flight; a pool smaller than that closes and reopens
    /// connections under load (128 churned 2,700 connections/s at 300 clients).
    pub upstream_keepalive_pool_size: usize,
    /// PID file.
    pub pid_file: PathBuf,
    /// Error log file; stderr when absent.
    pub error_log: Option<PathBuf>,
    /// Socket used to hand listeners over during a zero-downtime upgrade (`-u`).
    pub upgrade_sock: PathBuf,
    /// Plain-HTTP address of the config API.
    pub config_address: String,
    /// HTTPS address of the config API.
    pub config_tls_address: Option<String>,
    /// Certificate of the HTTPS config API.
    pub config_tls_certificate: Option<PathBuf>,
    /// Private key of the HTTPS config API.
    pub config_tls_key_file: Option<PathBuf>,
    /// Plain-HTTP proxy listener.
    pub proxy_address_http: String,
    /// TLS proxy listener.
    pub proxy_address_tls: Option<String>,
    /// Folder of `{NAME}.crt` + `{NAME}.key` pairs for the TLS listener.
    pub proxy_certificates: Option<PathBuf>,
    /// The routing file (upstreams.yaml), watched for changes.
    pub upstreams_conf: PathBuf,
    /// off, error, warn, info, debug or trace.
    pub log_level: String,
    /// Health-check method: HEAD, GET or POST.
    pub hc_method: String,
    /// Seconds between health checks.
    pub hc_interval: u64,
    /// Failed probes in a row that take a backend out of rotation.
    pub hc_fall: u32,
    /// Passed probes in a row that bring it back.
    pub hc_rise: u32,
    /// Secret for the config API and for minting JWTs.
    pub master_key: Option<String>,
    /// Seconds to wait for an upstream TCP connection before trying the next server.
    pub connect_timeout: f64,
    /// Accept HTTP/2 with prior knowledge (h2c) on the plain listener (told from HTTP/1 by
    /// the connection preface, see `downstream`).
    pub h2c: bool,
    /// Fleet mode: the routing document lives in a Consul KV key shared by every instance.
    pub cluster: Option<ClusterConfig>,
    /// `off`, `stdout`, or a file path.
    pub access_log: String,
    /// `json` or `combined`.
    pub access_log_format: String,
    /// Seconds a client may stay silent while sending a request (HTTP/1.x).
    pub client_read_timeout: u64,
    /// Seconds to wait for each read from a backend (its response header, then each body
    /// chunk) before answering 504; paths may set their own `read_timeout`.
    pub upstream_read_timeout: u64,
    /// Largest request body in bytes (0: no limit); paths may set their own `max_body_size`.
    pub max_body_size: u64,
    /// Seconds a WebSocket may stay idle (no frame either way) before it is closed.
    pub websocket_idle_timeout: u64,
    /// Seconds that in-flight requests get to finish after SIGTERM/SIGINT.
    pub shutdown_timeout: u64,
    /// Seconds a client gets to send a whole HTTP/1.x request header, counted from the
    /// connection (first request) or from the request's first byte (keep-alive): slowloris.
    pub header_timeout: u64,
    /// Seconds an idle HTTP/1.x keep-alive connection is kept open between requests.
    pub keepalive_timeout: u64,
    /// Serve plain bodyless HTTP/1.1 requests to plain-HTTP backends on Aralez's own HTTP/1.1
    /// reader and writer before Pingora's (`proxy::lane`); everything else goes to Pingora.
    pub fast_lane: bool,
}

impl Default for MainConfig {
    fn default() -> Self {
        MainConfig {
            threads: None,
            work_stealing: false,
            user: None,
            group: None,
            daemon: false,
            upstream_keepalive_pool_size: 1024,
            pid_file: PathBuf::from("/tmp/aralez.pid"),
            error_log: None,
            upgrade_sock: PathBuf::from("/tmp/aralez.sock"),
            config_address: "127.0.0.1:3000".into(),
            config_tls_address: None,
            config_tls_certificate: None,
            config_tls_key_file: None,
            proxy_address_http: "0.0.0.0:6193".into(),
            proxy_address_tls: None,
            proxy_certificates: None,
            upstreams_conf: PathBuf::from("upstreams.yaml"),
            log_level: "info".into(),
            hc_method: "HEAD".into(),
            hc_interval: 2,
            hc_fall: 1,
            hc_rise: 1,
            master_key: None,
            connect_timeout: 2.0,
            h2c: true,
            cluster: None,
            access_log: "off".into(),
            access_log_format: "json".into(),
            client_read_timeout: 60,
            upstream_read_timeout: 60,
            max_body_size: 0,
            websocket_idle_timeout: 3600,
            shutdown_timeout: 10,
            header_timeout: 10,
            keepalive_timeout: 60,
            fast_lane: true,
        }
    }
}

impl MainConfig {
    /// Reads, checks and resolves main.yaml. Relative paths become relative to its folder.
    pub fn load(path: &Path) -> Result<MainConfig, ConfigError> {
        let (config, issues) = Self::load_all(path)?;
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { issues })
        }
    }

    /// Every problem of main.yaml (its values and what they name: files, folders, accounts),
    /// with the settings read from it. Fails only when the file is unreadable or not a mapping.
    pub fn load_all(path: &Path) -> Result<(MainConfig, Vec<Issue>), ConfigError> {
        let file = path.display().to_string();
        let text = read_file(path)?;
        // Absolute, because the daemon changes its working folder to `/`.
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        Self::from_text(&text, &file, &base)
    }

    /// [`load_all`](Self::load_all) of text; relative paths are taken from `base`.
    pub fn from_text(
        text: &str,
        file: &str,
        base: &Path,
    ) -> Result<(MainConfig, Vec<Issue>), ConfigError> {
        let (mut config, mut issues) = Self::parse_all(text, file)?;
        config.resolve_paths(base);
        let spans = LazySpans::new(text);
        let mut sink = IssueSink::new(file, &spans);
        let refused = |key: &str| issues.iter().any(|i| i.key_path == key);
        config.preflight(&mut sink, &refused);
        issues.extend(sink.into_issues());
        Ok((config, issues))
    }

    /// Parses and validates main.yaml text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<MainConfig, ConfigError> {
        let (config, issues) = Self::parse_all(text, file)?;
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { issues })
        }
    }

    /// Every problem of main.yaml text, with the settings read from it: a refused value
    /// leaves its key at the default, so that the other keys (and the upstreams file they
    /// name) can still be checked. Fails only when the text is not a YAML mapping.
    pub fn parse_all(text: &str, file: &str) -> Result<(MainConfig, Vec<Issue>), ConfigError> {
        let spans = LazySpans::new(text);
        let mut mapping = load_mapping(text, file)?;
        let mut issues = Vec::new();
        let mut sink = IssueSink::new(file, &spans);
        mapping.retain(|key, _| match key.as_str() {
            Some(k) if MAIN_KEYS.contains(&k) => true,
            Some(k) => {
                sink.unknown_key("", k, MAIN_KEYS);
                false
            }
            None => {
                sink.push("", "keys must be strings");
                false
            }
        });
        issues.extend(sink.into_issues());
        // serde stops at the first wrong value: report it, drop its key, read the rest again.
        let config = loop {
            let value = serde_yaml::Value::Mapping(mapping.clone());
            match serde_path_to_error::deserialize::<_, MainConfig>(value) {
                Ok(config) => break config,
                Err(e) => {
                    let key = match e.path().iter().next() {
                        Some(serde_path_to_error::Segment::Map { key }) => Some(key.clone()),
                        _ => None,
                    };
                    issues.extend(type_error(e, file, spans.get()).issues);
                    match key.and_then(|k| mapping.remove(k.as_str()).map(|_| ())) {
                        Some(()) => continue,
                        None => break MainConfig::default(),
                    }
                }
            }
        };
        let mut sink = IssueSink::new(file, &spans);
        config.validate(&mut sink);
        issues.extend(sink.into_issues());
        Ok((config, issues))
    }

    fn validate(&self, sink: &mut IssueSink<'_>) {
        let addresses = [
            ("proxy_address_http", Some(&self.proxy_address_http)),
            ("proxy_address_tls", self.proxy_address_tls.as_ref()),
            ("config_address", Some(&self.config_address)),
            ("config_tls_address", self.config_tls_address.as_ref()),
        ];
        // Listeners already checked, to catch two on one port. Pingora keys its listening
        // sockets by address, so a second proxy listener on the same address would wrap the
        // first one's descriptor (a debug build aborted on the double close); on a wildcard
        // and a specific IP, or against the API's listeners, the later bind fails with a
        // less helpful error.
        let mut listeners: Vec<(&str, SocketAddr)> = Vec::new();
        for (key, value) in addresses {
            let Some(v) = value else { continue };
            let Ok(addr) = v.parse::<SocketAddr>() else {
                sink.push(key, format!("{v:?} is not an IP:port address"));
                continue;
            };
            if let Some((other, _)) = listeners.iter().find(|(_, a)| same_socket(*a, addr)) {
                sink.push(
                    key,
                    format!("{addr} is also {other}'s port; each listener needs its own"),
                );
            }
            listeners.push((key, addr));
        }
        if !LOG_LEVELS.contains(&self.log_level.as_str()) {
            sink.push(
                "log_level",
                format!(
                    "{:?} is not one of {}",
                    self.log_level,
                    LOG_LEVELS.join(", ")
                ),
            );
        }
        if !HC_METHODS.contains(&self.hc_method.to_ascii_uppercase().as_str()) {
            sink.push(
                "hc_method",
                format!(
                    "{:?} is not one of {}",
                    self.hc_method,
                    HC_METHODS.join(", ")
                ),
            );
        }
        if !["json", "combined"].contains(&self.access_log_format.as_str()) {
            sink.push(
                "access_log_format",
                format!("{:?} is not json or combined", self.access_log_format),
            );
        }
        if let Some(cluster) = &self.cluster {
            if cluster.consul.is_empty()
                || cluster
                    .consul
                    .iter()
                    .any(|u| !(u.starts_with("http://") || u.starts_with("https://")))
            {
                sink.push(
                    "cluster.consul",
                    "needs one or more http:// or https:// URLs",
                );
            }
            if cluster.key.is_empty() || cluster.key.starts_with('/') {
                sink.push(
                    "cluster.key",
                    "needs a KV key such as aralez/prod/upstreams.yaml",
                );
            }
        }
        if self.access_log.is_empty() {
            sink.push("access_log", "must be off, stdout or a file path");
        }
        if let Err(bad) = self.runtime() {
            for b in bad {
                sink.push(b.key, b.message);
            }
        }
        if self.hc_fall == 0 {
            sink.push("hc_fall", "must be at least 1");
        }
        if self.hc_rise == 0 {
            sink.push("hc_rise", "must be at least 1");
        }
        if self.proxy_address_tls.is_some() && self.proxy_certificates.is_none() {
            sink.push(
                "proxy_address_tls",
                "needs proxy_certificates (the certificate folder)",
            );
        }
        if self.config_tls_address.is_some()
            && (self.config_tls_certificate.is_none() || self.config_tls_key_file.is_none())
        {
            sink.push(
                "config_tls_address",
                "needs config_tls_certificate and config_tls_key_file",
            );
        }
        if self.master_key.as_deref() == Some("") {
            sink.push(
                "master_key",
                "must not be empty; remove the key to disable the API",
            );
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.pid_file);
        resolve(&mut self.upgrade_sock);
        resolve(&mut self.upstreams_conf);
        if !["off", "stdout"].contains(&self.access_log.as_str()) {
            let mut p = PathBuf::from(&self.access_log);
            resolve(&mut p);
            self.access_log = p.display().to_string();
        }
        for p in [
            &mut self.error_log,
            &mut self.config_tls_certificate,
            &mut self.config_tls_key_file,
            &mut self.proxy_certificates,
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
    }

    /// Worker threads: the configured number, or one per CPU.
    pub fn worker_threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }

    /// The port of the TLS listener, used to build HTTPS redirects.
    pub fn tls_port(&self) -> Option<u16> {
        self.proxy_address_tls
            .as_deref()
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .map(|a| a.port())
    }

    /// How long a health probe may take: the smaller of `hc_interval` and 2 s.
    pub fn probe_timeout(&self) -> Duration {
        Duration::from_secs(self.hc_interval.min(2))
    }

    /// The access log's target and format, or None when it is off.
    pub fn access_log(&self) -> Option<(crate::access_log::Target, crate::access_log::Format)> {
        use crate::access_log::{Format, Target};
        let format = if self.access_log_format == "combined" {
            Format::Combined
        } else {
            Format::Json
        };
        match self.access_log.as_str() {
            "off" => None,
            "stdout" => Some((Target::Stdout, format)),
            path => Some((Target::File(PathBuf::from(path)), format)),
        }
    }
}

/// Formats issues for display; used by `-t`.
pub fn describe(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether two listen addresses claim the same socket: the same port on the same IP, or on
/// a wildcard IP (0.0.0.0 or ::) and any other.
fn same_socket(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_list_matches_struct_fields() {
        let value = serde_yaml::to_value(MainConfig::default()).unwrap();
        let fields: Vec<String> = value
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        let mut expected: Vec<String> = MAIN_KEYS.iter().map(|s| s.to_string()).collect();
        let mut got = fields.clone();
        expected.sort();
        got.sort();
        assert_eq!(got, expected);
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = MainConfig::parse("", "main.yaml").unwrap();
        assert_eq!(c, MainConfig::default());
        assert_eq!(c.config_address, "127.0.0.1:3000");
        assert_eq!(c.runtime().unwrap().connect_timeout, Duration::from_secs(2));
    }

    #[test]
    fn unknown_key_is_named_with_a_suggestion() {
        let err = MainConfig::parse("threads: 2\nproxy_adress_http: 0.0.0.0:80\n", "main.yaml")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "main.yaml:2:1: proxy_adress_http: unknown key `proxy_adress_http`; did you mean `proxy_address_http`?"
        );
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let err = MainConfig::parse("log_level: info\nthreads: many\n", "main.yaml").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("main.yaml:2:10: threads: "), "{text}");
    }

    #[test]
    fn every_semantic_error_is_reported() {
        let err = MainConfig::parse(
            "proxy_address_http: nowhere\nlog_level: loud\nproxy_address_tls: 0.0.0.0:443\n",
            "main.yaml",
        )
        .unwrap_err();
        assert_eq!(err.issues.len(), 3, "{err}");
        assert_eq!(err.issues[0].location.map(|l| l.line), Some(1));
    }

    #[test]
    fn two_listeners_on_one_port_are_refused() {
        let err = MainConfig::parse(
            "proxy_address_http: 127.0.0.1:8080\nproxy_certificates: /c\nproxy_address_tls: 0.0.0.0:8080\nconfig_address: 127.0.0.1:8081\n",
            "main.yaml",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "main.yaml:3:20: proxy_address_tls: 0.0.0.0:8080 is also proxy_address_http's port; each listener needs its own"
        );
        // Other IPs on one port, or other ports on one IP, are separate sockets.
        MainConfig::parse(
            "proxy_address_http: 127.0.0.1:8080\nconfig_address: 127.0.0.2:8080\nconfig_tls_address: 127.0.0.1:8443\nconfig_tls_certificate: /c\nconfig_tls_key_file: /k\n",
            "main.yaml",
        )
        .unwrap();
    }

    #[test]
    fn relative_paths_resolve_against_the_file_folder() {
        let mut c =
            MainConfig::parse("upstreams_conf: up.yaml\npid_file: /run/a.pid\n", "m").unwrap();
        c.resolve_paths(Path::new("/etc/aralez"));
        assert_eq!(c.upstreams_conf, PathBuf::from("/etc/aralez/up.yaml"));
        assert_eq!(c.pid_file, PathBuf::from("/run/a.pid"));
    }
}
