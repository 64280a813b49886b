//! Health checks at scale, alone in this binary so that no other test competes for the CPU:
//! 1,000 backends, 100 of them blackholes that never answer.

use crate::common;

use std::time::Duration;

use common::*;

const INTERVAL: Duration = Duration::from_secs(1);

async fn health_of(proxy: &Proxy) -> Option<Vec<String>> {
    let s = status(proxy, "k").await?;
    Some(
        s["hosts"][0]["paths"][0]["backends"]
            .as_array()?
            .iter()
            .map(|b| b["health"].as_str().unwrap_or("").to_string())
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_backends_with_blackholes_are_all_probed_every_interval() {
    let mut healthy = Vec::new();
    for i in 0..900 {
        healthy.push(TestBackend::start(&format!("h{i}")).await);
    }
    let holes = blackholes(100).await;
    let mut servers: Vec<String> = healthy
        .iter()
        .map(|b| format!("\"{}\"", b.server()))
        .collect();
    servers.extend(holes.iter().map(|(addr, ..)| format!("\"{addr}\"")));
    let doc = format!(
        "upstreams:\n  big.example.com:\n    paths:\n      \"/\":\n        servers: [{}]\n",
        servers.join(", ")
    );
    let options = ProxyOptions {
        main_extra: "hc_interval: 1\nmaster_key: k\n".into(),
        ..Default::default()
    };
    let proxy = Proxy::start_with(&doc, options).await;
    // Start-up (a debug build detecting 1,000 backends, on a CI machine that may be slow)
    // takes what it takes; the promise under test is the steady state after it: every
    // healthy backend probed again within each interval, blackholes notwithstanding.
    wait_for(
        Duration::from_secs(30),
        "every healthy backend to be probed",
        || async { healthy.iter().all(|b| b.probe_count() >= 1).then_some(()) },
    )
    .await;
    let before: Vec<usize> = healthy.iter().map(TestBackend::probe_count).collect();
    wait_for(
        2 * INTERVAL + Duration::from_millis(500),
        "a second probe of every healthy backend",
        || async {
            healthy
                .iter()
                .zip(&before)
                .all(|(b, n)| b.probe_count() > *n)
                .then_some(())
        },
    )
    .await;
    wait_for(3 * INTERVAL, "healthy up and blackholes down", || async {
        let health = health_of(&proxy).await?;
        let up = health.iter().filter(|h| *h == "up").count();
        let down = health.iter().filter(|h| *h == "down").count();
        (up == 900 && down == 100).then_some(())
    })
    .await;
    drop(holes);
}
