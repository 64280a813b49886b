//! The limits of a request head, the same on every path (`proxy::guard` refuses what is
//! over them on Pingora's; `server` on the connection's reader).

/// Longest request target (path and query).
pub const MAX_TARGET: usize = 8 * 1024;
/// Most header fields.
pub const MAX_HEADERS: usize = 100;
/// Largest total size of header names and values.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
