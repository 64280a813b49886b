//! Turning a validated upstreams document into a routing table: resolves server names once,
//! here, so that requests never wait on DNS.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use crate::auth::RouteAuth;
use crate::balance::{sticky, RoundRobin};
use crate::config::upstreams::{ServerEntry, UpstreamsConfig};
use crate::config::{ConfigError, Issue};
use crate::health::{BackendKey, HealthRegistry};

use super::table::{Backend, HostMap, HostRoutes, Route, RoutingTable, Summary};

/// Resolves a host name and port to addresses.
pub type Resolver = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

/// The system resolver (getaddrinfo). Blocking: call from a blocking context.
pub fn system_resolver(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    (host, port).to_socket_addrs().map(Iterator::collect)
}

/// What compiling needs besides the document.
pub struct CompileEnv<'a> {
    pub resolve: &'a Resolver,
    /// Backends get their health from here, so that it survives the swap.
    pub health: &'a HealthRegistry,
    /// Key of sticky-session ids.
    pub sticky_key: &'a [u8],
    /// Instances of Consul services, by service name (empty without the Consul provider).
    pub discovered: &'a HashMap<String, Vec<SocketAddr>>,
}

impl CompileEnv<'_> {
    /// The backend at `addr`, named `name` in logs, with its lasting health and sticky id.
    fn backend(&self, addr: SocketAddr, name: String) -> Backend {
        let key = BackendKey { addr };
        Backend {
            addr,
            key,
            name: name.into(),
            health: self.health.entry(key),
            sticky_id: sticky::backend_id(self.sticky_key, &addr).into(),
        }
    }
}

/// Backends made so far in one compile, by address and name: the same server listed under
/// thousands of hosts is hashed (sticky id) and looked up (health) once, then shared.
#[derive(Default)]
struct Backends<'c>(HashMap<BackendSource<'c>, Backend, foldhash::fast::RandomState>);

/// An address, and the `servers` entry (host, port) it was resolved from; none when discovered.
type BackendSource<'c> = (SocketAddr, Option<(&'c str, u16)>);

impl<'c> Backends<'c> {
    fn get(
        &mut self,
        env: &CompileEnv<'_>,
        addr: SocketAddr,
        entry: Option<&'c ServerEntry>,
    ) -> Backend {
        self.0
            .entry((addr, entry.map(|e| (e.host.as_str(), e.port))))
            .or_insert_with(|| {
                let name = entry.map_or_else(|| addr.to_string(), ServerEntry::display);
                env.backend(addr, name)
            })
            .clone()
    }
}

/// Builds the table for `config` as generation `generation`. `file` names the source in errors.
pub fn compile(
    config: &UpstreamsConfig,
    file: &str,
    generation: u64,
    env: &CompileEnv<'_>,
) -> Result<RoutingTable, ConfigError> {
    let mut issues = Vec::new();
    let mut hosts = HostMap::with_capacity_and_hasher(config.hosts.len(), Default::default());
    let mut wildcards = HostMap::default();
    let mut distinct = foldhash::HashSet::default();
    let mut routes_total = 0;
    let mut made = Backends::default();
    for host in &config.hosts {
        let mut routes = Vec::with_capacity(host.paths.len());
        for path in &host.paths {
            let mut backends = Vec::new();
            if let Some(service) = &path.discover {
                for &addr in env.discovered.get(service).map_or(&[][..], Vec::as_slice) {
                    distinct.insert(addr);
                    backends.push(made.get(env, addr, None));
                }
            }
            for entry in &path.servers {
                match resolve_entry(entry, env.resolve) {
                    Ok(addrs) => {
                        for addr in addrs {
                            distinct.insert(addr);
                            backends.push(made.get(env, addr, Some(entry)));
                        }
                    }
                    Err(message) => issues.push(Issue {
                        file: file.to_string(),
                        location: None,
                        key_path: entry.key_path.clone().unwrap_or_default(),
                        message,
                    }),
                }
            }
            routes.push(Arc::new(Route {
                host: host.name.as_str().into(),
                prefix: path.prefix.as_str().into(),
                backends: backends.into(),
                request_headers: path.request_headers.clone().into(),
                to_https: path.to_https.unwrap_or(config.to_https),
                auth: path
                    .authorization
                    .as_ref()
                    .or(config.authorization.as_ref())
                    .and_then(RouteAuth::compile),
                strategy: path.strategy.unwrap_or(config.strategy),
                sticky: path.sticky_sessions.unwrap_or(config.sticky_sessions),
                healthcheck: path.healthcheck,
                tls_verify: path.tls_verify,
                read_timeout: path.read_timeout.map(std::time::Duration::from_secs),
                max_body_size: path.max_body_size,
                balancer: RoundRobin::default(),
                metrics: Default::default(),
            }));
        }
        routes_total += routes.len();
        let map = if host.name.starts_with("*.") {
            &mut wildcards
        } else {
            &mut hosts
        };
        map.insert(host.name.as_str().into(), HostRoutes::new(routes));
    }
    if !issues.is_empty() {
        return Err(ConfigError { issues });
    }
    let summary = Summary {
        generation,
        hosts: hosts.len() + wildcards.len(),
        routes: routes_total,
        backends: distinct.len(),
    };
    Ok(RoutingTable::new(
        hosts,
        wildcards,
        config.default_host.as_deref(),
        config.response_headers.clone().into(),
        summary,
    ))
}

