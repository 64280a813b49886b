//! Every integration test in one binary: one link and one copy of the helpers (`common`)
//! instead of one per file. Each module is one area's tests; run one with
//! `cargo test --test it hostile::`.

mod common;

mod api;
mod auth;
mod backend_connections;
mod broken_backends;
mod cli;
mod config_bounds;
mod config_fuzz;
mod consul;
mod fast_lane;
mod fleet;
mod foreground;
mod grpc;
mod health;
mod health_scale;
mod hostile;
mod hosts;
mod limits;
mod ops;
mod parity;
mod path_auth;
mod reload;
mod response_framing;
mod routing;
mod shutdown;
mod streaming;
mod tls;
mod websocket;
