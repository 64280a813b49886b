//! The live routing table and the one function that replaces it.
//!
//! Every source (file watcher, Consul, config API) calls [`RouteStore::apply`]: parse,
//! validate, compile, then one `ArcSwap::store`. A request loads the table once and keeps
//! that snapshot to its end, so a reload can never show it a half-built table.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::sync::watch;

use crate::config::upstreams::ConsulSettings;
use crate::config::{ConfigError, UpstreamsConfig, ValidationContext};

use super::compile::{compile, CompileEnv, Resolver};
use super::table::{RoutingTable, Summary};
use crate::health::HealthRegistry;
use crate::metrics::METRICS;
use crate::retire::retire;
use crate::tls::detect::detect_all;

/// What `apply` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// A new table is live.
    Applied(Summary),
    /// The document was identical to the live one; nothing changed.
    Unchanged(Summary),
}

impl ApplyOutcome {
    pub fn summary(&self) -> Summary {
        match self {
            ApplyOutcome::Applied(s) | ApplyOutcome::Unchanged(s) => *s,
        }
    }
}

struct Writer {
    /// The text of the live document, to skip identical reloads.
    live_text: Option<String>,
    /// How the live document is named in errors.
    live_source: String,
    generation: u64,
    /// Instances of Consul services, as last discovered.
    discovered: HashMap<String, Vec<SocketAddr>>,
}

/// The live table, shared by the proxy and every config source.
pub struct RouteStore {
    live: ArcSwap<RoutingTable>,
    writer: Mutex<Writer>,
    ctx: ValidationContext,
    resolve: Box<Resolver>,
    health: Arc<HealthRegistry>,
    sticky_key: Vec<u8>,
    /// The Consul settings of the live document, for the Consul provider.
    consul: watch::Sender<Option<ConsulSettings>>,
}

impl RouteStore {
    /// An empty store (generation 0, no routes), with a random sticky-id key.
    pub fn new(ctx: ValidationContext, resolve: Box<Resolver>) -> Self {
        RouteStore {
            live: ArcSwap::from_pointee(RoutingTable::default()),
            writer: Mutex::new(Writer {
                live_text: None,
                live_source: String::new(),
                generation: 0,
                discovered: HashMap::new(),
            }),
            ctx,
            resolve,
            health: Arc::new(HealthRegistry::default()),
            // OpenSSL's generator does not fail once seeded; `main` sets the real key anyway.
            sticky_key: crate::balance::sticky::random_key().unwrap_or_default(),
            consul: watch::channel(None).0,
        }
    }

    /// Follows the Consul settings of the live document (None without `provider: consul`).
    pub fn watch_consul(&self) -> watch::Receiver<Option<ConsulSettings>> {
        self.consul.subscribe()
    }

    /// Records the instances of a Consul service and, when they changed, rebuilds the live
    /// table with them. Returns the new summary, or None when nothing changed. Blocking.
    pub fn set_discovered(
        &self,
        service: &str,
        mut instances: Vec<SocketAddr>,
    ) -> Result<Option<Summary>, ConfigError> {
        instances.sort();
        instances.dedup();
        let mut writer = self.lock();
        if writer.discovered.get(service) == Some(&instances) {
            return Ok(None);
        }
        writer.discovered.insert(service.to_string(), instances);
        let Some(text) = writer.live_text.clone() else {
            return Ok(None);
        };
        let source = writer.live_source.clone();
        let _held = crate::retire::hold();
        let started = std::time::Instant::now();
        let (table, _) = build(
            &text,
            &source,
            self.ctx,
            writer.generation + 1,
            &self.env(&writer),
        )?;
        detect_new_backends(&table);
        // The same document with other instances: the text stays.
        Ok(Some(self.install(&mut writer, table, None, started)))
    }

    /// Makes `table` live: the one swap every write goes through (an applied document, or
    /// the live one with new Consul instances). Times the write, forgets the metric series
    /// of hosts that are gone, and retires the old table (with the old text when `text`
    /// replaces it).
    fn install(
        &self,
        writer: &mut Writer,
        table: RoutingTable,
        text: Option<&str>,
        started: std::time::Instant,
    ) -> Summary {
        let summary = table.summary;
        let table = Arc::new(table);
        let old_table = self.live.swap(table.clone());
        METRICS
            .config_apply
            .observe(started.elapsed().as_secs_f64());
        // Series of hosts that are gone would otherwise be exported forever.
        METRICS.forget_hosts(
            old_table
                .hosts()
                .map(|(h, _)| h)
                .filter(|h| !table.has_host(h)),
        );
        writer.generation = summary.generation;
        let old_text = text.and_then(|t| writer.live_text.replace(t.to_string()));
        retire((old_table, old_text));
        summary
    }

