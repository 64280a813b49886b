//! A minimal reverse proxy on hyper and tokio, without Pingora (round robin over the
//! benchmark's three backends, one injected header, keep-alive to them, one thread), for the
//! `hyper-baseline` row of `benches/load.sh`: what the same request costs in Rust's async stack
//! when Pingora's proxy path is not in it, so the benchmark tells Pingora's share of the gap
//! to nginx from tokio's. Not a proxy to run: no error pages, no timeouts, no limits.
//! `cargo run --release --example hyper_baseline` listens on 127.0.0.1:8084.

use std::cell::Cell;
use std::rc::Rc;

use http::header::{HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

// The proxy's allocator, as in the other rows.
#[global_allocator]
static GLOBAL: aralez::allocator::Mimalloc = aralez::allocator::Mimalloc;

const BACKENDS: [&str; 3] = ["127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103"];

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve())
}

async fn serve() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:8084").await?;
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build_http::<Incoming>();
    let header = HeaderName::from_static("x-proxy-from");
    let value = HeaderValue::from_static("Aralez");
    let next = Rc::new(Cell::new(0usize));
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (client, header, value, next) =
            (client.clone(), header.clone(), value.clone(), next.clone());
        tokio::task::spawn_local(async move {
            let proxy = service_fn(move |mut req: Request<Incoming>| {
                let i = next.get();
                next.set((i + 1) % BACKENDS.len());
                let path = req
                    .uri()
                    .path_and_query()
                    .cloned()
                    .unwrap_or_else(|| PathAndQuery::from_static("/"));
                let uri = Uri::builder()
                    .scheme("http")
                    .authority(BACKENDS[i])
                    .path_and_query(path)
                    .build();
                let client = client.clone();
                req.headers_mut().insert(header.clone(), value.clone());
                async move {
                    *req.uri_mut() = uri?;
                    anyhow::Ok(client.request(req).await?)
                }
            });
            // A client that goes away mid-request is not this example's concern.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), proxy)
                .await;
        });
    }
}
