//! Prometheus metrics: one registry for the process, handles as statics so that every
//! module records without threading a handle through. Served at `GET /metrics`; every metric
//! is documented in METRICS.md.

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::routing::RoutingTable;

/// Latency buckets in seconds: 1 ms to 30 s (requests and config applies).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric handle of the process.
pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounter,
    pub errors: IntCounter,
    pub responses: IntCounterVec,
    pub latency: Histogram,
    pub host_requests: IntCounterVec,
    pub host_latency: HistogramVec,
    pub backend_up: IntGaugeVec,
    pub connect_errors: IntCounterVec,
    pub retries: IntCounter,
    pub config_reloads: IntCounterVec,
    pub config_generation: IntGauge,
    pub config_apply: Histogram,
    pub consul_errors: IntCounter,
    pub tls_certificates: IntGauge,
    pub tls_expiry: IntGaugeVec,
    pub in_flight: IntGauge,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    pub access_log_dropped: IntCounter,
    /// Open client connections by listener (`aralez_downstream_connections`).
    pub connections_plain: IntGauge,
    pub connections_tls: IntGauge,
    pub header_timeouts: IntCounter,
    /// Requests the fast lane served (`proxy::lane`), of `requests`.
    pub fast_lane: IntCounter,
    /// `aralez_responses_total` children by status code (100-599), resolved on first use so
    /// that a request neither formats nor hashes its label.
    responses_by_status: Box<[OnceLock<IntCounter>]>,
    /// The per-host series of requests that matched no route.
    other_host: OnceLock<HostMetrics>,
}

/// The per-host series of one configured host, resolved once (routes keep theirs).
#[derive(Debug, Clone)]
pub struct HostMetrics {
    requests: IntCounter,
    latency: Histogram,
}

/// Status codes with a pre-resolved response counter.
const STATUS_CODES: std::ops::RangeInclusive<u16> = 100..=599;

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    register(r, c.clone());
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    register(r, c.clone());
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    register(r, g.clone());
    g
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    register(r, g.clone());
    g
}

/// A histogram with the latency buckets.
fn histogram(r: &Registry, name: &str, help: &str) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    register(r, h.clone());
    h
}

