//! Large bodies stream through the proxy in both directions without being buffered.

use crate::common;

use common::*;
use futures_util::StreamExt;

const SIZE: u64 = 256 * 1024 * 1024;
const RSS_LIMIT_KIB: u64 = 100 * 1024;

/// Peak resident memory of a process (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("no VmHWM in /proc status")
}

#[tokio::test(flavor = "multi_thread")]
async fn quarter_gigabyte_up_and_down_in_bounded_memory() {
    let b = TestBackend::start("big").await;
    let proxy = Proxy::start(&single_route("big.example.com", &[&b])).await;
    // 512 MiB through a debug build shares two cores with the rest of the suite: the usual
    // client's 30 s for a whole exchange is too tight for that (a hang still fails).
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(180))
        .build()
        .unwrap();

    // Upload: a streamed body the backend counts.
    let chunk = bytes::Bytes::from(vec![b'u'; 256 * 1024]);
    let chunks = (SIZE / chunk.len() as u64) as usize;
    let body = futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let resp = c
        .post(proxy.url("/__upload"))
        .header("host", "big.example.com")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), SIZE.to_string());

    // Download: the backend streams, we count.
    let resp = c
        .get(proxy.url(&format!("/__download/{SIZE}")))
        .header("host", "big.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        total += chunk.unwrap().len() as u64;
    }
    assert_eq!(total, SIZE);

    let peak = peak_rss_kib(proxy.pid());
    assert!(peak < RSS_LIMIT_KIB, "aralez peaked at {} MiB", peak / 1024);
}
