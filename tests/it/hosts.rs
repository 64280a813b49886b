//! Host selection through the real binary, as nginx picks a `server_name`: the exact name,
//! then the longest matching `*.` wildcard, then `default_host`; each keeps its own auth.

use crate::common;

use common::*;

fn host(name: &str, backend: &TestBackend, extra: &str) -> String {
    format!(
        "  \"{name}\":\n    paths:\n      \"/\":\n        servers: [\"{}\"]\n{extra}",
        backend.server()
    )
}

async fn status_with_key(proxy: &Proxy, host: &str, key: Option<&str>) -> (u16, String) {
    let mut req = client().get(proxy.url("/")).header("host", host);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let resp = req.send().await.expect("request failed");
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    let backend = if status == 200 {
        Echo::parse(&body).backend
    } else {
        body
    };
    (status, backend)
}

#[tokio::test(flavor = "multi_thread")]
async fn exact_then_longest_wildcard_then_default_host() {
    let exact = TestBackend::start("exact").await;
    let short = TestBackend::start("short").await;
    let long = TestBackend::start("long").await;
    let fallback = TestBackend::start("fallback").await;
    let guarded = "        authorization: {type: apikey, creds: long-key}\n";
    let fallback_auth = "        authorization: {type: apikey, creds: fallback-key}\n";
    let config = format!(
        "default_host: fallback.org\nupstreams:\n{}{}{}{}",
        host("a.example.com", &exact, ""),
        host("*.example.com", &short, ""),
        host("*.b.example.com", &long, guarded),
        host("fallback.org", &fallback, fallback_auth),
    );
    let proxy = Proxy::start(&config).await;
    let c = client();
    // Open routes.
    for (asked, want) in [
        ("a.example.com", "exact"),
        ("A.Example.com:80", "exact"),
        ("x.example.com", "short"),
        ("x.y.example.com", "short"),
        ("b.example.com", "short"),
    ] {
        assert_eq!(
            backend_of(&c, &proxy, asked, "/").await.as_deref(),
            Some(want),
            "{asked}"
        );
    }
    // The longer wildcard wins, with its own auth.
    assert_eq!(
        status_with_key(&proxy, "x.b.example.com", None).await.0,
        401
    );
    assert_eq!(
        status_with_key(&proxy, "x.b.example.com", Some("long-key")).await,
        (200, "long".to_string())
    );
    // Everything else goes to the default host, with the default host's auth.
    for asked in ["example.com", "unknown.net", "a.example.org"] {
        assert_eq!(status_with_key(&proxy, asked, None).await.0, 401, "{asked}");
        assert_eq!(
            status_with_key(&proxy, asked, Some("fallback-key")).await,
            (200, "fallback".to_string()),
            "{asked}"
        );
        assert_eq!(
            status_with_key(&proxy, asked, Some("long-key")).await.0,
            401,
            "{asked}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_default_host_unknown_hosts_get_404() {
    let short = TestBackend::start("short").await;
    let config = format!("upstreams:\n{}", host("*.example.com", &short, ""));
    let proxy = Proxy::start(&config).await;
    let c = client();
    assert_eq!(
        backend_of(&c, &proxy, "x.example.com", "/")
            .await
            .as_deref(),
        Some("short")
    );
    for asked in ["example.com", "other.org", "xexample.com"] {
        let (status, body) = get(&c, &proxy, asked, "/").await;
        assert_eq!(status, 404, "{asked}: {body}");
    }
}

#[test]
fn check_refuses_other_patterns_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.yaml"), "upstreams_conf: u.yaml\n").unwrap();
    std::fs::write(
        dir.path().join("u.yaml"),
        "default_host: nowhere.org\nupstreams:\n  \"*\":\n    paths: {\"/\": {servers: [\"127.0.0.1:1\"]}}\n  \"a*.com\":\n    paths: {\"/\": {servers: [\"127.0.0.1:1\"]}}\n  \"www.example.*\":\n    paths: {\"/\": {servers: [\"127.0.0.1:1\"]}}\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["-t", "-c"])
        .arg(dir.path().join("main.yaml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for want in [
        "u.yaml:1:15: default_host: \"nowhere.org\" is not one of the hosts",
        "u.yaml:3:3: upstreams.*: host \"*\": `*` alone is not a host",
        "u.yaml:5:3: upstreams.a*.com: host \"a*.com\": a wildcard is only `*.`",
        "u.yaml:7:3: upstreams.www.example.*: host \"www.example.*\": a wildcard is only `*.`",
    ] {
        assert!(stderr.contains(want), "expected {want:?} in:\n{stderr}");
    }
}
