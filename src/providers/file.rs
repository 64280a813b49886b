//! The file provider: watches upstreams.yaml and applies it when it changes. Events about other
//! files of its folder are ignored (an invalid file is not re-applied and re-logged whenever a
//! neighbour changes); identical content is a no-op in the store.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use log::{debug, error, info};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::metrics::{count_failed_reload, count_reload};
use crate::routing::{ApplyOutcome, RouteStore};
use crate::watch::{folder_of, watch_folder};
use tokio::signal::unix::{signal, SignalKind};

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
        if let Ok(Ok(outcome)) = &result {
            count_reload("file", outcome);
        }
        match result {
            Ok(Ok(ApplyOutcome::Applied(summary))) => info!("reloaded {name}: {summary}"),
            Ok(Ok(ApplyOutcome::Unchanged(summary))) => {
                debug!("{name} unchanged, still generation {}", summary.generation)
            }
            Ok(Err(e)) => {
                count_failed_reload("file");
                error!(
                    "reload of {name} failed; generation {} stays live:\n{e}",
                    self.store.load().summary.generation
                )
            }
            Err(e) => error!("reload of {name} failed: {e}"),
        }
    }
}

#[async_trait]
impl BackgroundService for FileProvider {
    async fn start(&self, shutdown: ShutdownWatch) {
        // SIGHUP reloads too, as nginx operators expect. Registered before the log line below,
        // which tests (and operators) may take as "ready for SIGHUP".
        let hup = signal(SignalKind::hangup());
        info!(
            "watching {} for changes (SIGHUP reloads too)",
            self.path.display()
        );
        let hangup = async {
            let Ok(mut hup) = hup else {
                return std::future::pending().await;
            };
            while hup.recv().await.is_some() {
                info!("SIGHUP: reloading {}", self.path.display());
                self.reload().await;
            }
        };
        tokio::select! {
            _ = watch_folder(folder_of(&self.path), Some(&self.path), shutdown, || self.reload()) => {}
            _ = hangup => {}
        }
    }
}
