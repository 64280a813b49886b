//! The TLS listener: SNI certificate selection, hot reload of the certificate folder, TLS
//! versions, and HTTP/2 over TLS (ALPN) and over h2c.

use crate::common;

use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::*;
use pingora::tls::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};

/// Writes `NAME.crt` and `NAME.key` for `names` (SANs), or a CN-only certificate when `cn` is set.
fn write_pair(folder: &Path, file: &str, names: &[&str], cn: Option<&str>) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    if let Some(cn) = cn {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(folder.join(format!("{file}.crt")), cert.pem()).unwrap();
    std::fs::write(folder.join(format!("{file}.key")), key.serialize_pem()).unwrap();
}

/// The DNS names (or CN) of the certificate the server sends for `sni`.
fn served_names(port: u16, sni: Option<&str>) -> Result<Vec<String>, String> {
    let mut builder = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    builder.set_verify(SslVerifyMode::NONE);
    let connector = builder.build();
    let mut config = connector.configure().map_err(|e| e.to_string())?;
    config.set_verify_hostname(false);
    if sni.is_none() {
        config.set_use_server_name_indication(false);
    }
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let stream = config
        .connect(sni.unwrap_or("ignored"), tcp)
        .map_err(|e| e.to_string())?;
    let cert = stream.ssl().peer_certificate().ok_or("no certificate")?;
    let mut names: Vec<String> = cert
        .subject_alt_names()
        .map(|s| {
            s.iter()
                .filter_map(|n| n.dnsname().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names = cert
            .subject_name()
            .entries()
            .filter_map(|e| e.data().to_string().ok())
            .collect();
    }
    Ok(names)
}

async fn tls_proxy(setup: impl FnOnce(&Path)) -> (Proxy, TestBackend) {
    let b = TestBackend::start("tls-backend").await;
    let proxy = Proxy::start_with(
        &single_route("a.example.com", &[&b]),
        ProxyOptions {
            tls: true,
            ..Default::default()
        },
    )
    .await;
    let certs = proxy.dir.path().join("certs");
    // Replace the harness' certificate with this test's set.
    std::fs::remove_file(certs.join("localhost.crt")).unwrap();
    std::fs::remove_file(certs.join("localhost.key")).unwrap();
    setup(&certs);
    (proxy, b)
}

async fn eventually_served(port: u16, sni: Option<&'static str>, name: &'static str) {
    wait_for(
        Duration::from_secs(10),
        &format!("{name} served for {sni:?}"),
        || async move {
            let names = tokio::task::spawn_blocking(move || served_names(port, sni))
                .await
                .unwrap();
            names
                .ok()
                .filter(|n| n.iter().any(|x| x == name))
                .map(|_| ())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_selects_exact_wildcard_and_default() {
    let (proxy, _b) = tls_proxy(|certs| {
        write_pair(certs, "a", &["a.example.com"], None);
        write_pair(certs, "b", &["b.example.com", "www.b.example.com"], None);
        write_pair(certs, "wild", &["*.wild.example.com"], None);
        write_pair(certs, "default", &["default.example.com"], None);
        write_pair(certs, "cn-only", &[], Some("cn.example.com"));
    })
    .await;
    let port = proxy.tls_port.unwrap();
    // The folder changed after start; wait for the reload to serve the new set.
    eventually_served(port, Some("a.example.com"), "a.example.com").await;
    let cases: [(Option<&'static str>, &'static str); 8] = [
        (Some("a.example.com"), "a.example.com"),
        (Some("A.Example.COM"), "a.example.com"),
        (Some("www.b.example.com"), "b.example.com"),
        (Some("x.wild.example.com"), "*.wild.example.com"),
        (Some("a.b.wild.example.com"), "default.example.com"),
        (Some("unknown.example.org"), "default.example.com"),
        (Some("cn.example.com"), "cn.example.com"),
        (None, "default.example.com"),
    ];
    // The pairs were written one after the other, so a reload may have seen only some.
    for (sni, want) in cases {
        eventually_served(port, sni, want).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_added_broken_and_late_keys() {
    let (proxy, _b) = tls_proxy(|certs| write_pair(certs, "a", &["a.example.com"], None)).await;
    let port = proxy.tls_port.unwrap();
    let certs = proxy.dir.path().join("certs");
    eventually_served(port, Some("a.example.com"), "a.example.com").await;

    // Added at run time.
    write_pair(&certs, "c", &["c.example.com"], None);
    eventually_served(port, Some("c.example.com"), "c.example.com").await;

    // A broken pair is skipped with an error naming it; the others keep working.
    std::fs::write(certs.join("broken.crt"), "not a certificate").unwrap();
    std::fs::write(certs.join("broken.key"), "not a key").unwrap();
    wait_for(
        Duration::from_secs(10),
        "the broken pair to be reported",
        || async {
            proxy
                .log()
                .contains("certificate skipped: ")
                .then_some(())?;
            proxy
                .log()
                .contains("broken.crt: no certificate in the file")
                .then_some(())
        },
    )
    .await;
    eventually_served(port, Some("c.example.com"), "c.example.com").await;
    eventually_served(port, Some("a.example.com"), "a.example.com").await;

    // ACME style: the certificate lands first, the key a moment later.
    let tmp = tempfile::tempdir().unwrap();
    write_pair(tmp.path(), "d", &["d.example.com"], None);
    std::fs::copy(tmp.path().join("d.crt"), certs.join("d.crt")).unwrap();
    wait_for(
        Duration::from_secs(10),
        "the missing key to be reported",
        || async { proxy.log().contains("d.crt: no matching key").then_some(()) },
    )
    .await;
    std::fs::copy(tmp.path().join("d.key"), certs.join("d.key")).unwrap();
    eventually_served(port, Some("d.example.com"), "d.example.com").await;

    // A key that does not match its certificate is named too.
    write_pair(tmp.path(), "other", &["e.example.com"], None);
    std::fs::copy(tmp.path().join("other.crt"), certs.join("e.crt")).unwrap();
    std::fs::copy(tmp.path().join("d.key"), certs.join("e.key")).unwrap();
    wait_for(
        Duration::from_secs(10),
        "the mismatch to be reported",
        || async {
            proxy
                .log()
                .contains("e.key: does not match the certificate")
                .then_some(())
        },
    )
    .await;
}

/// Writes `NAME.crt` and `NAME.key` for `name`, expiring at midnight UTC on 1 January `year`.
fn write_pair_expiring(folder: &Path, file: &str, name: &str, year: i32) {
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(year, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    // Key first: a reload between the two writes then sees the old, matching pair or none.
    std::fs::write(folder.join(format!("{file}.key")), key.serialize_pem()).unwrap();
    std::fs::write(folder.join(format!("{file}.crt")), cert.pem()).unwrap();
}

/// Waits until the metrics text satisfies `check`.
async fn metrics_until(proxy: &Proxy, what: &str, check: impl Fn(&str) -> bool) {
    wait_for(Duration::from_secs(10), what, || async {
        let text = metrics(proxy).await;
        check(&text).then_some(())
    })
    .await;
}

const EXPIRY: &str = "aralez_tls_certificate_expiry_timestamp_seconds";
const JAN_2030: f64 = 1_893_456_000.0;
const JAN_2031: f64 = 1_924_992_000.0;

#[tokio::test(flavor = "multi_thread")]
async fn certificate_metrics_follow_reloads() {
    let b = TestBackend::start("b").await;
    let options = ProxyOptions {
        tls: true,
        ..Default::default()
    };
    let proxy = Proxy::start_with(&single_route("a.example.com", &[&b]), options).await;
    let certs = proxy.dir.path().join("certs");
    let localhost = format!("{EXPIRY}{{name=\"localhost\"}}");
    let renewed = format!("{EXPIRY}{{name=\"renewed\"}}");
    let text = metrics(&proxy).await;
    assert_eq!(
        sample(&text, "aralez_tls_certificates"),
        Some(1.0),
        "{text}"
    );
    assert!(sample(&text, &localhost).is_some(), "{text}");

    write_pair_expiring(&certs, "renewed", "renewed.example.com", 2030);
    metrics_until(&proxy, "a second certificate in the metrics", |t| {
        sample(t, "aralez_tls_certificates") == Some(2.0) && sample(t, &renewed) == Some(JAN_2030)
    })
    .await;

    write_pair_expiring(&certs, "renewed", "renewed.example.com", 2031);
    metrics_until(&proxy, "the renewed expiry", |t| {
        sample(t, &renewed) == Some(JAN_2031)
    })
    .await;

    std::fs::remove_file(certs.join("localhost.crt")).unwrap();
    std::fs::remove_file(certs.join("localhost.key")).unwrap();
    metrics_until(&proxy, "the removed certificate to leave", |t| {
        sample(t, "aralez_tls_certificates") == Some(1.0)
            && !t.contains("name=\"localhost\"")
            && sample(t, &renewed) == Some(JAN_2031)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_tls_12_and_13_with_alpn() {
    let (proxy, _b) = tls_proxy(|certs| write_pair(certs, "a", &["a.example.com"], None)).await;
    let port = proxy.tls_port.unwrap();
    eventually_served(port, Some("a.example.com"), "a.example.com").await;
    let handshake = move |max: SslVersion, alpn: &'static [u8]| {
        let mut builder = SslConnector::builder(SslMethod::tls()).unwrap();
        builder.set_verify(SslVerifyMode::NONE);
        builder.set_min_proto_version(None).unwrap();
        builder.set_max_proto_version(Some(max)).unwrap();
        builder.set_security_level(0);
        builder.set_alpn_protos(alpn).unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        builder
            .build()
            .connect("a.example.com", tcp)
            .map(|s| {
                s.ssl()
                    .selected_alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
            })
            .map_err(|e| e.to_string())
    };
    let (old, h2, h1) = tokio::task::spawn_blocking(move || {
        (
            handshake(SslVersion::TLS1_1, b"\x08http/1.1"),
            handshake(SslVersion::TLS1_3, b"\x02h2\x08http/1.1"),
            handshake(SslVersion::TLS1_2, b"\x08http/1.1"),
        )
    })
    .await
    .unwrap();
    assert!(old.is_err(), "TLS 1.1 must be refused");
    assert_eq!(h2.unwrap().as_deref(), Some("h2"));
    assert_eq!(h1.unwrap().as_deref(), Some("http/1.1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_over_tls_and_h2c() {
    let b = TestBackend::start("h2").await;
    let proxy = Proxy::start_with(
        &single_route("localhost", &[&b]),
        ProxyOptions {
            tls: true,
            ..Default::default()
        },
    )
    .await;
    // h2c with prior knowledge on the plain listener; routed by :authority.
    let h2c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2c
        .get(format!("http://localhost:{}/x", proxy.port))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let echo = Echo::parse(&resp.text().await.unwrap());
    assert_eq!(echo.backend, "h2");
    // Routed by :authority; the backend (h2c too) sees it as the forwarded host.
    assert_eq!(
        echo.headers["x-forwarded-host"],
        format!("localhost:{}", proxy.port)
    );
    // h2 over TLS via ALPN.
    let tls = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let resp = tls
        .get(format!("https://localhost:{}/y", proxy.tls_port.unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    // HTTP/1.1 still works on both listeners.
    let h1 = tls_h1_client();
    for url in [
        format!("http://localhost:{}/", proxy.port),
        format!("https://localhost:{}/", proxy.tls_port.unwrap()),
    ] {
        let resp = h1.get(url).send().await.unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_11);
        assert_eq!(resp.status(), 200);
    }
}
