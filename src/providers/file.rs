//! The file provider: watches upstreams.yaml and applies it when it changes.
//!
//! The folder is watched, not the file, so that saves that replace the file (editor temp
//! file + rename, Kubernetes' symlink swap) are seen as well as in-place rewrites. Events are
//! debounced on the trailing edge: a burst of writes ends in one reload of the final content.
//! Any event in the folder triggers a read; identical content is a no-op in the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use log::{debug, error, info};
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

use crate::routing::{ApplyOutcome, RouteStore};

/// Quiet time after the last event before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// Longest a reload waits while events keep coming (a busy folder must not starve it).
pub const MAX_DELAY: Duration = Duration::from_millis(800);

pub struct FileProvider {
    path: PathBuf,
    store: Arc<RouteStore>,
}

impl FileProvider {
    pub fn new(path: PathBuf, store: Arc<RouteStore>) -> Self {
        FileProvider { path, store }
    }

    /// Reads the file and applies it, logging the outcome. Never panics on bad content.
    pub async fn reload(&self) {
        let path = self.path.clone();
        let store = self.store.clone();
        let name = path.display().to_string();
        let result = tokio::task::spawn_blocking(move || store.reload_file(&path)).await;
        match result {
            Ok(Ok(ApplyOutcome::Applied(summary))) => info!("reloaded {name}: {summary}"),
            Ok(Ok(ApplyOutcome::Unchanged(summary))) => {
                debug!("{name} unchanged, still generation {}", summary.generation)
            }
            Ok(Err(e)) => error!(
                "reload of {name} failed; generation {} stays live:\n{e}",
                self.store.load().summary.generation
            ),
            Err(e) => error!("reload of {name} failed: {e}"),
        }
    }
}

/// Whether an event can have changed the file's content (reads are ignored, or our own
/// reads would trigger reloads forever).
fn may_change(event: &Event) -> bool {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

fn watch_folder(path: &Path, tx: mpsc::UnboundedSender<()>) -> notify::Result<impl Watcher> {
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<Event>| match res {
        Ok(event) if may_change(&event) => {
            let _ = tx.send(());
        }
        Ok(_) => {}
        Err(e) => error!("file watcher error: {e}"),
    })?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    watcher.watch(folder, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

#[async_trait]
impl BackgroundService for FileProvider {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        // Kept alive for the life of the loop; dropping it stops the watch.
        let _watcher = match watch_folder(&self.path, tx) {
            Ok(w) => w,
            Err(e) => {
                error!(
                    "cannot watch {}: {e}; changes will not be reloaded",
                    self.path.display()
                );
                return;
            }
        };
        info!("watching {} for changes", self.path.display());
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                event = rx.recv() => if event.is_none() { return },
            }
            let first = Instant::now();
            loop {
                let wait = DEBOUNCE.min(MAX_DELAY.saturating_sub(first.elapsed()));
                match timeout(wait, rx.recv()).await {
                    Ok(Some(())) if first.elapsed() < MAX_DELAY => continue,
                    Ok(None) => return,
                    _ => break,
                }
            }
            self.reload().await;
        }
    }
}
