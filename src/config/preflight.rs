//! Checks of what main.yaml names outside itself: folders, files and accounts that start-up
//! opens or looks up. `-t` and start-up both run them (`MainConfig::load`), each through the
//! same function start-up later uses, so that `-t` passes only what start-up takes.

use std::fs::OpenOptions;
use std::path::Path;

use super::error::IssueSink;
use super::main_conf::MainConfig;

impl MainConfig {
    /// Reports every problem at its key; `refused` keys were already reported (their values
    /// are the defaults now) and are not checked again.
    pub(super) fn preflight(&self, sink: &mut IssueSink<'_>, refused: &dyn Fn(&str) -> bool) {
        // Each account on its own, so that both are reported.
        use crate::privileges::{Identity, PrivilegeError};
        if let Some(Err(e)) = self
            .user
            .as_deref()
            .map(|u| Identity::lookup(Some(u), None))
        {
            let message = match e {
                PrivilegeError::NoUser(name) => format!("no user named {name:?}"),
                other => other.to_string(),
            };
            sink.push("user", message);
        }
        if let Some(Err(e)) = self
            .group
            .as_deref()
            .map(|g| Identity::lookup(None, Some(g)))
        {
            let message = match e {
                PrivilegeError::NoGroup(name) => format!("no group named {name:?}"),
                other => other.to_string(),
            };
            sink.push("group", message);
        }
        if let (Some(_), Some(folder)) = (&self.proxy_address_tls, &self.proxy_certificates) {
            if let Err(e) = crate::tls::certs::load_folder(folder) {
                sink.push("proxy_certificates", e.to_string());
            }
        }
        if let (Some(_), Some(cert), Some(key)) = (
            &self.config_tls_address,
            &self.config_tls_certificate,
            &self.config_tls_key_file,
        ) {
            let mut readable = true;
            for (name, path) in [
                ("config_tls_certificate", cert),
                ("config_tls_key_file", key),
            ] {
                if let Err(e) = std::fs::File::open(path) {
                    sink.push(name, format!("cannot read {}: {e}", path.display()));
                    readable = false;
                }
            }
            if readable {
                if let Err(e) = crate::api::listen::acceptor(cert, key) {
                    sink.push("config_tls_certificate", e.to_string());
                }
            }
        }
        if let Some((target, _)) = self.access_log().filter(|_| !refused("access_log")) {
            if let Err(e) = crate::access_log::open(&target) {
                sink.push(
                    "access_log",
                    format!("{} cannot be opened: {e}", self.access_log),
                );
            }
        }
        if let Some(path) = self.error_log.as_deref().filter(|_| !refused("error_log")) {
            if let Err(e) = OpenOptions::new().create(true).append(true).open(path) {
                sink.push(
                    "error_log",
                    format!("{} cannot be opened: {e}", path.display()),
                );
            }
        }
        if !refused("pid_file") {
            let folder = self.pid_file.parent().unwrap_or(Path::new("/"));
            if !folder.is_dir() {
                sink.push(
                    "pid_file",
                    format!("folder {} does not exist", folder.display()),
                );
            }
        }
    }
}
