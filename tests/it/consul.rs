//! The Consul provider against a Consul API double: a small HTTP server implementing
//! `/v1/health/service/<name>` with the documented JSON shape, `passing`, `X-Consul-Index`,
//! blocking queries and an optional ACL token. (No `consul` binary is installable here, so
//! these tests use the double.)

use crate::common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::consul::ConsulDouble;
use common::*;

fn consul_doc(servers: &[&str], token: Option<&str>, extra_static: &str) -> String {
    let servers: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    let token = token
        .map(|t| format!("  token: \"{t}\"\n"))
        .unwrap_or_default();
    format!(
        "provider: consul\nconsul:\n  servers: [{}]\n{token}  services:\n    - proxy: web.example.com\n      real: web\n{extra_static}",
        servers.join(", ")
    )
}

async fn who(c: &reqwest::Client, proxy: &Proxy, host: &str) -> (u16, String) {
    let (status, body) = get(c, proxy, host, "/").await;
    (status, Echo::parse(&body).backend)
}

/// Waits until requests to web.example.com reach exactly the backends in `names`.
async fn serves_exactly(proxy: &Proxy, names: &[&str]) {
    let c = client();
    let want: std::collections::BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
    wait_for(
        Duration::from_secs(10),
        &format!("traffic to exactly {names:?}"),
        || {
            let (c, want) = (c.clone(), want.clone());
            async move {
                let mut seen = std::collections::BTreeSet::new();
                for _ in 0..(names.len() * 4).max(4) {
                    let (status, backend) = who(&c, proxy, "web.example.com").await;
                    if status != 200 {
                        return None;
                    }
                    seen.insert(backend);
                }
                (seen == want).then_some(())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_follow_registration_and_static_routes_stay() {
    let consul = ConsulDouble::start(None).await;
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let s = TestBackend::start("static").await;
    consul.register("web", &a, "127.0.0.1");
    consul.register("web", &b, "127.0.0.1");
    let static_routes = format!(
        "upstreams:\n  static.example.com:\n    paths:\n      \"/\":\n        servers: [\"{}\"]\n",
        s.server()
    );
    let proxy = Proxy::start(&consul_doc(&[&consul.url], None, &static_routes)).await;
    serves_exactly(&proxy, &["a", "b"]).await;
    assert_eq!(
        who(&client(), &proxy, "static.example.com").await,
        (200, "static".into())
    );
    let applied = |text: &str| {
        sample(
            text,
            "aralez_config_reloads_total{result=\"applied\",source=\"consul\"}",
        )
        .unwrap_or(0.0)
    };
    let before = applied(&metrics(&proxy).await);
    assert!(before >= 1.0, "discovery is counted with the other writes");
    consul.deregister("web", &b);
    serves_exactly(&proxy, &["a"]).await;
    assert!(applied(&metrics(&proxy).await) > before);
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_service_address_uses_the_node_address() {
    let consul = ConsulDouble::start(None).await;
    let a = TestBackend::start("a").await;
    consul.register("web", &a, "");
    let proxy = Proxy::start(&consul_doc(&[&consul.url], None, "")).await;
    serves_exactly(&proxy, &["a"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn token_is_sent_and_its_absence_reported() {
    let consul = ConsulDouble::start(Some("s3cret")).await;
    let a = TestBackend::start("a").await;
    consul.register("web", &a, "127.0.0.1");
    let with = Proxy::start(&consul_doc(&[&consul.url], Some("s3cret"), "")).await;
    serves_exactly(&with, &["a"]).await;
    let without = Proxy::start(&consul_doc(&[&consul.url], None, "")).await;
    wait_for(
        Duration::from_secs(5),
        "the ACL error in the log",
        || async {
            without
                .log()
                .contains("HTTP 403 Forbidden: ACL not found")
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        get(&client(), &without, "web.example.com", "/").await.0,
        503
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn second_server_is_used_and_last_known_instances_survive() {
    let consul = ConsulDouble::start(None).await;
    let a = TestBackend::start("a").await;
    consul.register("web", &a, "127.0.0.1");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let proxy = Proxy::start(&consul_doc(&[&dead, &consul.url], None, "")).await;
    serves_exactly(&proxy, &["a"]).await;
    // Answers that are not JSON: the last known instances stay.
    consul.state.malformed.store(true, Ordering::SeqCst);
    consul.state.index.send_modify(|i| *i += 1);
    wait_for(
        Duration::from_secs(5),
        "the bad answer in the log",
        || async { proxy.log().contains("unexpected answer").then_some(()) },
    )
    .await;
    serves_exactly(&proxy, &["a"]).await;
    // Every server down: still the last known instances.
    drop(consul);
    serves_exactly(&proxy, &["a"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_instance_means_503_until_one_appears() {
    let consul = ConsulDouble::start(None).await;
    let proxy = Proxy::start(&consul_doc(&[&consul.url], None, "")).await;
    let c = client();
    let (status, body) = get(&c, &proxy, "web.example.com", "/").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no instance"), "{body}");
    let a = TestBackend::start("a").await;
    consul.register("web", &a, "127.0.0.1");
    serves_exactly(&proxy, &["a"]).await;
}

#[test]
fn a_host_both_static_and_discovered_is_an_error() {
    let doc = consul_doc(
        &["http://127.0.0.1:8500"],
        None,
        "upstreams:\n  web.example.com:\n    paths:\n      \"/\":\n        servers: [\"127.0.0.1:1\"]\n",
    );
    let err =
        aralez::config::UpstreamsConfig::parse(&doc, "u.yaml", Default::default()).unwrap_err();
    assert!(
        err.to_string().contains("is also listed under upstreams"),
        "{err}"
    );
}
