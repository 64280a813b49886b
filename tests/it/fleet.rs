//! Fleet mode: instances share upstreams.yaml through a Consul KV key (the Consul API double).

use crate::common;

use std::time::Duration;

use common::consul::ConsulDouble;
use common::*;

const KEY: &str = "aralez/test/upstreams.yaml";
const MASTER: &str = "fleet-key";

async fn instance(consul: &ConsulDouble, doc: &str) -> Proxy {
    let options = ProxyOptions {
        main_extra: format!(
            "master_key: {MASTER}\ncluster:\n  consul: \"{}\"\n  key: {KEY}\n",
            consul.url
        ),
        ..Default::default()
    };
    Proxy::start_with(doc, options).await
}

/// Waits until the instance's watch has read the key (before that, a push is refused with
/// 409: the instance cannot know which value it would replace).
async fn synced(proxy: &Proxy) {
    wait_for(
        Duration::from_secs(10),
        "the key watch to connect",
        || async move {
            let s = status(proxy, MASTER).await?;
            (s["cluster"]["connected"] == true && s["cluster"]["index"].as_u64()? > 0).then_some(())
        },
    )
    .await;
}

/// `n` instances on the key (which must hold `doc`), each serving `first` and synced.
async fn fleet_of(n: usize, consul: &ConsulDouble, doc: &str, first: &str) -> Vec<Proxy> {
    let mut fleet = Vec::new();
    for _ in 0..n {
        let p = instance(consul, doc).await;
        serves(&p, first).await;
        synced(&p).await;
        fleet.push(p);
    }
    fleet
}

async fn push(proxy: &Proxy, doc: &str) -> (u16, String) {
    let resp = client()
        .post(proxy.api_url(&format!("/conf?key={MASTER}")))
        .body(doc.to_string())
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

async fn serves(proxy: &Proxy, name: &str) {
    let c = client();
    wait_for(
        Duration::from_secs(10),
        &format!("{name} to be served"),
        || {
            let c = c.clone();
            async move {
                let (status, body) = get(&c, proxy, "f.example.com", "/").await;
                (status == 200 && Echo::parse(&body).backend == name).then_some(())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_reaches_every_instance() {
    let consul = ConsulDouble::start(None).await;
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let doc_a = single_route("f.example.com", &[&a]);
    consul.put_kv(KEY, &doc_a);
    let fleet = fleet_of(3, &consul, &doc_a, "a").await;
    let (code, body) = push(&fleet[0], &single_route("f.example.com", &[&b])).await;
    assert_eq!(code, 200, "{body}");
    for p in &fleet {
        serves(p, "b").await;
    }
    let state = status(&fleet[1], MASTER).await.unwrap();
    assert_eq!(state["cluster"]["key"], KEY);
    assert_eq!(state["cluster"]["connected"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pushes_one_wins_and_all_converge() {
    let consul = ConsulDouble::start(None).await;
    let a = TestBackend::start("a").await;
    let c1 = TestBackend::start("c1").await;
    let c2 = TestBackend::start("c2").await;
    let doc_a = single_route("f.example.com", &[&a]);
    consul.put_kv(KEY, &doc_a);
    let fleet = fleet_of(3, &consul, &doc_a, "a").await;
    // Watchers do not see the first push before the second is made: a real race.
    consul.set_frozen(true);
    let first = push(&fleet[0], &single_route("f.example.com", &[&c1])).await;
    let second = push(&fleet[1], &single_route("f.example.com", &[&c2])).await;
    consul.set_frozen(false);
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(second.0, 409, "{}", second.1);
    assert!(second.1.contains("retry"), "{}", second.1);
    for p in &fleet {
        serves(p, "c1").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_value_in_the_key_is_ignored() {
    let consul = ConsulDouble::start(None).await;
    let a = TestBackend::start("a").await;
    let doc_a = single_route("f.example.com", &[&a]);
    consul.put_kv(KEY, &doc_a);
    let fleet = [
        instance(&consul, &doc_a).await,
        instance(&consul, &doc_a).await,
    ];
    consul.put_kv(
        KEY,
        "upstreams:\n  f.example.com:\n    paths:\n      \"/\":\n        servers: [\"nope\"]\n",
    );
    for p in &fleet {
        wait_for(
            Duration::from_secs(10),
            "the invalid value to be reported",
            || async {
                p.log()
                    .contains("invalid value in consul key")
                    .then_some(())
            },
        )
        .await;
        serves(p, "a").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn consul_outage_keeps_serving_and_caches_the_last_value() {
    let consul = ConsulDouble::start(None).await;
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let c = TestBackend::start("c").await;
    let doc_a = single_route("f.example.com", &[&a]);
    consul.put_kv(KEY, &doc_a);
    let mut fleet = [
        instance(&consul, &doc_a).await,
        instance(&consul, &doc_a).await,
    ];
    assert_eq!(
        push(&fleet[0], &single_route("f.example.com", &[&b]))
            .await
            .0,
        200
    );
    for p in &fleet {
        serves(p, "b").await;
    }
    // Consul goes away: serving goes on, pushes are refused with nothing changed.
    let (state, addr) = (consul.state.clone(), consul.addr);
    drop(consul);
    let (status, body) = push(&fleet[0], &single_route("f.example.com", &[&c])).await;
    assert_eq!(status, 503, "{body}");
    serves(&fleet[1], "b").await;
    // Restarted while Consul is down: the cached copy is served.
    fleet[1].restart().await;
    serves(&fleet[1], "b").await;
    // Consul is back: the watch resumes and pushes work again.
    let _consul = ConsulDouble::serve(state, addr).await;
    let doc_c = single_route("f.example.com", &[&c]);
    let first = &fleet[0];
    wait_for(
        Duration::from_secs(15),
        "a push to succeed again",
        || async { (push(first, &doc_c).await.0 == 200).then_some(()) },
    )
    .await;
    for p in &mut fleet {
        serves(p, "c").await;
    }
}
