//! Route authentication through the real binary: basic (plain and bcrypt), API key, JWT.

use crate::common;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::*;
use serde_json::json;

const KEY: &str = "master-key-for-auth-tests";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn call(
    c: &reqwest::Client,
    proxy: &Proxy,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = c.get(proxy.url(path)).header("host", "auth.example.com");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

/// One proxy with a route per auth kind.
async fn setup(backend: &TestBackend) -> Proxy {
    let hash = bcrypt::hash("bcrypt-pass", 4).unwrap();
    let s = backend.server();
    let doc = format!(
        r#"authorization:
  type: jwt
  creds: "{KEY}"
upstreams:
  auth.example.com:
    paths:
      "/":
        servers: ["{s}"]
      "/basic":
        servers: ["{s}"]
        authorization:
          type: basic
          creds: ["alice:wonderland", "bob:{hash}"]
      "/key":
        servers: ["{s}"]
        authorization: {{type: apikey, creds: "k-123"}}
      "/open":
        servers: ["{s}"]
        authorization: {{type: none}}
      "/down":
        servers: ["127.0.0.1:{dead}"]
        authorization: {{type: apikey, creds: "k-123"}}
"#,
        dead = free_port()
    );
    let options = ProxyOptions {
        main_extra: format!("master_key: {KEY}\n"),
        log_level: Some("debug"),
        ..Default::default()
    };
    Proxy::start_with(&doc, options).await
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth() {
    let b = TestBackend::start("b").await;
    let proxy = setup(&b).await;
    let c = client();
    let alice = format!("Basic {}", b64("alice:wonderland"));
    let (status, _, body) = call(&c, &proxy, "/basic/x", &[("authorization", &alice)]).await;
    assert_eq!(status, 200, "{body}");
    let echo = Echo::parse(&body);
    assert!(
        !echo.headers.contains_key("authorization"),
        "credentials reached the backend"
    );
    let bob = format!("Basic {}", b64("bob:bcrypt-pass"));
    assert_eq!(
        call(&c, &proxy, "/basic", &[("authorization", &bob)])
            .await
            .0,
        200
    );

    let (status, headers, body) = call(&c, &proxy, "/basic", &[]).await;
    assert_eq!(status, 401);
    assert_eq!(body, "missing credentials\n");
    assert_eq!(headers["www-authenticate"], "Basic realm=\"aralez\"");
    for wrong in ["alice:nope", "bob:wonderland", "eve:wonderland"] {
        let (status, headers, body) = call(
            &c,
            &proxy,
            "/basic",
            &[("authorization", &format!("Basic {}", b64(wrong)))],
        )
        .await;
        assert_eq!(status, 401, "{wrong}");
        assert_eq!(body, "invalid credentials\n");
        assert_eq!(headers["www-authenticate"], "Basic realm=\"aralez\"");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn api_key_auth() {
    let b = TestBackend::start("b").await;
    let proxy = setup(&b).await;
    let c = client();
    let (status, _, body) = call(&c, &proxy, "/key", &[("x-api-key", "k-123")]).await;
    assert_eq!(status, 200);
    assert!(!Echo::parse(&body).headers.contains_key("x-api-key"));
    let (status, _, body) = call(&c, &proxy, "/key", &[]).await;
    assert_eq!((status, body.as_str()), (401, "missing credentials\n"));
    let (status, _, body) = call(&c, &proxy, "/key", &[("x-api-key", "k-124")]).await;
    assert_eq!((status, body.as_str()), (401, "invalid credentials\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_auth_and_global_default() {
    let b = TestBackend::start("b").await;
    let proxy = setup(&b).await;
    let c = client();
    let good = hs256(KEY, json!({"owner": "t", "exp": now() + 300}));
    let bearer = format!("Bearer {good}");
    let (status, _, body) = call(&c, &proxy, "/page", &[("authorization", &bearer)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(!Echo::parse(&body).headers.contains_key("authorization"));

    // Token in the URL: accepted, and removed before the request goes upstream.
    let (status, _, body) = call(
        &c,
        &proxy,
        &format!("/page?a=1&araleztoken={good}&b=2"),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(Echo::parse(&body).path, "/page?a=1&b=2");

    let (status, _, body) = call(&c, &proxy, "/page", &[]).await;
    assert_eq!((status, body.as_str()), (401, "missing credentials\n"));

    let expired = hs256(KEY, json!({"owner": "t", "exp": now() - 5}));
    let wrong_secret = hs256("other", json!({"owner": "t", "exp": now() + 300}));
    let no_exp = hs256(KEY, json!({"owner": "t"}));
    let mut parts: Vec<String> = good.split('.').map(String::from).collect();
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"owner": "root", "exp": now() + 300}).to_string());
    let tampered = parts.join(".");
    let alg_none = format!(
        "{}.{}.",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"owner": "x", "exp": now() + 300}).to_string())
    );
    for (name, token) in [
        ("expired", expired),
        ("wrong secret", wrong_secret),
        ("no exp", no_exp),
        ("tampered", tampered),
        ("alg none", alg_none),
    ] {
        let (status, _, body) = call(
            &c,
            &proxy,
            "/page",
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (401, "invalid credentials\n"),
            "{name}"
        );
    }
    // Tokens are never logged.
    assert!(!proxy.log().contains(&good), "token in the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_not_yet_valid_are_refused_beyond_a_minute_of_leeway() {
    let b = TestBackend::start("b").await;
    let proxy = setup(&b).await;
    let c = client();
    let exp = now() + 3600;
    for (name, claims, expected) in [
        (
            "nbf in an hour",
            json!({"owner": "t", "exp": exp, "nbf": now() + 600}),
            401,
        ),
        (
            "iat in an hour",
            json!({"owner": "t", "exp": exp, "iat": now() + 600}),
            401,
        ),
        (
            "nbf not a number",
            json!({"owner": "t", "exp": exp, "nbf": "0"}),
            401,
        ),
        (
            "nbf 30 s ahead",
            json!({"owner": "t", "exp": exp, "nbf": now() + 30}),
            200,
        ),
        (
            "iat 30 s ahead",
            json!({"owner": "t", "exp": exp, "iat": now() + 30}),
            200,
        ),
        (
            "nbf and iat past",
            json!({"owner": "t", "exp": exp, "nbf": now() - 5, "iat": now() - 5}),
            200,
        ),
    ] {
        let bearer = format!("Bearer {}", hs256(KEY, claims));
        let (status, _, body) = call(&c, &proxy, "/page", &[("authorization", &bearer)]).await;
        assert_eq!(status, expected, "{name}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn minted_token_opens_a_jwt_route() {
    let b = TestBackend::start("b").await;
    let proxy = setup(&b).await;
    let c = client();
    let resp: serde_json::Value = c
        .post(proxy.api_url("/jwt"))
        .body(format!(
            r#"{{"master_key":"{KEY}","owner":"ci","valid":5}}"#
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = resp["token"].as_str().unwrap();
    let (status, _, body) = call(
        &c,
        &proxy,
        "/",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn overrides_open_paths_and_down_routes() {
    let b = TestBackend::start("b").await;
    let proxy = setup(&b).await;
    let c = client();
    // type: none opens a path despite the global jwt.
    assert_eq!(call(&c, &proxy, "/open/x", &[]).await.0, 200);
    // A path's own auth replaces the global one: a valid JWT does not open /key.
    let good = hs256(KEY, json!({"owner": "t", "exp": now() + 300}));
    assert_eq!(
        call(
            &c,
            &proxy,
            "/key",
            &[("authorization", &format!("Bearer {good}"))]
        )
        .await
        .0,
        401
    );
    // Auth belongs to the route: with every backend down it still asks for credentials.
    assert_eq!(call(&c, &proxy, "/down", &[]).await.0, 401);
    assert_eq!(
        call(&c, &proxy, "/down", &[("x-api-key", "k-123")]).await.0,
        502
    );
}

/// Sends a raw HTTP/1.1 request line for `target` and returns the status code.
async fn raw_status(proxy: &Proxy, target: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    let req =
        format!("GET {target} HTTP/1.1\r\nHost: auth.example.com\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn dot_segments_cannot_escape_into_an_open_route() {
    let b = TestBackend::start("b").await;
    let proxy = setup(&b).await;
    // `/open` is open and `/key` needs an API key: no spelling of `/key` gets through `/open`.
    for target in [
        "/open/../key",
        "/open/%2e%2e/key",
        "/open/%2E%2E/key/x",
        "/open%2f..%2fkey",
        "/open/./../key",
        "//key",
    ] {
        assert_eq!(raw_status(&proxy, target).await, 401, "{target}");
    }
    assert_eq!(raw_status(&proxy, "/open/x").await, 200);
}

/// Sends a raw HTTP/1.1 request and returns the status code (0 when there is none).
async fn raw_request_status(proxy: &Proxy, request: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_request_shape_passes_a_protected_route_without_credentials() {
    let b = TestBackend::start("b").await;
    let proxy = setup(&b).await;
    // HTTP/1.1, every method.
    let h1 = client();
    for method in ["GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = h1
            .request(m, proxy.url("/key/x"))
            .header("host", "auth.example.com")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "h1 {method}");
    }
    // HTTP/2 with prior knowledge on the plain listener, routed by :authority.
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .resolve(
            "auth.example.com",
            std::net::SocketAddr::from(([127, 0, 0, 1], proxy.port)),
        )
        .build()
        .unwrap();
    for method in ["GET", "HEAD", "OPTIONS", "POST"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let url = format!("http://auth.example.com:{}/key/x", proxy.port);
        let resp = h2.request(m, &url).send().await.unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status(), 401, "h2 {method}");
    }
    // A WebSocket upgrade, an absolute-form target, encoded spellings, OPTIONS *.
    let upgrade = "GET /key/ws HTTP/1.1\r\nHost: auth.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(raw_request_status(&proxy, upgrade).await, 401);
    let absolute = "GET http://auth.example.com/key/x HTTP/1.1\r\nHost: auth.example.com\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_request_status(&proxy, absolute).await, 401);
    // Pingora refuses a Host that differs from the target's authority.
    let mismatch = "GET http://auth.example.com/key/x HTTP/1.1\r\nHost: other.example.com\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_request_status(&proxy, mismatch).await, 400);
    for target in ["/%6bey/x", "/KEY/x", "/key%2fx", "/open/..%2fkey"] {
        assert_ne!(raw_status(&proxy, target).await, 200, "{target}");
    }
    let options = "OPTIONS * HTTP/1.1\r\nHost: auth.example.com\r\nConnection: close\r\n\r\n";
    assert_ne!(raw_request_status(&proxy, options).await, 200);
    assert_eq!(
        b.served(),
        0,
        "a request without credentials reached the backend"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_to_https_never_skips_authentication() {
    let b = TestBackend::start("b").await;
    let doc = format!(
        "upstreams:\n  auth.example.com:\n    paths:\n      \"/\":\n        to_https: true\n        servers: [\"{}\"]\n        authorization: {{type: apikey, creds: \"k-123\"}}\n",
        b.server()
    );
    let options = ProxyOptions {
        tls: true,
        ..Default::default()
    };
    let proxy = Proxy::start_with(&doc, options).await;
    let plain = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = plain
        .get(proxy.url("/x"))
        .header("host", "auth.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 301);
    let tls = tls_h1_client();
    let url = format!("https://localhost:{}/x", proxy.tls_port.unwrap());
    let resp = tls
        .get(&url)
        .header("host", "auth.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(b.served(), 0);
    let resp = tls
        .get(&url)
        .header("host", "auth.example.com")
        .header("x-api-key", "k-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