    /// Sets the key of sticky-session ids (the master key, so that a fleet agrees on them;
    /// see `balance::sticky::key_for`). Call it before the first apply.
    pub fn with_sticky_key(mut self, key: &[u8]) -> Self {
        self.sticky_key = key.to_vec();
        self
    }

    /// The health of every backend, shared with the health task.
    pub fn health(&self) -> &Arc<HealthRegistry> {
        &self.health
    }

    fn env<'a>(&'a self, writer: &'a Writer) -> CompileEnv<'a> {
        CompileEnv {
            resolve: &self.resolve,
            health: &self.health,
            sticky_key: &self.sticky_key,
            discovered: &writer.discovered,
        }
    }

    /// The live table. Cheap: one atomic load and reference count increment.
    pub fn load(&self) -> Arc<RoutingTable> {
        self.live.load_full()
    }

    /// Parses, validates and compiles `text` and makes it live. `source` names it in errors.
    /// On error the live table is untouched. Blocking (resolves names): call it from a
    /// blocking context.
    pub fn apply(&self, text: &str, source: &str) -> Result<ApplyOutcome, ConfigError> {
        let mut writer = self.lock();
        self.apply_locked(&mut writer, text, source, None)
            .map_err(|e| match e {
                ApplyError::Config(c) => c,
                // Unreachable without a persist path; kept total rather than panicking.
                ApplyError::Persist { path, source } => {
                    ConfigError::whole_file(&path.display().to_string(), source.to_string())
                }
            })
    }

    /// Like `apply`, and writes the document to `path` (atomically) before it goes live, so
    /// that a restart serves it. If the write fails nothing changes.
    pub fn apply_and_persist(
        &self,
        text: &str,
        source: &str,
        path: &Path,
    ) -> Result<ApplyOutcome, ApplyError> {
        let mut writer = self.lock();
        self.apply_locked(&mut writer, text, source, Some(path))
    }

    /// Parses, validates and compiles `text` without making it live (resolves names: blocking).
    pub fn check(&self, text: &str, source: &str) -> Result<(), ConfigError> {
        let writer = self.lock();
        build(
            text,
            source,
            self.ctx,
            writer.generation + 1,
            &self.env(&writer),
        )
        .map(|_| ())
    }

