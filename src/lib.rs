//! Aralez: a reverse proxy on Cloudflare's Pingora with live-reloadable routing.

pub mod balance;
pub mod config;
pub mod routing;
