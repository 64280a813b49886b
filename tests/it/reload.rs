//! Hot reload of upstreams.yaml through the real binary: new routes go live, bad files are
//! refused with the old table kept, and reloading never fails a request.

use crate::common;

use std::time::{Duration, Instant};

use common::*;

/// Generous bound for a change to go live. The target (within 1 s: 200 ms debounce plus the
/// apply) is a speed figure: `live_within` returns the time taken, which the tests print.
const LIVE_DEADLINE: Duration = Duration::from_secs(5);

/// Waits until `host/path` is served by `want`, returning how long that took.
async fn live_within(
    proxy: &Proxy,
    host: &str,
    path: &str,
    want: &str,
    deadline: Duration,
) -> Duration {
    let c = client();
    let start = Instant::now();
    wait_for(
        deadline,
        &format!("{host}{path} to reach {want}"),
        || async {
            (backend_of(&c, proxy, host, path).await.as_deref() == Some(want)).then_some(())
        },
    )
    .await;
    start.elapsed()
}

fn two_routes(a: &TestBackend, b: &TestBackend) -> String {
    format!(
        "upstreams:\n  r.example.com:\n    paths:\n      \"/\":\n        servers: [\"{}\"]\n      \"/new\":\n        servers: [\"{}\"]\n",
        a.server(),
        b.server()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn new_route_is_live_within_a_second() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let proxy = Proxy::start(&single_route("r.example.com", &[&a])).await;
    let c = client();
    assert_eq!(
        backend_of(&c, &proxy, "r.example.com", "/new")
            .await
            .as_deref(),
        Some("a")
    );
    // In-place rewrite (truncate + write), as `echo > file` does.
    std::fs::write(proxy.upstreams_path(), two_routes(&a, &b)).unwrap();
    let took = live_within(&proxy, "r.example.com", "/new", "b", LIVE_DEADLINE).await;
    eprintln!("new route live after {took:?}");
    proxy.log_once_it_holds("generation 2").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_file_keeps_the_old_routes() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let proxy = Proxy::start(&single_route("r.example.com", &[&a])).await;
    let c = client();
    let broken = format!(
        "upstreams:\n  r.example.com:\n    paths:\n      \"/\":\n        servers: [\"{}\", \"10.0.0.1\"]\n",
        b.server()
    );
    write_atomic(&proxy.upstreams_path(), &broken);
    let log = wait_for(
        Duration::from_secs(5),
        "the reload error in the log",
        || async {
            let log = proxy.log();
            log.contains("reload of").then_some(log)
        },
    )
    .await;
    let column = broken.lines().nth(4).unwrap().find("\"10.0.0.1\"").unwrap() + 1;
    let expected = format!(
        "upstreams.yaml:5:{column}: upstreams.r.example.com.paths./.servers[1]: \"10.0.0.1\" has no port"
    );
    assert!(log.contains(&expected), "{expected} not in:\n{log}");
    assert!(log.contains("generation 1 stays live"), "{log}");
    for _ in 0..20 {
        assert_eq!(
            backend_of(&c, &proxy, "r.example.com", "/")
                .await
                .as_deref(),
            Some("a")
        );
    }
    // Syntax errors too, and an emptied file (a truncation, or a save caught half-way), which
    // is refused rather than taken as "no routes".
    for (text, error) in [
        ("upstreams: [\n", "invalid YAML"),
        ("# being rewritten\n", "the document is empty"),
    ] {
        write_atomic(&proxy.upstreams_path(), text);
        wait_for(Duration::from_secs(5), error, || async {
            proxy.log().contains(error).then_some(())
        })
        .await;
        assert_eq!(
            backend_of(&c, &proxy, "r.example.com", "/")
                .await
                .as_deref(),
            Some("a"),
            "after {text:?}"
        );
    }
    // And a fixed file is taken again.
    write_atomic(
        &proxy.upstreams_path(),
        &single_route("r.example.com", &[&b]),
    );
    live_within(&proxy, "r.example.com", "/", "b", LIVE_DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn other_files_in_the_folder_do_not_reapply_an_invalid_file() {
    let a = TestBackend::start("a").await;
    let proxy = Proxy::start(&single_route("r.example.com", &[&a])).await;
    let failures = "aralez_config_reloads_total{result=\"error\",source=\"file\"}";
    let reported = "reload of";
    write_atomic(&proxy.upstreams_path(), "upstreams: [\n");
    wait_for(Duration::from_secs(5), "the reload failure", || async {
        (sample(&metrics(&proxy).await, failures) == Some(1.0)).then_some(())
    })
    .await;
    // Neighbours change, in bursts the watcher takes one by one (debounce: 200 ms). The
    // proxy's own log is in this folder too.
    let folder = proxy.upstreams_path().parent().unwrap().to_path_buf();
    for i in 0..3 {
        std::fs::write(folder.join("neighbour.txt"), format!("{i}")).unwrap();
        write_atomic(&folder.join("other.yaml"), &format!("n: {i}\n"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A valid file then goes live: every event before it has been handled.
    write_atomic(
        &proxy.upstreams_path(),
        &single_route("r2.example.com", &[&a]),
    );
    live_within(&proxy, "r2.example.com", "/", "a", LIVE_DEADLINE).await;
    let log = proxy.log();
    assert_eq!(log.matches(reported).count(), 1, "{log}");
    assert_eq!(sample(&metrics(&proxy).await, failures), Some(1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn editor_style_save_is_seen() {
    // Editors write a temporary file and rename it over the original (vim, sed -i).
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let proxy = Proxy::start(&single_route("r.example.com", &[&a])).await;
    let path = proxy.upstreams_path();
    let tmp = path.with_file_name(".upstreams.yaml.swp");
    std::fs::write(&tmp, single_route("r.example.com", &[&b])).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    live_within(&proxy, "r.example.com", "/", "b", LIVE_DEADLINE).await;
    // The watch survives the rename: a second save is seen too.
    std::fs::write(&tmp, single_route("r.example.com", &[&a])).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    live_within(&proxy, "r.example.com", "/", "a", LIVE_DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn burst_of_writes_ends_with_the_last_content() {
    let backends: Vec<TestBackend> = {
        let mut v = Vec::new();
        for i in 0..20 {
            v.push(TestBackend::start(&format!("b{i}")).await);
        }
        v
    };
    let proxy = Proxy::start(&single_route("r.example.com", &[&backends[0]])).await;
    // One change seen live first: the watch is set (a burst that began before it would be
    // read once when the watch starts and once more after the burst).
    std::fs::write(
        proxy.upstreams_path(),
        single_route("r.example.com", &[&backends[1]]),
    )
    .unwrap();
    live_within(&proxy, "r.example.com", "/", "b1", LIVE_DEADLINE).await;
    for b in &backends[2..] {
        std::fs::write(proxy.upstreams_path(), single_route("r.example.com", &[b])).unwrap();
    }
    live_within(&proxy, "r.example.com", "/", "b19", LIVE_DEADLINE).await;
    // The burst settled into a single reload of the final content.
    let log = proxy.log_once_it_holds("generation 3").await;
    assert_eq!(log.matches("reloaded ").count(), 2, "{log}");
    assert!(!log.contains("generation 4"), "{log}");
    let c = client();
    for _ in 0..10 {
        assert_eq!(
            backend_of(&c, &proxy, "r.example.com", "/")
                .await
                .as_deref(),
            Some("b19")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_content_makes_no_new_generation() {
    let a = TestBackend::start("a").await;
    let text = single_route("r.example.com", &[&a]);
    let options = ProxyOptions {
        log_level: Some("debug"),
        ..Default::default()
    };
    let proxy = Proxy::start_with(&text, options).await;
    write_atomic(&proxy.upstreams_path(), &text);
    let log = wait_for(
        Duration::from_secs(5),
        "the watcher to read the file",
        || async {
            let log = proxy.log();
            log.contains("unchanged, still generation 1").then_some(log)
        },
    )
    .await;
    assert!(!log.contains("generation 2"), "{log}");
    assert!(!log.contains("reloaded "), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_reloads_under_load_fail_no_request() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let proxy = Proxy::start(&single_route("r.example.com", &[&a])).await;
    let load = Load::start(8, proxy.url("/"), "r.example.com");
    for i in 0..50 {
        // Alternate backends so that every write is a real change, and wait until it is live.
        let (target, name) = if i % 2 == 0 { (&b, "b") } else { (&a, "a") };
        write_atomic(
            &proxy.upstreams_path(),
            &single_route("r.example.com", &[target]),
        );
        live_within(&proxy, "r.example.com", "/", name, Duration::from_secs(5)).await;
    }
    let served = load.ok();
    load.finish_without_failures().await;
    assert!(served > 100, "too few requests made to mean anything");
    proxy.log_once_it_holds("generation 51").await;
}
