//! gRPC through the proxy with tonic: unary and bidirectional streaming, over TLS and h2c,
//! error statuses, `grpc-timeout`, and UNAVAILABLE when the backend is down. Also protocol
//! detection of a self-signed TLS backend beside a plain one.

// tonic's Status is large by design; boxing it here would only obscure the test.
#![allow(clippy::result_large_err)]

use crate::common;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use common::*;
use futures_util::{Stream, StreamExt};
use http::uri::PathAndQuery;
use tonic::codec::ProstCodec;
use tonic::{Code, Request, Response, Status};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    #[prost(string, tag = "1")]
    pub text: String,
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// `test.Echo`: `Unary` answers `echo:TEXT timeout=<grpc-timeout>` (or fails on `fail`);
/// `Bidi` answers every message with `bidi:TEXT`.
#[derive(Clone)]
struct EchoService;

impl tonic::server::NamedService for EchoService {
    const NAME: &'static str = "test.Echo";
}

struct Unary;

impl tonic::server::UnaryService<Msg> for Unary {
    type Response = Msg;
    type Future = BoxFut<Result<Response<Msg>, Status>>;
    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        Box::pin(async move {
            let timeout = req
                .metadata()
                .get("grpc-timeout")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_string();
            let msg = req.into_inner();
            if msg.text == "fail" {
                return Err(Status::invalid_argument("asked to fail"));
            }
            Ok(Response::new(Msg {
                text: format!("echo:{} timeout={timeout}", msg.text),
            }))
        })
    }
}

struct Bidi;

