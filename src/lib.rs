//! Aralez: a reverse proxy on Cloudflare's Pingora with live-reloadable routing.

pub mod config;
