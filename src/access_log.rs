//! The access log: one line per request, JSON or Apache "combined", written by a background
//! task through a bounded queue. A full queue drops lines (counted in a metric) rather than
//! slow a request. SIGUSR1 reopens the file, as logrotate expects.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use log::error;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::metrics::METRICS;

/// Lines that may wait for the writer.
const QUEUE: usize = 16_384;

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Combined,
}

/// One request, as logged.
#[derive(Debug, Serialize)]
pub struct Entry {
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub client: String,
    pub method: String,
    pub host: String,
    /// Path and query, without the `araleztoken` parameter.
    pub path: String,
    pub protocol: &'static str,
    pub status: u16,
    pub bytes_sent: usize,
    pub duration_ms: f64,
    pub upstream: Option<String>,
    pub upstream_duration_ms: Option<f64>,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let t: chrono::DateTime<chrono::Utc> = (*t).into();
    s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Milliseconds with microsecond precision, for the log.
pub fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

impl Entry {
    pub fn format(&self, format: Format) -> String {
        match format {
            Format::Json => serde_json::to_string(self).unwrap_or_default(),
            Format::Combined => {
                let t: chrono::DateTime<chrono::Utc> = self.time.into();
                format!(
                    "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\"",
                    self.client,
                    t.format("%d/%b/%Y:%H:%M:%S %z"),
                    self.method,
                    self.path,
                    self.protocol,
                    self.status,
                    self.bytes_sent,
                    self.referer.as_deref().unwrap_or("-"),
                    self.user_agent.as_deref().unwrap_or("-"),
                )
            }
        }
    }
}

/// The sending side, held by the proxy.
#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Entry>,
}

impl AccessLog {
    /// Queues an entry; drops it (and counts the drop) when the queue is full.
    pub fn log(&self, entry: Entry) {
        if self.tx.try_send(entry).is_err() {
            METRICS.access_log_dropped.inc();
        }
    }
}

/// The writing side: a background service.
pub struct AccessLogWriter {
    target: Target,
    format: Format,
    /// The queue and the opened target, taken when the service starts.
    rx: Mutex<Option<(mpsc::Receiver<Entry>, Output)>>,
}

/// Where the writer writes: stdout or the opened file.
pub type Output = Box<dyn Write + Send>;

/// A connected pair of logger and writer. Opens the target now: a log that cannot be
/// opened is a start-up error, not a proxy that runs without its log.
pub fn channel(target: Target, format: Format) -> std::io::Result<(AccessLog, AccessLogWriter)> {
    let out = open(&target)?;
    let (tx, rx) = mpsc::channel(QUEUE);
    Ok((
        AccessLog { tx },
        AccessLogWriter {
            target,
            format,
            rx: Mutex::new(Some((rx, out))),
        },
    ))
}

/// Opens the target for appending, creating the file (also what `aralez -t` tries).
pub fn open(target: &Target) -> std::io::Result<Output> {
    Ok(match target {
        Target::Stdout => Box::new(std::io::stdout()),
        Target::File(path) => {
            let file: File = OpenOptions::new().create(true).append(true).open(path)?;
            Box::new(file)
        }
    })
}

#[async_trait]
impl BackgroundService for AccessLogWriter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some((mut rx, out)) = self.rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let mut out = BufWriter::new(out);
        let mut reopen =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).ok();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = async { match reopen.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {
                    let _ = out.flush();
                    match open(&self.target) {
                        Ok(w) => out = BufWriter::new(w),
                        Err(e) => error!("access log {:?} cannot be reopened: {e}", self.target),
                    }
                }
                entry = rx.recv() => {
                    let Some(entry) = entry else { break };
                    let _ = writeln!(out, "{}", entry.format(self.format));
                    // Write whatever else is queued, then flush once.
                    while let Ok(more) = rx.try_recv() {
                        let _ = writeln!(out, "{}", more.format(self.format));
                    }
                    let _ = out.flush();
                }
            }
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(86400),
            client: "10.0.0.1".into(),
            method: "GET".into(),
            host: "a.com".into(),
            path: "/x?y=1".into(),
            protocol: "HTTP/1.1",
            status: 200,
            bytes_sent: 12,
            duration_ms: 1.5,
            upstream: Some("127.0.0.1:80".into()),
            upstream_duration_ms: Some(1.0),
            referer: None,
            user_agent: Some("curl".into()),
        }
    }

    #[test]
    fn json_and_combined() {
        let json: serde_json::Value = serde_json::from_str(&entry().format(Format::Json)).unwrap();
        assert_eq!(json["time"], "1970-01-02T00:00:00.000Z");
        assert_eq!(json["status"], 200);
        assert_eq!(json["upstream"], "127.0.0.1:80");
        assert_eq!(
            entry().format(Format::Combined),
            "10.0.0.1 - - [02/Jan/1970:00:00:00 +0000] \"GET /x?y=1 HTTP/1.1\" 200 12 \"-\" \"curl\""
        );
    }
}