    /// Reads `path` and applies it. The read happens under the writer lock, so it can never
    /// see a file older than the live table when pushes and reloads race.
    pub fn reload_file(&self, path: &Path) -> Result<ApplyOutcome, ConfigError> {
        let mut writer = self.lock();
        let text = crate::config::read_file(path)?;
        self.apply_locked(&mut writer, &text, &path.display().to_string(), None)
            .map_err(|e| match e {
                ApplyError::Config(c) => c,
                ApplyError::Persist { path, source } => {
                    ConfigError::whole_file(&path.display().to_string(), source.to_string())
                }
            })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writer> {
        // A poisoned lock only means another apply panicked; its state is still consistent
        // because the table is swapped last.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply_locked(
        &self,
        writer: &mut Writer,
        text: &str,
        source: &str,
        persist: Option<&Path>,
    ) -> Result<ApplyOutcome, ApplyError> {
        if writer.live_text.as_deref() == Some(text) {
            return Ok(ApplyOutcome::Unchanged(self.live.load().summary));
        }
        // Nothing retired during the apply is freed before it ends (see `retire::hold`).
        let _held = crate::retire::hold();
        let started = std::time::Instant::now();
        let (table, consul) = build(
            text,
            source,
            self.ctx,
            writer.generation + 1,
            &self.env(writer),
        )
        .map_err(ApplyError::Config)?;
        detect_new_backends(&table);
        if let Some(path) = persist {
            write_atomic(path, text).map_err(|source| ApplyError::Persist {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let summary = self.install(writer, table, Some(text), started);
        writer.live_source = source.to_string();
        self.consul.send_if_modified(|current| {
            let changed = *current != consul;
            if changed {
                *current = consul;
            }
            changed
        });
        Ok(ApplyOutcome::Applied(summary))
    }
}

/// Most time detection of new backends may add to an apply.
const DETECT_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Finds out what backends never seen before speak, so that the first request to them goes
/// out in the right protocol.
fn detect_new_backends(table: &RoutingTable) {
    let mut seen = std::collections::HashSet::new();
    let mut targets = Vec::new();
    for (host, routes) in table.hosts() {
        for route in routes.routes() {
            for b in route.backends.iter() {
                if !b.health.detected() && seen.insert(b.addr) {
                    targets.push((b.addr, host.to_string(), b.health.clone()));
                }
            }
        }
    }
    detect_all(targets, DETECT_LIMIT);
}

/// Why a document did not go live.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Config(ConfigError),
    #[error("cannot save {}: {source}", path.display())]
    Persist {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Replaces `path` with `text` so that readers see the old or the new content, never a mix,
/// and the new content survives a crash: temp file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    // Replace the file a symlink points to, not the link (config managers link files in).
    let path = &std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let folder = crate::watch::folder_of(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = folder.join(format!(".{name}.aralez-{}.tmp", std::process::id()));
    // The document may hold credentials: the new file keeps the old one's mode (0600 stays
    // 0600), and starts owner-only until then.
    let mode = std::fs::metadata(path).ok().map(|m| m.permissions());
    let result = (|| {
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?
        };
        if let Some(mode) = mode {
            file.set_permissions(mode)?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable; not every filesystem supports syncing a folder.
        if let Ok(dir) = std::fs::File::open(folder) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Parse, validate and compile without making anything live (used by `-t` and `apply`).
pub fn build(
    text: &str,
    source: &str,
    ctx: ValidationContext,
    generation: u64,
    env: &CompileEnv<'_>,
) -> Result<(RoutingTable, Option<ConsulSettings>), ConfigError> {
    let mut config = UpstreamsConfig::parse(text, source, ctx)?;
    let table = compile(&config, source, generation, env).map_err(|e| e.locate(text))?;
    let consul = config.consul.take();
    retire(config);
    Ok((table, consul))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::compile::system_resolver;

    const DOC: &str = "a.com:\n  paths:\n    \"/\":\n      servers: [\"127.0.0.1:1\"]\n";

    fn store() -> RouteStore {
        RouteStore::new(ValidationContext::default(), Box::new(system_resolver))
    }

    #[test]
    fn write_atomic_keeps_symlinks_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.yaml");
        std::fs::write(&real, "old").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("upstreams.yaml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, "new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        // A new file is owner-only.
        let fresh = dir.path().join("fresh.yaml");
        write_atomic(&fresh, "x").unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temp file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[test]
    fn apply_swaps_and_counts_generations() {
        let s = store();
        assert_eq!(s.load().summary.generation, 0);
        let out = s.apply(DOC, "u").unwrap();
        assert!(matches!(
            out,
            ApplyOutcome::Applied(Summary {
                generation: 1,
                hosts: 1,
                ..
            })
        ));
        assert!(matches!(
            s.apply(DOC, "u").unwrap(),
            ApplyOutcome::Unchanged(Summary { generation: 1, .. })
        ));
        let doc2 = DOC.replace("a.com", "b.com");
        assert_eq!(s.apply(&doc2, "u").unwrap().summary().generation, 2);
    }

    #[test]
    fn persisted_documents_are_not_reloaded_as_new() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upstreams.yaml");
        let s = store();
        let out = s.apply_and_persist(DOC, "push", &path).unwrap();
        assert_eq!(out.summary().generation, 1);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), DOC);
        assert!(matches!(
            s.reload_file(&path).unwrap(),
            ApplyOutcome::Unchanged(_)
        ));
        // A bad document is neither applied nor written.
        assert!(s.apply_and_persist("x: [", "push", &path).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), DOC);
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temp files left behind");
    }

    #[test]
    fn bad_input_keeps_the_live_table() {
        let s = store();
        s.apply(DOC, "u").unwrap();
        let before = s.load();
        assert!(s
            .apply(
                "a.com:\n  paths:\n    \"/\":\n      servers: [\"x\"]\n",
                "u"
            )
            .is_err());
        assert!(Arc::ptr_eq(&before, &s.load()));
        // The failed text does not count as live: applying the good one again is unchanged.
        assert!(matches!(
            s.apply(DOC, "u").unwrap(),
            ApplyOutcome::Unchanged(_)
        ));
    }
}
