//! WebSocket through the plain and the TLS listener: echo, idle sockets, auth and headers.

use crate::common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Downstream read timeout set low, so that an idle socket outlives it quickly.
const READ_TIMEOUT_SECS: u64 = 1;

async fn proxy(b: &TestBackend) -> Proxy {
    let doc = format!(
        "upstreams:\n  ws.example.com:\n    paths:\n      \"/\":\n        servers: [\"{s}\"]\n        headers: [\"X-Proxy-From: aralez\"]\n      \"/__ws/locked\":\n        servers: [\"{s}\"]\n        authorization: {{type: apikey, creds: sesame}}\n",
        s = b.server()
    );
    let options = ProxyOptions {
        tls: true,
        main_extra: format!("client_read_timeout: {READ_TIMEOUT_SECS}\n"),
        ..Default::default()
    };
    Proxy::start_with(&doc, options).await
}

fn request(
    url: &str,
    headers: &[(&'static str, &str)],
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("host", "ws.example.com".parse().unwrap());
    for (k, v) in headers {
        req.headers_mut().insert(*k, v.parse().unwrap());
    }
    req
}

async fn exercise<S>(mut ws: tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let hello = ws.next().await.unwrap().unwrap();
    assert_eq!(
        hello,
        Message::Text("hello from ws, x-proxy-from=aralez".into())
    );
    ws.send(Message::Text("ping 1".into())).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Text("ping 1".into())
    );
    // Idle for longer than the client read timeout: the socket must survive.
    tokio::time::sleep(Duration::from_secs(READ_TIMEOUT_SECS * 2 + 1)).await;
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Binary(vec![1, 2, 3].into())
    );
    ws.close(None).await.unwrap();
    // The close frame comes back through the proxy.
    let mut seen = Vec::new();
    while let Some(item) = ws.next().await {
        seen.push(format!("{item:?}"));
    }
    assert!(
        seen.iter().any(|m| m.starts_with("Ok(Close")),
        "no close frame came back: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_and_idle_survival_on_the_plain_listener() {
    let b = TestBackend::start("ws").await;
    let proxy = proxy(&b).await;
    let url = format!("ws://127.0.0.1:{}/__ws", proxy.port);
    let (ws, resp) = tokio_tungstenite::connect_async(request(&url, &[]))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    exercise(ws).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_and_idle_survival_on_the_tls_listener() {
    let b = TestBackend::start("ws").await;
    let proxy = proxy(&b).await;
    let url = format!("wss://127.0.0.1:{}/__ws", proxy.tls_port.unwrap());
    let tls = native_tls::TlsConnector::builder()
        .danger_accept_invalid_certs(true)
        .danger_accept_invalid_hostnames(true)
        .build()
        .unwrap();
    let (ws, resp) = tokio_tungstenite::connect_async_tls_with_config(
        request(&url, &[]),
        None,
        false,
        Some(tokio_tungstenite::Connector::NativeTls(tls)),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 101);
    exercise(ws).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn route_auth_applies_to_the_upgrade() {
    let b = TestBackend::start("ws").await;
    let proxy = proxy(&b).await;
    let url = format!("ws://127.0.0.1:{}/__ws/locked", proxy.port);
    match tokio_tungstenite::connect_async(request(&url, &[])).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|(_, r)| r.status())),
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(request(&url, &[("x-api-key", "sesame")]))
        .await
        .unwrap();
    let first = ws.next().await;
    assert!(
        matches!(first, Some(Ok(Message::Text(_)))),
        "{first:?}\n{}",
        proxy.log()
    );
}
