//! One health probe: an HTTP request to the backend's `/` with the configured method and the
//! Host of a route that uses it. Healthy: connected and answered below 500 in time.

use std::time::Duration;

use http::Method;

use super::registry::BackendKey;

/// Sends probes; one client for all backends, no pooled connections (each probe dials).
#[derive(Clone)]
pub struct Prober {
    client: reqwest::Client,
    method: Method,
}

impl Prober {
    pub fn new(method: Method, timeout: Duration) -> reqwest::Result<Prober> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .danger_accept_invalid_certs(true)
            .user_agent("aralez-health-check")
            .build()?;
        Ok(Prober { client, method })
    }

    /// Whether the backend answered below 500 within the timeout, in the protocol it was
    /// detected to speak.
    pub async fn probe(&self, key: BackendKey, tls: bool, host: &str) -> bool {
        let scheme = if tls { "https" } else { "http" };
        let url = format!("{scheme}://{}/", key.addr);
        let mut request = self.client.request(self.method.clone(), url);
        if !host.is_empty() {
            request = request.header(http::header::HOST, host);
        }
        if self.method == Method::POST {
            request = request.header(http::header::CONTENT_LENGTH, "0");
        }
        match request.send().await {
            Ok(resp) => resp.status().as_u16() < 500,
            Err(_) => false,
        }
    }
}