impl tonic::server::StreamingService<Msg> for Bidi {
    type Response = Msg;
    type ResponseStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;
    type Future = BoxFut<Result<Response<Self::ResponseStream>, Status>>;
    fn call(&mut self, req: Request<tonic::Streaming<Msg>>) -> Self::Future {
        Box::pin(async move {
            let replies = req.into_inner().map(|m| {
                m.map(|m| Msg {
                    text: format!("bidi:{}", m.text),
                })
            });
            Ok(Response::new(Box::pin(replies) as Self::ResponseStream))
        })
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for EchoService {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFut<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Msg, Msg>::default());
            Ok(match req.uri().path() {
                "/test.Echo/Unary" => grpc.unary(Unary, req).await,
                "/test.Echo/Bidi" => grpc.streaming(Bidi, req).await,
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

/// A tonic server (h2c only, as tonic serves by default) on a free port.
async fn grpc_backend() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EchoService)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

const HOST: &str = "grpc.example.com";

async fn proxy_for(backend: std::net::SocketAddr) -> Proxy {
    let doc = format!(
        "upstreams:\n  {HOST}:\n    paths:\n      \"/\":\n        servers: [\"{backend}\"]\n"
    );
    Proxy::start_with(
        &doc,
        ProxyOptions {
            tls: true,
            ..Default::default()
        },
    )
    .await
}

fn endpoint(port: u16) -> tonic::transport::Endpoint {
    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .origin(format!("http://{HOST}").parse().unwrap())
}

/// A client through the plain listener (h2c with prior knowledge).
async fn h2c_client(proxy: &Proxy) -> tonic::client::Grpc<tonic::transport::Channel> {
    tonic::client::Grpc::new(endpoint(proxy.port).connect().await.unwrap())
}

/// A client through the TLS listener (ALPN h2, self-signed certificate accepted).
async fn tls_client(proxy: &Proxy) -> tonic::client::Grpc<tonic::transport::Channel> {
    let port = proxy.tls_port.unwrap();
    let connector = tower::service_fn(move |_: http::Uri| async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let tls = native_tls::TlsConnector::builder()
            .danger_accept_invalid_certs(true)
            .request_alpns(&["h2"])
            .build()
            .map_err(std::io::Error::other)?;
        let stream = tokio_native_tls::TlsConnector::from(tls)
            .connect(HOST, tcp)
            .await
            .map_err(std::io::Error::other)?;
        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
    });
    tonic::client::Grpc::new(
        endpoint(port)
            .connect_with_connector(connector)
            .await
            .unwrap(),
    )
}

async fn unary(
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
    text: &str,
) -> Result<String, Status> {
    client
        .ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let mut req = Request::new(Msg { text: text.into() });
    req.set_timeout(std::time::Duration::from_secs(5));
    let resp = client
        .unary(
            req,
            PathAndQuery::from_static("/test.Echo/Unary"),
            ProstCodec::<Msg, Msg>::default(),
        )
        .await?;
    Ok(resp.into_inner().text)
}

async fn bidi(client: &mut tonic::client::Grpc<tonic::transport::Channel>) -> Vec<String> {
    client.ready().await.unwrap();
    let outbound = futures_util::stream::iter(["a", "b", "c"].map(|t| Msg { text: t.into() }));
    let resp = client
        .streaming(
            Request::new(outbound),
            PathAndQuery::from_static("/test.Echo/Bidi"),
            ProstCodec::<Msg, Msg>::default(),
        )
        .await
        .unwrap();
    let mut inbound = resp.into_inner();
    let mut out = Vec::new();
    while let Some(m) = inbound.message().await.unwrap() {
        out.push(m.text);
    }
    out
}

async fn exercise(mut client: tonic::client::Grpc<tonic::transport::Channel>) {
    let reply = unary(&mut client, "hi").await.unwrap();
    assert!(reply.starts_with("echo:hi timeout="), "{reply}");
    assert!(
        !reply.ends_with("timeout=none"),
        "grpc-timeout did not pass through: {reply}"
    );
    let err = unary(&mut client, "fail").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "asked to fail");
    assert_eq!(bidi(&mut client).await, ["bidi:a", "bidi:b", "bidi:c"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unary_and_bidi_through_h2c() {
    let backend = grpc_backend().await;
    let proxy = proxy_for(backend).await;
    exercise(h2c_client(&proxy).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unary_and_bidi_through_tls() {
    let backend = grpc_backend().await;
    let proxy = proxy_for(backend).await;
    exercise(tls_client(&proxy).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_backend_is_unavailable() {
    let dead: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = proxy_for(dead).await;
    for mut client in [h2c_client(&proxy).await, tls_client(&proxy).await] {
        let err = unary(&mut client, "hi").await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_and_plain_backends_in_one_route_are_detected() {
    let secure = TestBackend::start_tls("secure").await;
    let plain = TestBackend::start("plain").await;
    let doc = format!(
        "upstreams:\n  mixed.example.com:\n    paths:\n      \"/\":\n        servers: [\"{}\", \"{}\"]\n",
        secure.server(),
        plain.server()
    );
    let proxy = Proxy::start(&doc).await;
    let c = client();
    let mut seen = std::collections::HashMap::new();
    for _ in 0..10 {
        let (status, body) = get(&c, &proxy, "mixed.example.com", "/").await;
        assert_eq!(status, 200, "{body}");
        let echo = Echo::parse(&body);
        *seen.entry(echo.backend.clone()).or_insert(0) += 1;
    }
    assert_eq!(seen.get("secure"), Some(&5), "{seen:?}");
    assert_eq!(seen.get("plain"), Some(&5), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_verify_refuses_a_self_signed_backend() {
    let secure = TestBackend::start_tls("secure").await;
    let doc = format!(
        "upstreams:\n  v.example.com:\n    paths:\n      \"/\":\n        servers: [\"{s}\"]\n      \"/strict\":\n        tls_verify: true\n        servers: [\"{s}\"]\n",
        s = secure.server()
    );
    let proxy = Proxy::start(&doc).await;
    let c = client();
    assert_eq!(get(&c, &proxy, "v.example.com", "/").await.0, 200);
    assert_eq!(get(&c, &proxy, "v.example.com", "/strict").await.0, 502);
}

/// Issue 28 item 11: the UNAVAILABLE answer to a call whose backend is dead is one HEADERS
/// frame that ends the stream (Trailers-Only), not headers and then `RST_STREAM(CANCEL)`,
/// which grpcio's clients report as CANCELLED. Every call kind sends the same request head.
#[tokio::test(flavor = "multi_thread")]
async fn unreachable_backend_answers_trailers_only_over_h2c() {
    let dead: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = proxy_for(dead).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    for end_with_headers in [true, false] {
        let mut client = client.clone().ready().await.unwrap();
        let req = http::Request::post(format!("http://{HOST}/echo.Echo/Unary"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (resp, mut send) = client.send_request(req, end_with_headers).unwrap();
        if !end_with_headers {
            // One empty message, as a unary call sends it.
            send.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
                .unwrap();
        }
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["grpc-status"], "14");
        let mut body = resp.into_body();
        assert!(
            body.is_end_stream(),
            "the headers did not end the stream (a reset follows)"
        );
        assert!(body.data().await.is_none());
    }
}
