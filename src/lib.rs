//! Aralez: a reverse proxy on Cloudflare's Pingora with live-reloadable routing.

pub(crate) mod access_log;
pub mod allocator;
pub(crate) mod api;
pub mod auth;
pub mod balance;
pub mod check;
pub mod config;
pub(crate) mod downstream;
pub mod health;
pub(crate) mod http1;
pub(crate) mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod pidfile;
pub(crate) mod privileges;
pub(crate) mod providers;
pub(crate) mod proxy;
pub(crate) mod request;
pub(crate) mod retire;
pub mod routing;
pub mod server;
pub mod tls;
pub(crate) mod watch;
