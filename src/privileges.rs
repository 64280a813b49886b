//! Dropping root to main.yaml's `user`/`group` once the listeners are bound.
//!
//! Pingora drops privileges only while it daemonizes, which is before it binds, so ports below
//! 1024 could not be used, and it never drops them in the foreground. Here the process binds
//! as root; a background task waits until every proxy listener is up, then switches to the
//! user and group. glibc applies setuid/setgid/setgroups to every thread of the process. No
//! request is served before the switch: the proxy awaits [`settled`] first.

use std::collections::HashSet;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use log::{error, info, warn};
use nix::unistd::{Gid, Group, Uid, User};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("user: no user named {0:?}")]
    NoUser(String),
    #[error("group: no group named {0:?}")]
    NoGroup(String),
    #[error("cannot look up {0:?}: {1}")]
    Lookup(String, nix::Error),
    #[error("{0} failed: {1}")]
    Switch(&'static str, nix::Error),
    #[error("still running as uid {0} after setuid")]
    NotDropped(u32),
}

/// Who the process becomes.
#[derive(Debug, Clone)]
pub struct Identity {
    /// None: only the group changes.
    user: Option<(CString, Uid)>,
    gid: Gid,
    /// For the log line.
    names: String,
}

impl Identity {
    /// The identity named by `user`/`group`, or None when there is nothing to drop: neither is
    /// set, or the process is not root (then a warning says they are ignored, as nginx does).
    /// Unknown names are an error either way, so that `-t` and start-up agree on any account.
    pub fn resolve(
        user: Option<&str>,
        group: Option<&str>,
    ) -> Result<Option<Identity>, PrivilegeError> {
        let identity = Self::lookup(user, group)?;
        if identity.is_some() && !Uid::effective().is_root() {
            warn!("user/group are set but aralez was not started as root: they are ignored");
            return Ok(None);
        }
        Ok(identity)
    }

    /// The identity named by `user`/`group` (None when neither is set), whoever runs this.
    pub fn lookup(
        user: Option<&str>,
        group: Option<&str>,
    ) -> Result<Option<Identity>, PrivilegeError> {
        if user.is_none() && group.is_none() {
            return Ok(None);
        }
        let user = match user {
            Some(name) => Some(
                User::from_name(name)
                    .map_err(|e| PrivilegeError::Lookup(name.to_string(), e))?
                    .ok_or_else(|| PrivilegeError::NoUser(name.to_string()))?,
            ),
            None => None,
        };
        let gid = match group {
            Some(name) => {
                Group::from_name(name)
                    .map_err(|e| PrivilegeError::Lookup(name.to_string(), e))?
                    .ok_or_else(|| PrivilegeError::NoGroup(name.to_string()))?
                    .gid
            }
            // The user's primary group.
            None => user.as_ref().map_or(Gid::effective(), |u| u.gid),
        };
        let names = format!(
            "user {} group {}",
            user.as_ref().map_or("root", |u| u.name.as_str()),
            group.unwrap_or("(primary)")
        );
        let user = match user {
            Some(u) => {
                let name = CString::new(u.name.clone())
                    .map_err(|_| PrivilegeError::NoUser(u.name.clone()))?;
                Some((name, u.uid))
            }
            None => None,
        };
        Ok(Some(Identity { user, gid, names }))
    }

    /// Supplementary groups, then the group, then the user: once the user is switched, the
    /// groups can no longer be changed.
    fn switch(&self) -> Result<(), PrivilegeError> {
        match &self.user {
            Some((name, _)) => nix::unistd::initgroups(name, self.gid)
                .map_err(|e| PrivilegeError::Switch("initgroups", e))?,
            None => nix::unistd::setgroups(&[self.gid])
                .map_err(|e| PrivilegeError::Switch("setgroups", e))?,
        }
        nix::unistd::setgid(self.gid).map_err(|e| PrivilegeError::Switch("setgid", e))?;
        if let Some((_, uid)) = &self.user {
            nix::unistd::setuid(*uid).map_err(|e| PrivilegeError::Switch("setuid", e))?;
            if Uid::current() != *uid || Uid::effective() != *uid {
                return Err(PrivilegeError::NotDropped(Uid::effective().as_raw()));
            }
        }
        Ok(())
    }
}

/// Whether requests may be served: false only between start-up and the drop.
static SETTLED: AtomicBool = AtomicBool::new(true);
static SETTLED_WATCH: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::Sender::new(true));

/// Whether requests may be served (the drop is done, or there is none).
pub fn is_settled() -> bool {
    SETTLED.load(Ordering::Acquire)
}

/// Holds requests until the drop is done; one atomic load once it is.
pub async fn settled() {
    if is_settled() {
        return;
    }
    let mut rx = SETTLED_WATCH.subscribe();
    let _ = rx.wait_for(|done| *done).await;
}

fn set_settled(done: bool) {
    SETTLED.store(done, Ordering::Release);
    SETTLED_WATCH.send_replace(done);
}

/// The background task that drops privileges once the proxy's ports are listening.
pub struct PrivilegeDrop {
    identity: Identity,
    ports: Vec<u16>,
}

impl PrivilegeDrop {
    /// Requests wait from now until the drop.
    pub fn new(identity: Identity, ports: Vec<u16>) -> Self {
        set_settled(false);
        PrivilegeDrop { identity, ports }
    }
}

/// How long the listeners get to come up before the process gives up.
const BIND_WAIT: Duration = Duration::from_secs(30);

#[async_trait]
impl BackgroundService for PrivilegeDrop {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let started = Instant::now();
        while !listening(&self.ports) {
            if started.elapsed() > BIND_WAIT {
                error!(
                    "the proxy listeners (ports {:?}) did not come up within {BIND_WAIT:?}; not staying root",
                    self.ports
                );
                std::process::exit(1);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        match self.identity.switch() {
            Ok(()) => {
                info!("listeners bound; now running as {}", self.identity.names);
                set_settled(true);
            }
            Err(e) => {
                // Serving as root when told not to would be worse than not serving.
                error!("cannot drop privileges to {}: {e}", self.identity.names);
                std::process::exit(1);
            }
        }
    }
}

/// Whether this process holds a listening TCP socket on each of `ports` (from /proc: Pingora
/// binds in its own tasks and says nothing when it is done).
fn listening(ports: &[u16]) -> bool {
    let ours = socket_inodes();
    let mut found = HashSet::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if cols.len() < 10 || cols[3] != "0A" {
                continue;
            }
            let port = cols[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            let inode = cols[9].parse::<u64>().ok();
            if let (Some(port), Some(inode)) = (port, inode) {
                if ours.contains(&inode) {
                    found.insert(port);
                }
            }
        }
    }
    ports.iter().all(|p| found.contains(p))
}

/// Inodes of the sockets among this process's file descriptors.
fn socket_inodes() -> HashSet<u64> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return HashSet::new();
    };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_listener_is_seen() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(listening(&[port]));
        drop(l);
        assert!(!listening(&[port]));
    }

    #[test]
    fn nothing_to_drop_without_user_or_group() {
        assert!(Identity::resolve(None, None).unwrap().is_none());
    }
}