fn register<C: prometheus::core::Collector + 'static>(r: &Registry, c: C) {
    // Names are fixed and distinct, so registration cannot fail but by a programming error,
    // which the unit test below catches.
    if let Err(e) = r.register(Box::new(c)) {
        log::error!("metric registration failed: {e}");
    }
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        register(
            &r,
            prometheus::process_collector::ProcessCollector::for_self(),
        );
        let latency = histogram(
            &r,
            "aralez_response_latency_seconds",
            "Time from request to the end of the response.",
        );
        let connections = gauge_vec(
            &r,
            "aralez_downstream_connections",
            "Open client connections, by listener.",
            &["listener"],
        );
        let host_latency = HistogramVec::new(
            HistogramOpts::new(
                "aralez_host_response_latency_seconds",
                "Response latency by configured host.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["host"],
        )
        .unwrap_or_else(|e| panic!("host latency histogram: {e}"));
        register(&r, host_latency.clone());
        let config_apply = histogram(
            &r,
            "aralez_config_apply_seconds",
            "Time from receiving a changed routing document to its table being live.",
        );
        Metrics {
            requests: counter(&r, "aralez_requests_total", "Requests received."),
            errors: counter(
                &r,
                "aralez_errors_total",
                "Requests that ended in a proxy error (no response from a backend).",
            ),
            responses: counter_vec(
                &r,
                "aralez_responses_total",
                "Responses sent, by status code.",
                &["status"],
            ),
            latency,
            host_requests: counter_vec(
                &r,
                "aralez_host_requests_total",
                "Requests by configured host (`other` for the rest).",
                &["host"],
            ),
            host_latency,
            backend_up: gauge_vec(
                &r,
                "aralez_backend_up",
                "1 when the backend is in rotation, 0 when health checks took it out.",
                &["backend"],
            ),
            connect_errors: counter_vec(
                &r,
                "aralez_upstream_connect_errors_total",
                "Failed connections to a backend.",
                &["backend"],
            ),
            retries: counter(
                &r,
                "aralez_upstream_retries_total",
                "Requests retried on another backend after a failed connection.",
            ),
            config_reloads: counter_vec(
                &r,
                "aralez_config_reloads_total",
                "Routing documents applied or refused, by source and result.",
                &["source", "result"],
            ),
            config_apply,
            config_generation: gauge(
                &r,
                "aralez_config_generation",
                "Generation of the live routing table.",
            ),
            consul_errors: counter(&r, "aralez_consul_errors_total", "Failed Consul requests."),
            tls_certificates: gauge(
                &r,
                "aralez_tls_certificates",
                "Certificates loaded for the TLS listener.",
            ),
            tls_expiry: gauge_vec(
                &r,
                "aralez_tls_certificate_expiry_timestamp_seconds",
                "When each loaded certificate expires (Unix time).",
                &["name"],
            ),
            in_flight: gauge(
                &r,
                "aralez_requests_in_flight",
                "Requests being served now.",
            ),
            bytes_in: counter(
                &r,
                "aralez_request_body_bytes_total",
                "Request body bytes received from clients.",
            ),
            bytes_out: counter(
                &r,
                "aralez_response_body_bytes_total",
                "Response body bytes sent to clients.",
            ),
            access_log_dropped: counter(
                &r,
                "aralez_access_log_dropped_total",
                "Access log lines dropped because the queue was full.",
            ),
            connections_plain: connections.with_label_values(&["http"]),
            connections_tls: connections.with_label_values(&["https"]),
            header_timeouts: counter(
                &r,
                "aralez_client_header_timeouts_total",
                "Client connections closed because a request header took longer than header_timeout.",
            ),
            fast_lane: counter(
                &r,
                "aralez_fast_lane_requests_total",
                "Requests served by the fast lane (plain bodyless HTTP/1.1 to plain-HTTP backends), of aralez_requests_total.",
            ),
            registry: r,
            responses_by_status: STATUS_CODES.map(|_| OnceLock::new()).collect(),
            other_host: OnceLock::new(),
        }
    }

    /// The per-host series of `host` (a configured host name, or `other`).
    pub fn host(&self, host: &str) -> HostMetrics {
        HostMetrics {
            requests: self.host_requests.with_label_values(&[host]),
            latency: self.host_latency.with_label_values(&[host]),
        }
    }

    /// Drops the per-host series of hosts no longer configured.
    pub fn forget_hosts<'h>(&self, hosts: impl Iterator<Item = &'h str>) {
        for host in hosts {
            // Absent when the host never served a request: nothing to drop.
            let _ = self.host_requests.remove_label_values(&[host]);
            let _ = self.host_latency.remove_label_values(&[host]);
        }
    }

    fn status_counter(&self, status: u16) -> IntCounter {
        let resolve = || {
            let mut buf = itoa::Buffer::new();
            self.responses.with_label_values(&[buf.format(status)])
        };
        match STATUS_CODES
            .contains(&status)
            .then(|| {
                self.responses_by_status
                    .get(usize::from(status - STATUS_CODES.start()))
            })
            .flatten()
        {
            Some(slot) => slot.get_or_init(resolve).clone(),
            None => resolve(),
        }
    }

    /// Records one finished request; `host` is the series of its route (None: no route).
    pub fn record_request(
        &self,
        host: Option<&HostMetrics>,
        status: u16,
        elapsed: Duration,
        failed: bool,
        bytes_in: usize,
        bytes_out: usize,
    ) {
        let secs = elapsed.as_secs_f64();
        self.requests.inc();
        if failed {
            self.errors.inc();
        }
        self.status_counter(status).inc();
        self.latency.observe(secs);
        let host = host.unwrap_or_else(|| self.other_host.get_or_init(|| self.host("other")));
        host.requests.inc();
        host.latency.observe(secs);
        self.bytes_in.inc_by(bytes_in as u64);
        self.bytes_out.inc_by(bytes_out as u64);
    }

    /// The text exposition, with gauges that are read from live state refreshed first.
    pub fn render(&self, table: &RoutingTable, in_flight: usize) -> String {
        self.backend_up.reset();
        for (_, routes) in table.hosts() {
            for route in routes.routes() {
                for b in route.backends.iter() {
                    let up = !route.healthcheck || b.health.is_up();
                    self.backend_up
                        .with_label_values(&[&b.addr.to_string()])
                        .set(up as i64);
                }
            }
        }
        self.config_generation.set(table.summary.generation as i64);
        self.in_flight.set(in_flight as i64);
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("cannot encode metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Counts an applied (or unchanged) document from `source` (`file`, `api`, `startup`, ...).
pub fn count_reload(source: &str, outcome: &crate::routing::ApplyOutcome) {
    let result = match outcome {
        crate::routing::ApplyOutcome::Applied(_) => "applied",
        crate::routing::ApplyOutcome::Unchanged(_) => "unchanged",
    };
    METRICS
        .config_reloads
        .with_label_values(&[source, result])
        .inc();
}

/// Counts a document (or Consul's instances) from `source` that was refused: the live table
/// stayed.
pub fn count_failed_reload(source: &str) {
    METRICS
        .config_reloads
        .with_label_values(&[source, "error"])
        .inc();
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_renders() {
        let m = Metrics::new();
        m.record_request(
            Some(&m.host("a.com")),
            200,
            Duration::from_millis(3),
            false,
            10,
            20,
        );
        m.record_request(None, 404, Duration::from_millis(1), false, 0, 0);
        m.record_request(None, 999, Duration::from_millis(1), false, 0, 0);
        let text = m.render(&RoutingTable::default(), 0);
        for name in [
            "aralez_requests_total 3",
            "aralez_responses_total{status=\"200\"} 1",
            "aralez_responses_total{status=\"404\"} 1",
            "aralez_responses_total{status=\"999\"} 1",
            "aralez_response_latency_seconds_count 3",
            "aralez_host_requests_total{host=\"a.com\"} 1",
            "aralez_host_requests_total{host=\"other\"} 2",
            "aralez_request_body_bytes_total 10",
            "aralez_response_body_bytes_total 20",
            "aralez_config_generation 0",
        ] {
            assert!(text.contains(name), "{name} missing in:\n{text}");
        }
    }
}
