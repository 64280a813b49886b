//! The TLS listener's certificate choice, per handshake, from a live certificate index.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use log::{debug, error, info, warn};
use pingora::listeners::TlsAccept;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::tls::ext;
use pingora::tls::ssl::{NameType, SslRef};

use super::certs::{load_folder, CertError, CertIndex};
use crate::metrics::METRICS;
use crate::watch::watch_folder;

/// The certificate folder and the index loaded from it, swapped whole on every change.
pub struct CertStore {
    folder: PathBuf,
    live: ArcSwap<CertIndex>,
}

impl CertStore {
    /// Loads the folder. Fails only when the folder cannot be read; broken pairs are logged.
    pub fn load(folder: PathBuf) -> Result<Arc<CertStore>, CertError> {
        let (index, errors) = load_folder(&folder)?;
        for e in &errors {
            error!("certificate skipped: {e}");
        }
        if index.is_empty() {
            warn!(
                "no usable certificate in {}: TLS handshakes fail until one is added",
                folder.display()
            );
        } else {
            info!(
                "loaded {} certificates from {}",
                index.len(),
                folder.display()
            );
        }
        publish_metrics(None, &index);
        Ok(Arc::new(CertStore {
            folder,
            live: ArcSwap::from_pointee(index),
        }))
    }

    /// Reloads the folder; the old index stays live if the folder cannot be read.
    pub fn reload(&self) {
        match load_folder(&self.folder) {
            Ok((index, errors)) => {
                for e in &errors {
                    error!("certificate skipped: {e}");
                }
                info!(
                    "certificates reloaded: {} usable in {}",
                    index.len(),
                    self.folder.display()
                );
                let old = self.live.swap(Arc::new(index));
                publish_metrics(Some(&old), &self.live.load());
            }
            Err(e) => error!("certificates not reloaded: {e}"),
        }
    }

    pub fn index(&self) -> Arc<CertIndex> {
        self.live.load_full()
    }
}

/// Count and expiry of the loaded certificates; names `old` had and `index` lacks are
/// dropped. Set and drop, never reset and refill: a scrape in between would miss every series.
fn publish_metrics(old: Option<&CertIndex>, index: &CertIndex) {
    METRICS.tls_certificates.set(index.len() as i64);
    for pair in index.pairs() {
        match pair.expires_at() {
            Some(t) => METRICS.tls_expiry.with_label_values(&[&pair.name]).set(t),
            None => {
                let _ = METRICS.tls_expiry.remove_label_values(&[&pair.name]);
            }
        }
    }
    let kept = |name: &str| index.pairs().iter().any(|p| p.name == name);
    for gone in old.into_iter().flat_map(|o| o.pairs()) {
        if !kept(&gone.name) {
            // Absent when its expiry could not be read: nothing to drop.
            let _ = METRICS.tls_expiry.remove_label_values(&[&gone.name]);
        }
    }
}

/// Installs the certificate chosen by SNI during the handshake.
pub struct SniCallback(pub Arc<CertStore>);

#[async_trait]
impl TlsAccept for SniCallback {
    async fn certificate_callback(&self, ssl: &mut SslRef) {
        let index = self.0.index();
        let sni = ssl.servername(NameType::HOST_NAME).map(str::to_string);
        let Some(pair) = index.select(sni.as_deref()) else {
            debug!("no certificate for SNI {sni:?}: handshake refused");
            return;
        };
        let installed = ext::ssl_use_certificate(ssl, &pair.leaf)
            .and_then(|_| ext::ssl_use_private_key(ssl, &pair.key))
            .and_then(|_| {
                pair.chain
                    .iter()
                    .try_for_each(|c| ext::ssl_add_chain_cert(ssl, c))
            });
        if let Err(e) = installed {
            error!("cannot use certificate {} for SNI {sni:?}: {e}", pair.name);
        }
    }
}

/// Reloads the certificate folder when it changes.
pub struct CertWatcher(pub Arc<CertStore>);

#[async_trait]
impl BackgroundService for CertWatcher {
    async fn start(&self, shutdown: ShutdownWatch) {
        let store = self.0.clone();
        watch_folder(&store.folder.clone(), None, shutdown, || {
            let store = store.clone();
            async move {
                let _ = tokio::task::spawn_blocking(move || store.reload()).await;
            }
        })
        .await;
    }
}
