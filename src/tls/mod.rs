//! TLS: the certificate folder with SNI selection and hot reload.

pub mod certs;
pub mod detect;
pub mod listener;
pub mod sni;

pub use certs::{CertIndex, CertPair};
pub use listener::TlsListener;
pub use sni::{CertStore, CertWatcher, SniCallback};
