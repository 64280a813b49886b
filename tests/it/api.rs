//! The config API: POST /conf, POST /jwt, GET /status, plain and over HTTPS.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const KEY: &str = "test-master-key-0123";

fn with_key() -> ProxyOptions {
    ProxyOptions {
        main_extra: format!("master_key: {KEY}\n"),
        ..Default::default()
    }
}

async fn push(c: &reqwest::Client, proxy: &Proxy, body: &str) -> (u16, Value) {
    let resp = c
        .post(proxy.api_url(&format!("/conf?key={KEY}")))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn served_by(c: &reqwest::Client, proxy: &Proxy, host: &str) -> Option<String> {
    let (status, body) = get(c, proxy, host, "/").await;
    (status == 200).then(|| Echo::parse(&body).backend)
}

/// A refused push changed nothing: `host` is still served by `backend`, the file still holds
/// `saved`.
async fn assert_nothing_changed(
    c: &reqwest::Client,
    proxy: &Proxy,
    host: &str,
    backend: &str,
    saved: &str,
) {
    assert_eq!(served_by(c, proxy, host).await.as_deref(), Some(backend));
    assert_eq!(
        std::fs::read_to_string(proxy.upstreams_path()).unwrap(),
        saved
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn push_applies_persists_and_is_not_reloaded_again() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let options = ProxyOptions {
        log_level: Some("debug"),
        ..with_key()
    };
    let proxy = Proxy::start_with(&single_route("p.example.com", &[&a]), options).await;
    let c = client();
    let doc = single_route("p.example.com", &[&b]);
    let (status, json) = push(&c, &proxy, &doc).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["status"], "applied");
    assert_eq!(json["generation"], 2);
    assert_eq!(json["hosts"], 1);
    assert_eq!(json["routes"], 1);
    assert_eq!(json["backends"], 1);
    // Live as soon as the answer came.
    assert_eq!(
        served_by(&c, &proxy, "p.example.com").await.as_deref(),
        Some("b")
    );
    assert_eq!(
        std::fs::read_to_string(proxy.upstreams_path()).unwrap(),
        doc
    );
    // The watcher sees the write but finds it identical to the live table.
    let log = wait_for(
        Duration::from_secs(5),
        "the watcher to see the pushed file",
        || async {
            let log = proxy.log();
            log.contains("unchanged, still generation 2").then_some(log)
        },
    )
    .await;
    assert!(!log.contains("generation 3"), "{log}");
    // The key may also come as a header.
    let resp = c
        .post(proxy.api_url("/conf"))
        .header("x-api-key", KEY)
        .body(single_route("p.example.com", &[&a]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        served_by(&c, &proxy, "p.example.com").await.as_deref(),
        Some("a")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_push_changes_nothing() {
    let a = TestBackend::start("a").await;
    let proxy = Proxy::start_with(&single_route("p.example.com", &[&a]), with_key()).await;
    let before = std::fs::read_to_string(proxy.upstreams_path()).unwrap();
    let c = client();
    let (status, json) = push(
        &c,
        &proxy,
        "upstreams:\n  p.example.com:\n    paths:\n      \"/\":\n        servers: [\"10.0.0.1\"]\n",
    )
    .await;
    assert_eq!(status, 400);
    let error = json["error"].as_str().unwrap();
    assert!(error.contains("request body:5:19: upstreams.p.example.com.paths./.servers[0]: \"10.0.0.1\" has no port"), "{error}");
    let (status, json) = push(&c, &proxy, "upstreams: [\n").await;
    assert_eq!(status, 400);
    assert!(
        json["error"].as_str().unwrap().contains("invalid YAML"),
        "{json}"
    );
    assert_nothing_changed(&c, &proxy, "p.example.com", "a", &before).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn json_documents_are_accepted_and_checked_like_yaml() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let proxy = Proxy::start_with(&single_route("p.example.com", &[&a]), with_key()).await;
    let c = client();
    let doc = format!(
        r#"{{"upstreams": {{"p.example.com": {{"paths": {{"/": {{"servers": ["{}"]}}}}}}}}}}"#,
        b.addr
    );
    let (status, json) = push(&c, &proxy, &doc).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["generation"], 2);
    assert_eq!(
        served_by(&c, &proxy, "p.example.com").await.as_deref(),
        Some("b")
    );
    // Errors in a JSON document name the line and column, and change nothing.
    let bad = "{\"upstreams\": {\"p.example.com\": {\"paths\": {\"/\":\n  {\"servers\": [\"10.0.0.1\"]}}}}}";
    let (status, json) = push(&c, &proxy, bad).await;
    assert_eq!(status, 400);
    let error = json["error"].as_str().unwrap();
    assert!(
        error.contains("request body:2:16: upstreams.p.example.com.paths./.servers[0]: \"10.0.0.1\" has no port"),
        "{error}"
    );
    let (status, json) = push(&c, &proxy, "{\"upstreams\": {\"p.example.com\":\n").await;
    assert_eq!(status, 400);
    assert!(
        json["error"].as_str().unwrap().contains("request body:"),
        "{json}"
    );
    assert_nothing_changed(&c, &proxy, "p.example.com", "b", &doc).await;
}

/// Plain YAML is read by the fast reader; a document with anchors by serde_yaml. Both go
/// live the same way, and a duplicate key is refused at the second, naming the first.
#[tokio::test(flavor = "multi_thread")]
async fn yaml_read_by_either_reader_goes_live() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let proxy = Proxy::start_with(&single_route("p.example.com", &[&a]), with_key()).await;
    let c = client();
    let anchored = format!(
        "upstreams:\n  p.example.com:\n    paths:\n      /: &route\n        servers: [\"{}\"]\n  q.example.com:\n    paths:\n      /: *route\n",
        b.addr
    );
    let (status, json) = push(&c, &proxy, &anchored).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["hosts"], 2, "{json}");
    for host in ["p.example.com", "q.example.com"] {
        assert_eq!(served_by(&c, &proxy, host).await.as_deref(), Some("b"));
    }
    let plain = format!(
        "upstreams:\n  p.example.com:\n    paths:\n      /:\n        servers: [{}]\n",
        a.addr
    );
    let (status, json) = push(&c, &proxy, &plain).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["hosts"], 1, "{json}");
    assert_eq!(
        served_by(&c, &proxy, "p.example.com").await.as_deref(),
        Some("a")
    );
    let duplicate = format!("{plain}  p.example.com:\n    paths: {{}}\n");
    let (status, json) = push(&c, &proxy, &duplicate).await;
    assert_eq!(status, 400);
    let error = json["error"].as_str().unwrap();
    assert_eq!(
        error,
        "request body:6:3: upstreams: \"p.example.com\" is written twice in this mapping \
         (first at line 2, column 3); keys must be unique"
    );
    assert_nothing_changed(&c, &proxy, "p.example.com", "a", &plain).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_methods_and_size_limits() {
    let a = TestBackend::start("a").await;
    let doc = single_route("p.example.com", &[&a]);
    let proxy = Proxy::start_with(&doc, with_key()).await;
    let c = client();
    let resp = c
        .post(proxy.api_url("/conf"))
        .body(doc.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "no key");
    let resp = c
        .post(proxy.api_url("/conf?key=wrong"))
        .body(doc.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "wrong key");
    let resp = c
        .post(proxy.api_url("/conf"))
        .header("x-api-key", "wrong")
        .body(doc.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "wrong header key");
    let resp = c
        .get(proxy.api_url(&format!("/conf?key={KEY}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    let json: Value = resp.json().await.expect("405 is JSON");
    assert_eq!(json, serde_json::json!({"error": "method not allowed"}));
    let big = format!("{doc}#{}\n", "x".repeat(4 * 1024 * 1024));
    for call in ["/conf", "/jwt"] {
        let resp = c
            .post(proxy.api_url(&format!("{call}?key={KEY}")))
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 413, "{call}");
        let json: Value = resp.json().await.expect("413 is JSON");
        assert!(
            json["error"].as_str().unwrap().contains("over the limit"),
            "{json}"
        );
    }
    let resp = c.get(proxy.api_url("/status")).send().await.unwrap();
    assert_eq!(resp.status(), 401, "status needs the key");
    // The API is not a proxy.
    let resp = c
        .get(proxy.api_url("/"))
        .header("host", "p.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_master_key_the_api_is_disabled() {
    let a = TestBackend::start("a").await;
    let doc = single_route("p.example.com", &[&a]);
    let proxy = Proxy::start(&doc).await;
    let c = client();
    for resp in [
        c.post(proxy.api_url("/conf?key=x"))
            .body(doc.clone())
            .send()
            .await
            .unwrap(),
        c.post(proxy.api_url("/jwt"))
            .body(r#"{"master_key":"x","owner":"o","valid":1}"#)
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(resp.status(), 403);
        let json: Value = resp.json().await.unwrap();
        assert_eq!(json["error"], "config API disabled: set master_key");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pushed_config_survives_a_restart() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let mut proxy = Proxy::start_with(&single_route("p.example.com", &[&a]), with_key()).await;
    let c = client();
    assert_eq!(
        push(&c, &proxy, &single_route("p.example.com", &[&b]))
            .await
            .0,
        200
    );
    proxy.restart().await;
    assert_eq!(
        served_by(&c, &proxy, "p.example.com").await.as_deref(),
        Some("b")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pushes_leave_live_table_and_file_equal() {
    let backends = {
        let mut v = Vec::new();
        for i in 0..20 {
            v.push(TestBackend::start(&format!("b{i}")).await);
        }
        v
    };
    let options = ProxyOptions {
        log_level: Some("debug"),
        ..with_key()
    };
    let first = TestBackend::start("first").await;
    let proxy = Proxy::start_with(&single_route("p.example.com", &[&first]), options).await;
    let docs: Vec<String> = backends
        .iter()
        .map(|b| single_route("p.example.com", &[b]))
        .collect();
    let mut pushes = Vec::new();
    for doc in docs.clone() {
        let url = proxy.api_url(&format!("/conf?key={KEY}"));
        pushes.push(tokio::spawn(async move {
            client()
                .post(url)
                .body(doc)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    for p in pushes {
        assert_eq!(p.await.unwrap().unwrap(), 200);
    }
    let c = client();
    let (status, body) = get(&c, &proxy, "p.example.com", "/").await;
    assert_eq!(status, 200, "{body}\n{}", proxy.log());
    let live = Echo::parse(&body).backend;
    let on_disk = std::fs::read_to_string(proxy.upstreams_path()).unwrap();
    let index = docs
        .iter()
        .position(|d| *d == on_disk)
        .expect("file is not one of the pushes");
    assert_eq!(live, format!("b{index}"), "live table and file disagree");
    // And it stays that way once the watcher has read the file after the burst.
    wait_for(
        Duration::from_secs(5),
        "the watcher to read the pushed file",
        || async {
            proxy
                .log()
                .contains("unchanged, still generation")
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        served_by(&c, &proxy, "p.example.com").await,
        Some(format!("b{index}"))
    );
    assert!(
        proxy.log().contains("generation 21"),
        "20 pushes, 20 generations"
    );
    assert!(!proxy.log().contains("generation 22"), "{}", proxy.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_minting_answers() {
    let a = TestBackend::start("a").await;
    let proxy = Proxy::start_with(&single_route("p.example.com", &[&a]), with_key()).await;
    let c = client();
    let mint = |body: String| {
        let c = c.clone();
        let url = proxy.api_url("/jwt");
        async move {
            let resp = c.post(url).body(body).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, json) = mint(format!(
        r#"{{"master_key":"{KEY}","owner":"ci","valid":10}}"#
    ))
    .await;
    assert_eq!(status, 200);
    let token = json["token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3);
    let (status, _) = mint(r#"{"master_key":"wrong","owner":"ci","valid":10}"#.into()).await;
    assert_eq!(status, 401);
    for valid in ["0", "-5", "1.5", "\"10\"", "525601"] {
        let (status, json) = mint(format!(
            r#"{{"master_key":"{KEY}","owner":"ci","valid":{valid}}}"#
        ))
        .await;
        assert_eq!(status, 400, "valid = {valid}");
        assert!(
            json["error"].as_str().unwrap().contains("valid must be"),
            "{json}"
        );
    }
    let (status, json) = mint("{not json".into()).await;
    assert_eq!(status, 400);
    assert!(
        json["error"].as_str().unwrap().contains("invalid JSON"),
        "{json}"
    );
    let (status, json) = mint(r#"{"owner":"ci","valid":10}"#.into()).await;
    assert_eq!((status, json["error"].as_str()), (401, Some("missing key")));

    // The key as in every other call: `?key=` or `x-api-key`.
    let body = r#"{"owner":"ci","valid":10}"#;
    let beside = |query: &str, header: Option<&str>| {
        let mut req = c.post(proxy.api_url(&format!("/jwt{query}"))).body(body);
        if let Some(h) = header {
            req = req.header("x-api-key", h);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for (query, header, expected) in [
        (format!("?key={KEY}"), None, 200),
        (String::new(), Some(KEY), 200),
        ("?key=wrong".into(), None, 401),
        (String::new(), Some("wrong"), 401),
    ] {
        let (status, json) = beside(&query, header).await;
        assert_eq!(status, expected, "{query} {header:?}: {json}");
        if status == 200 {
            assert_eq!(json["token"].as_str().unwrap().split('.').count(), 3);
        }
    }
    // A wrong key in the body is refused even beside a right one.
    let resp = c
        .post(proxy.api_url("/jwt"))
        .header("x-api-key", KEY)
        .body(r#"{"master_key":"wrong","owner":"ci","valid":10}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_the_live_table() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let proxy = Proxy::start_with(&single_route("p.example.com", &[&a]), with_key()).await;
    let c = client();
    let doc = format!(
        "upstreams:\n  q.example.com:\n    paths:\n      \"/\":\n        servers: [\"{}\", \"{}\"]\n      \"/api\":\n        authorization: {{type: apikey, creds: k}}\n        servers: [\"{}\"]\n",
        a.server(),
        b.server(),
        b.server()
    );
    assert_eq!(push(&c, &proxy, &doc).await.0, 200);
    let state = status(&proxy, KEY).await.unwrap();
    assert_eq!(state["generation"], 2);
    let hosts = state["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0]["host"], "q.example.com");
    let paths = hosts[0]["paths"].as_array().unwrap();
    assert_eq!(paths[0]["path"], "/api");
    assert_eq!(paths[0]["authorization"], "apikey");
    assert_eq!(paths[1]["backends"].as_array().unwrap().len(), 2);
    assert_eq!(paths[1]["backends"][0]["address"], a.server());
    assert_eq!(paths[1]["backends"][0]["tls"], false);
    assert!(
        !state.to_string().contains("\"k\""),
        "secrets never shown: {state}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn https_api_with_a_self_signed_certificate() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let options = ProxyOptions {
        api_tls: true,
        ..with_key()
    };
    let proxy = Proxy::start_with(&single_route("p.example.com", &[&a]), options).await;
    let cert = std::fs::read(proxy.dir.path().join("api.crt")).unwrap();
    let tls_client = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .build()
        .unwrap();
    let url = format!(
        "https://localhost:{}/conf?key={KEY}",
        proxy.api_tls_port.unwrap()
    );
    let resp = tls_client
        .post(url)
        .body(single_route("p.example.com", &[&b]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        served_by(&client(), &proxy, "p.example.com")
            .await
            .as_deref(),
        Some("b")
    );
    // Plain HTTP on the TLS port does not get through.
    let plain = client()
        .get(format!(
            "http://127.0.0.1:{}/status",
            proxy.api_tls_port.unwrap()
        ))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

/// A small tmpfs mounted on a temporary folder (root only), unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(kib: u32) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().to_path_buf()
    }

    fn remount(&self, mode: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Fills the file system up to the last byte.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.dir.path().join("filler")).unwrap();
        let block = [0u8; 1024];
        while f.write_all(&block).is_ok() {}
        let byte = [0u8; 1];
        while f.write_all(&byte).is_ok() {}
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_to_a_full_or_read_only_disk_changes_nothing() {
    let Some(fs) = Tmpfs::mount(64) else {
        eprintln!("cannot mount a tmpfs here (needs root): disk-full case not run");
        return;
    };
    let a = TestBackend::start("a").await;
    let original = single_route("old.example.com", &[&a]);
    let options = ProxyOptions {
        upstreams_dir: Some(fs.path()),
        ..with_key()
    };
    let proxy = Proxy::start_with(&original, options).await;
    let c = client();
    let new = format!(
        "# {}\n{}",
        "x".repeat(8000),
        single_route("new.example.com", &[&a])
    );
    let unchanged = |reason: &'static str| {
        let (c, proxy, original) = (&c, &proxy, &original);
        async move {
            assert_eq!(
                served_by(c, proxy, "old.example.com").await.as_deref(),
                Some("a"),
                "{reason}"
            );
            assert_eq!(
                get(c, proxy, "new.example.com", "/").await.0,
                404,
                "{reason}"
            );
            let on_disk = std::fs::read_to_string(proxy.upstreams_path()).unwrap();
            assert_eq!(&on_disk, original, "{reason}: the file on disk changed");
        }
    };

    fs.fill();
    let (status, json) = push(&c, &proxy, &new).await;
    assert_eq!(status, 500, "{json}");
    assert!(
        json.to_string().contains("No space left on device"),
        "{json}"
    );
    unchanged("disk full").await;

    std::fs::remove_file(fs.path().join("filler")).unwrap();
    fs.remount("ro");
    let (status, json) = push(&c, &proxy, &new).await;
    assert_eq!(status, 500, "{json}");
    assert!(json.to_string().contains("Read-only file system"), "{json}");
    unchanged("read-only").await;

    // Once the disk takes writes again, the same push goes through.
    fs.remount("rw");
    let (status, json) = push(&c, &proxy, &new).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        served_by(&c, &proxy, "new.example.com").await.as_deref(),
        Some("a")
    );
    drop(proxy);
}