/// IP literals are used as they are; names go to the resolver and may give several addresses.
fn resolve_entry(entry: &ServerEntry, resolve: &Resolver) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = entry.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, entry.port)]);
    }
    let mut addrs = resolve(&entry.host, entry.port)
        .map_err(|e| format!("cannot resolve {:?}: {e}", entry.host))?;
    let mut seen = std::collections::HashSet::new();
    addrs.retain(|a| seen.insert(*a));
    if addrs.is_empty() {
        return Err(format!("{:?} resolves to no address", entry.host));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ValidationContext;
    use crate::routing::table::Lookup;

    fn fake_dns(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        match host {
            "two.internal" => Ok(vec![
                SocketAddr::from(([10, 0, 0, 1], port)),
                SocketAddr::from(([10, 0, 0, 2], port)),
                SocketAddr::from(([10, 0, 0, 1], port)),
            ]),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
        }
    }

    /// Compiles with the fake resolver, a fresh health registry and no discovered instances.
    fn compile_offline(c: &UpstreamsConfig, generation: u64) -> Result<RoutingTable, ConfigError> {
        let (health, discovered) = (HealthRegistry::default(), HashMap::new());
        let env = CompileEnv {
            resolve: &fake_dns,
            health: &health,
            sticky_key: b"k",
            discovered: &discovered,
        };
        compile(c, "u.yaml", generation, &env)
    }

    fn parse(text: &str) -> UpstreamsConfig {
        UpstreamsConfig::parse(text, "u.yaml", ValidationContext::default()).unwrap()
    }

    #[test]
    fn names_resolve_to_all_their_addresses_once() {
        let c = parse(
            "a.com:\n  paths:\n    \"/\":\n      servers: [\"two.internal:81\", \"10.0.0.9:80\"]\n",
        );
        let t = compile_offline(&c, 7).unwrap();
        let Lookup::Found(r) = t.lookup("a.com", "/") else {
            panic!("route missing");
        };
        let addrs: Vec<String> = r.backends.iter().map(|b| b.addr.to_string()).collect();
        assert_eq!(addrs, ["10.0.0.1:81", "10.0.0.2:81", "10.0.0.9:80"]);
        assert_eq!(
            t.summary,
            Summary {
                generation: 7,
                hosts: 1,
                routes: 1,
                backends: 3
            }
        );
    }

    #[test]
    fn unresolvable_names_are_positioned_errors() {
        let text =
            "a.com:\n  paths:\n    \"/\":\n      servers:\n        - \"nowhere.invalid:81\"\n";
        let c = parse(text);
        // `store::build` places compile errors in the text they came from.
        let err = compile_offline(&c, 1).unwrap_err().locate(text);
        assert_eq!(
            err.to_string(),
            "u.yaml:5:11: a.com.paths./.servers[0]: cannot resolve \"nowhere.invalid\": no such host"
        );
    }
}
