//! A minimal Pingora proxy (round robin over the benchmark's three backends, one injected
//! header, nothing else), to tell Pingora's own cost from Aralez's in `benches/load.sh`:
//! `cargo run --release --example pingora_baseline` listens on 127.0.0.1:8083.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::server::RunArgs;

struct Baseline {
    next: AtomicUsize,
    backends: [std::net::SocketAddr; 3],
}

#[async_trait]
impl ProxyHttp for Baseline {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.backends.len();
        Ok(Box::new(HttpPeer::new(
            self.backends[i],
            false,
            String::new(),
        )))
    }

    async fn upstream_request_filter(
        &self,
        _: &mut Session,
        req: &mut RequestHeader,
        _: &mut (),
    ) -> Result<()> {
        req.insert_header("X-Proxy-From", "Aralez")
    }
}

fn main() {
    let conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let ports = [9101, 9102, 9103];
    let proxy = Baseline {
        next: AtomicUsize::new(0),
        backends: ports.map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p))),
    };
    let mut service = http_proxy_service(&server.configuration, proxy);
    service.add_tcp("127.0.0.1:8083");
    server.add_service(service);
    server.run(RunArgs::default());
}
