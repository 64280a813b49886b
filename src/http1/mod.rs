//! The HTTP/1 wire: reading request heads and writing response heads and bodies on the
//! client side (`server`), and reading a backend's response head (`response_head`). The
//! fast lane, Pingora's sessions and the direct path's backend client all use it.

pub mod fields;
pub mod limits;
pub mod response_head;
pub mod server;
