//! Assembling the Pingora server from main.yaml: listeners, the proxy and background services.

use std::path::PathBuf;
use std::sync::Arc;

use pingora::prelude::Opt;
use pingora::proxy::http_proxy;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::api::{ApiListeners, ApiService, ApiState};
use crate::config::{MainConfig, Runtime};
use crate::downstream::GuardedApp;
use crate::health::{HealthChecker, HealthSettings};
use crate::lifecycle::{InFlight, ShutdownSignals};
use crate::privileges::{Identity, PrivilegeDrop};
use crate::providers::cluster::{Cluster, ClusterWatcher};
use crate::providers::{ConsulProvider, FileProvider};
use crate::proxy::{AralezProxy, ProxyCore};
use crate::routing::RouteStore;
use crate::tls::{CertStore, CertWatcher, SniCallback};
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::{L4BufferSettings, DEFAULT_L4_WRITE_BUFFER_SIZE};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("proxy_certificates {0}: {1}")]
    Certificates(PathBuf, String),
    #[error("cluster: {0}")]
    Cluster(String),
    #[error("config API: {0}")]
    Api(#[from] crate::api::listen::ListenError),
    #[error("{0}")]
    Privileges(#[from] crate::privileges::PrivilegeError),
    #[error("{0}")]
    Settings(String),
    #[error("access_log {0}: cannot be opened: {1}")]
    AccessLog(String, std::io::Error),
}

/// Flags from the command line that Pingora acts on.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessFlags {
    pub daemon: bool,
    pub upgrade: bool,
}

/// Pingora's settings and our checked numbers, as start-up uses them; fails on exactly the
/// values validation (`aralez -t`) refuses.
pub fn settings(
    main: &MainConfig,
    flags: ProcessFlags,
) -> Result<(ServerConf, Runtime), StartError> {
    let runtime = main.runtime().map_err(|bad| {
        let all: Vec<String> = bad.iter().map(ToString::to_string).collect();
        StartError::Settings(all.join("; "))
    })?;
    let conf = server_conf(main, &runtime, flags)
        .validate()
        .map_err(|e| StartError::Settings(e.to_string()))?;
    Ok((conf, runtime))
}

fn server_conf(main: &MainConfig, runtime: &Runtime, flags: ProcessFlags) -> ServerConf {
    let mut conf = ServerConf {
        threads: runtime.threads,
        work_stealing: main.work_stealing,
        daemon: main.daemon || flags.daemon,
        pid_file: main.pid_file.display().to_string(),
        error_log: main.error_log.as_ref().map(|p| p.display().to_string()),
        upgrade_sock: main.upgrade_sock.display().to_string(),
        // Not Pingora's: it would drop them before binding (see `privileges`).
        user: None,
        group: None,
        upstream_keepalive_pool_size: main.upstream_keepalive_pool_size,
        ..ServerConf::default()
    };
    // Pingora sleeps this long after SIGTERM; we exit earlier, once idle or at
    // shutdown_timeout (see lifecycle): this is only a backstop.
    conf.grace_period_seconds = Some(
        runtime
            .shutdown_timeout
            .as_secs()
            .saturating_add(crate::lifecycle::BACKSTOP.as_secs()),
    );
    conf.graceful_shutdown_timeout_seconds = Some(1);
    conf
}

/// Socket buffers of client connections, plain and TLS. Pingora's default 64 KiB read buffer
/// is allocated for every connection, idle ones too; the HTTP parser reads into its own
/// buffer anyway, and OpenSSL into its record buffer.
fn client_buffers() -> L4BufferSettings {
    L4BufferSettings::new(CLIENT_READ_BUFFER, DEFAULT_L4_WRITE_BUFFER_SIZE)
}

const CLIENT_READ_BUFFER: usize = 0;

fn health_settings(main: &MainConfig, runtime: &Runtime) -> HealthSettings {
    HealthSettings {
        // Validated to be HEAD, GET or POST.
        method: main
            .hc_method
            .to_ascii_uppercase()
            .parse()
            .unwrap_or(http::Method::HEAD),
        interval: runtime.hc_interval,
        timeout: main.probe_timeout(),
        fall: main.hc_fall,
        rise: main.hc_rise,
    }
}

fn api_service(
    main: &MainConfig,
    store: Arc<RouteStore>,
    in_flight: InFlight,
    cluster: Option<Arc<Cluster>>,
    upgrading: bool,
) -> Result<ApiService, StartError> {
    let tls = match (
        &main.config_tls_address,
        &main.config_tls_certificate,
        &main.config_tls_key_file,
    ) {
        (Some(addr), Some(cert), Some(key)) => Some((addr.as_str(), cert.as_path(), key.as_path())),
        _ => None,
    };
    let listeners = ApiListeners::bind(&main.config_address, tls, upgrading)?;
    let state = ApiState {
        store,
        master_key: main.master_key.clone(),
        upstreams_path: main.upstreams_conf.clone(),
        in_flight,
        cluster: cluster.map(|c| c as Arc<dyn crate::api::Publish>),
    };
    Ok(ApiService::new(state, listeners))
}

/// A server ready to run: proxy listeners plus the file watcher.
pub struct Aralez {
    pub server: Server,
    pub in_flight: InFlight,
    /// Drained as the last step of a shutdown.
    pub access_log: Option<crate::access_log::AccessLog>,
    pub drain_timeout: std::time::Duration,
}

