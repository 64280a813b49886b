//! The access log: one line per request, JSON or Apache "combined", written by a background
//! task through a bounded queue. A full queue drops lines (counted in a metric) rather than
//! slow a request. SIGUSR1 reopens the file, as logrotate expects. The writer outlives the
//! shutdown signal: the last step of a shutdown is [`AccessLog::drain`], so every request
//! answered before the process exits is in the log.

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
    /// The user of the request's Basic credentials, as nginx's `$remote_user`.
    pub user: Option<String>,
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
                fn field(v: Option<&str>) -> Escaped<'_> {
                    Escaped(v.unwrap_or("-"))
                }
                format!(
                    "{} - {} [{}] \"{} {} {}\" {} {} \"{}\" \"{}\"",
                    Escaped(&self.client),
                    field(self.user.as_deref().filter(|u| !u.is_empty())),
                    t.format("%d/%b/%Y:%H:%M:%S %z"),
                    Escaped(&self.method),
                    Escaped(&self.path),
                    self.protocol,
                    self.status,
                    self.bytes_sent,
                    field(self.referer.as_deref()),
                    field(self.user_agent.as_deref()),
                )
            }
        }
    }
}

/// A field of a combined line escaped as nginx does: `"`, `\\`, control characters and
/// bytes above 0x7E as `\xHH`, so that a client cannot end a quoted field or forge a line.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        for &b in self.0.as_bytes() {
            match b {
                b'"' | b'\\' | 0..=0x1f | 0x7f.. => write!(f, "\\x{b:02X}")?,
                _ => f.write_char(char::from(b))?,
            }
        }
        Ok(())
    }
}

/// What the writer is sent.
// Nearly every message is an entry: boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Message {
    Entry(Entry),
    /// Write everything queued before this, flush, then answer.
    Drain(std::sync::mpsc::SyncSender<()>),
}

/// The sending side, held by the proxy.
#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Message>,
}

impl AccessLog {
    /// Queues an entry; drops it (and counts the drop) when the queue is full.
    pub fn log(&self, entry: Entry) {
        if self.tx.try_send(Message::Entry(entry)).is_err() {
            METRICS.access_log_dropped.inc();
        }
    }

    /// Waits until every entry queued so far is written and flushed, for at most `timeout`.
    /// Blocking: for the shutdown thread, not for a runtime's. False when it timed out; true
    /// also when there is no writer (it could not open the log, and said so at start).
    pub fn drain(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let (done, written) = std::sync::mpsc::sync_channel(1);
        let mut message = Message::Drain(done);
        loop {
            match self.tx.try_send(message) {
                Ok(()) => break,
                Err(mpsc::error::TrySendError::Closed(_)) => return true,
                Err(mpsc::error::TrySendError::Full(m)) => {
                    if std::time::Instant::now() >= deadline {
                        return false;
                    }
                    message = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        written.recv_timeout(left).is_ok()
    }
}

/// The writing side: a background service.
pub struct AccessLogWriter {
    target: Target,
    format: Format,
    /// The queue and the opened target, taken when the service starts.
    rx: Mutex<Option<(mpsc::Receiver<Message>, Output)>>,
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

impl AccessLogWriter {
    /// Writes an entry, or flushes and answers a drain.
    fn handle(&self, out: &mut impl Write, message: Message) {
        match message {
            Message::Entry(entry) => {
                let _ = writeln!(out, "{}", entry.format(self.format));
            }
            Message::Drain(done) => {
                let _ = out.flush();
                let _ = done.try_send(());
            }
        }
    }
}

#[async_trait]
impl BackgroundService for AccessLogWriter {
    /// Runs until the runtime stops, past the shutdown signal: requests still in flight then
    /// are logged too (see `lifecycle`).
    async fn start(&self, _shutdown: ShutdownWatch) {
        let Some((mut rx, out)) = self.rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let mut out = BufWriter::new(out);
        let mut reopen =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).ok();
        loop {
            tokio::select! {
                _ = async { match reopen.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {
                    let _ = out.flush();
                    match open(&self.target) {
                        Ok(w) => out = BufWriter::new(w),
                        Err(e) => error!("access log {:?} cannot be reopened: {e}", self.target),
                    }
                }
                message = rx.recv() => {
                    let Some(message) = message else { break };
                    self.handle(&mut out, message);
                    // Write whatever else is queued, then flush once.
                    while let Ok(more) = rx.try_recv() {
                        self.handle(&mut out, more);
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
            user: None,
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

    #[test]
    fn combined_fields_are_escaped_as_nginx_does() {
        let e = Entry {
            user: Some("al\"ice".into()),
            path: "/a\"b".into(),
            referer: Some("r\\\u{7f}".into()),
            user_agent: Some("UA \"quoted\"\t\n\u{e9}".into()),
            ..entry()
        };
        assert_eq!(
            e.format(Format::Combined),
            "10.0.0.1 - al\\x22ice [02/Jan/1970:00:00:00 +0000] \"GET /a\\x22b HTTP/1.1\" 200 12 \"r\\x5C\\x7F\" \"UA \\x22quoted\\x22\\x09\\x0A\\xC3\\xA9\""
        );
        let json: serde_json::Value = serde_json::from_str(&e.format(Format::Json)).unwrap();
        assert_eq!(json["user"], "al\"ice");
    }
}
