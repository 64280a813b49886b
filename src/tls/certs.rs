//! The proxy's certificates: every `{NAME}.crt` + `{NAME}.key` pair of a folder, indexed by
//! the names inside each certificate for SNI selection.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pingora::tls::nid::Nid;
use pingora::tls::pkey::{PKey, Private};
use pingora::tls::x509::X509;

/// One loaded pair: the leaf, its chain and the key.
pub struct CertPair {
    /// The file stem (`NAME`).
    pub name: String,
    pub leaf: X509,
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
    /// DNS names it serves, lowercased (SANs, or the CN when there are none).
    pub hosts: Vec<String>,
}

impl CertPair {
    /// When the leaf expires, as Unix time.
    pub fn expires_at(&self) -> Option<i64> {
        let epoch = openssl::asn1::Asn1Time::from_unix(0).ok()?;
        let diff = epoch.diff(self.leaf.not_after()).ok()?;
        Some(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
    }
}

/// A problem with one pair; the others still load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct CertError {
    pub file: PathBuf,
    pub message: String,
}

/// Certificates by name: exact names, then single-label wildcards, then the default.
#[derive(Default)]
pub struct CertIndex {
    exact: HashMap<String, Arc<CertPair>>,
    /// `*.example.com` is stored under `example.com`.
    wildcard: HashMap<String, Arc<CertPair>>,
    default: Option<Arc<CertPair>>,
    pairs: Vec<Arc<CertPair>>,
}

impl CertIndex {
    /// The certificate for `sni`: exact name, else a wildcard covering exactly its first
    /// label, else the default (`default.crt`, or the first pair by file name).
    pub fn select(&self, sni: Option<&str>) -> Option<&Arc<CertPair>> {
        let found = sni.and_then(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            self.exact.get(&name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
        });
        found.or(self.default.as_ref())
    }

    /// Number of usable pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Every usable pair, by file name.
    pub fn pairs(&self) -> &[Arc<CertPair>] {
        &self.pairs
    }
}

fn names_of(cert: &X509) -> Vec<String> {
    let sans: Vec<String> = cert
        .subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.dnsname().map(|d| d.to_ascii_lowercase()))
                .collect()
        })
        .unwrap_or_default();
    if !sans.is_empty() {
        return sans;
    }
    cert.subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .filter_map(|e| e.data().to_string().ok().map(|s| s.to_ascii_lowercase()))
        .collect()
}

/// Loads one pair; the key must match the leaf.
pub fn load_pair(cert_path: &Path, key_path: &Path) -> Result<CertPair, CertError> {
    let fail = |file: &Path, message: String| CertError {
        file: file.to_path_buf(),
        message,
    };
    let pem = std::fs::read(cert_path).map_err(|e| fail(cert_path, format!("cannot read: {e}")))?;
    let mut certs = X509::stack_from_pem(&pem)
        .map_err(|e| fail(cert_path, format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(fail(cert_path, "no certificate in the file".into()));
    }
    let leaf = certs.remove(0);
    let key_pem =
        std::fs::read(key_path).map_err(|e| fail(key_path, format!("cannot read: {e}")))?;
    let key = PKey::private_key_from_pem(&key_pem)
        .map_err(|e| fail(key_path, format!("not a PEM private key: {e}")))?;
    let matches = leaf
        .public_key()
        .map(|public| public.public_eq(&key))
        .unwrap_or(false);
    if !matches {
        return Err(fail(
            key_path,
            format!("does not match the certificate {}", cert_path.display()),
        ));
    }
    let hosts = names_of(&leaf);
    let name = cert_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(CertPair {
        name,
        leaf,
        chain: certs,
        key,
        hosts,
    })
}

/// Loads every pair of `folder`. Pairs that fail are reported and left out; a `.crt` without
/// its `.key` (yet) is reported too.
pub fn load_folder(folder: &Path) -> Result<(CertIndex, Vec<CertError>), CertError> {
    let entries = std::fs::read_dir(folder).map_err(|e| CertError {
        file: folder.to_path_buf(),
        message: format!("cannot read the certificate folder: {e}"),
    })?;
    let mut certs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    certs.sort();
    let mut index = CertIndex::default();
    let mut errors = Vec::new();
    for cert_path in certs {
        let key_path = cert_path.with_extension("key");
        if !key_path.exists() {
            errors.push(CertError {
                file: cert_path.clone(),
                message: format!("no matching key {}", key_path.display()),
            });
            continue;
        }
        let pair = match load_pair(&cert_path, &key_path) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        index.pairs.push(pair.clone());
        for host in &pair.hosts {
            let map = match host.strip_prefix("*.") {
                Some(parent) => index.wildcard.entry(parent.to_string()),
                None => index.exact.entry(host.clone()),
            };
            // The first pair by file name wins a name both claim.
            map.or_insert_with(|| pair.clone());
        }
        if pair.name == "default" || index.default.is_none() {
            index.default = Some(pair.clone());
        }
    }
    Ok((index, errors))
}