impl Aralez {
    pub fn build(
        main: &MainConfig,
        flags: ProcessFlags,
        store: Arc<RouteStore>,
    ) -> Result<Aralez, StartError> {
        let opt = Opt {
            upgrade: flags.upgrade,
            daemon: main.daemon || flags.daemon,
            ..Opt::default()
        };
        let (conf, runtime) = settings(main, flags)?;
        let identity = Identity::resolve(main.user.as_deref(), main.group.as_deref())?;
        let mut server = Server::new_with_opt_and_conf(opt, conf);
        server.bootstrap();
        if let Some(identity) = identity {
            let ports = [
                Some(&main.proxy_address_http),
                main.proxy_address_tls.as_ref(),
            ]
            .into_iter()
            .flatten()
            .filter_map(|addr| addr.rsplit(':').next()?.parse().ok())
            .collect();
            server.add_service(background_service(
                "privilege drop",
                PrivilegeDrop::new(identity, ports),
            ));
        }

        let in_flight = InFlight::default();
        let access_log = match main.access_log() {
            Some((target, format)) => {
                let (log, writer) = crate::access_log::channel(target, format)
                    .map_err(|e| StartError::AccessLog(main.access_log.clone(), e))?;
                server.add_service(background_service("access log", writer));
                Some(log)
            }
            None => None,
        };
        let core = Arc::new(ProxyCore {
            store: store.clone(),
            tls_port: main.tls_port(),
            connect_timeout: runtime.connect_timeout,
            client_read_timeout: runtime.client_read_timeout,
            websocket_idle_timeout: runtime.websocket_idle_timeout,
            upstream_read_timeout: runtime.upstream_read_timeout,
            max_body_size: main.max_body_size,
            keepalive_timeout: runtime.keepalive_timeout.as_secs(),
            in_flight: in_flight.clone(),
            access_log: access_log.clone(),
            direct: crate::proxy::ConnectionPools::new(
                runtime.connect_timeout,
                main.upstream_keepalive_pool_size,
            ),
        });
        let mut app = http_proxy(&server.configuration, AralezProxy::new(core.clone()));
        let mut options = HttpServerOptions::default();
        // HTTP/2 with prior knowledge on the plain listener (gRPC without TLS).
        options.h2c = main.h2c;
        app.server_options = Some(options);
        let header_timeout = runtime.header_timeout;
        let mut service = Service::new(
            "aralez proxy".to_string(),
            GuardedApp::new(app, header_timeout, core, main.fast_lane),
        );
        service.add_listener(
            ListenerConfig::tcp(main.proxy_address_http.as_str()).l4_buffer(client_buffers()),
        );
        if let (Some(addr), Some(folder)) = (&main.proxy_address_tls, &main.proxy_certificates) {
            let certs = CertStore::load(folder.clone())
                .map_err(|e| StartError::Certificates(folder.clone(), e.to_string()))?;
            let mut tls = TlsSettings::with_callbacks(Box::new(SniCallback(certs.clone())))
                .map_err(|e| StartError::Certificates(folder.clone(), e.to_string()))?;
            tls.enable_h2();
            // OpenSSL reads ahead into its own record buffer, so the TLS listener needs no
            // L4 read buffer of its own: Pingora's default is 64 KB per connection, held for
            // the connection's life (117 KB per idle TLS keep-alive connection, 51 KB without
            // it). Without read-ahead OpenSSL would read each record's header and body in two
            // syscalls (7.2 instead of 5.2 per HTTP/1.1 request; same count as before with it).
            tls.set_read_ahead(true);
            // An idle connection gives its record buffers (about 34 KB) back to the
            // allocator, as nginx has OpenSSL do: they are taken again when a record comes.
            tls.set_mode(pingora::tls::ssl::SslMode::RELEASE_BUFFERS);
            service.add_listener(
                ListenerConfig::tcp(addr.as_str())
                    .tls(tls)
                    .l4_buffer(client_buffers()),
            );
            server.add_service(background_service(
                "certificate watcher",
                CertWatcher(certs),
            ));
        }
        server.add_service(service);
        let cluster = match &main.cluster {
            Some(config) => {
                let cluster =
                    Cluster::new(config.clone()).map_err(|e| StartError::Cluster(e.to_string()))?;
                log::info!(
                    "fleet mode: consul key {} is the source of truth; the file watcher on {} is off",
                    config.key,
                    main.upstreams_conf.display()
                );
                server.add_service(background_service(
                    "consul key watcher",
                    ClusterWatcher {
                        cluster: cluster.clone(),
                        store: store.clone(),
                        cache: main.upstreams_conf.clone(),
                    },
                ));
                Some(cluster)
            }
            None => {
                server.add_service(background_service(
                    "upstreams file watcher",
                    FileProvider::new(main.upstreams_conf.clone(), store.clone()),
                ));
                None
            }
        };
        server.add_service(background_service(
            "consul discovery",
            ConsulProvider::new(store.clone()),
        ));
        server.add_service(background_service(
            "health checks",
            HealthChecker::new(
                store.clone(),
                store.health().clone(),
                health_settings(main, &runtime),
            ),
        ));
        server.add_service(background_service(
            "config API",
            api_service(main, store, in_flight.clone(), cluster, flags.upgrade)?,
        ));
        Ok(Aralez {
            server,
            in_flight,
            access_log,
            drain_timeout: runtime.shutdown_timeout,
        })
    }

    /// Runs until SIGTERM/SIGINT (graceful) or SIGQUIT (upgrade).
    pub fn run(self) {
        let signals = ShutdownSignals {
            in_flight: self.in_flight,
            drain_timeout: self.drain_timeout,
            access_log: self.access_log,
        };
        self.server.run(RunArgs {
            shutdown_signal: Box::new(signals),
        });
    }
}
