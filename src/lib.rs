//! Aralez: a reverse proxy on Cloudflare's Pingora with live-reloadable routing.

pub mod access_log;
pub mod allocator;
pub mod api;
pub mod auth;
pub mod balance;
pub mod check;
pub mod config;
pub mod downstream;
pub mod health;
pub mod http1;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod pidfile;
pub mod privileges;
pub mod providers;
pub mod proxy;
pub mod request;
pub mod retire;
pub mod routing;
pub mod server;
pub mod tls;
pub mod watch;
