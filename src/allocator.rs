//! Allocator tuning for the process-wide mimalloc (installed in `main.rs`).
//!
//! mimalloc gives freed memory back to the OS (`MADV_DONTNEED`) one second after it was
//! freed. A config apply frees the previous table and document tree (tens of MB for 10,000
//! hosts) and builds new ones; with pushes a second or so apart, every apply then faulted
//! all its memory back in, and the kernel zeroing those pages was a quarter of the apply's
//! CPU time. Ten seconds keeps the memory of back-to-back applies and load bursts mapped and
//! still returns it once things are quiet.

use libmimalloc_sys::{mi_option_set, mi_option_t};

/// mimalloc's `mi_option_purge_delay` (its place in the `mi_option_e` enum of mimalloc.h;
/// the sys crate has no constant for it). A unit test checks it still names the purge delay.
const PURGE_DELAY: mi_option_t = 15;

/// How long freed memory stays mapped, in milliseconds.
pub const PURGE_DELAY_MS: libc::c_long = 10_000;

/// Sets the purge delay, unless the operator chose one with `MIMALLOC_PURGE_DELAY`.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets a value in mimalloc's option table; any value is valid for this option.
    unsafe { mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use libmimalloc_sys::mi_option_get;

    /// The purge delay in effect, in milliseconds.
    fn purge_delay_ms() -> libc::c_long {
        // SAFETY: reads mimalloc's option table.
        unsafe { mi_option_get(PURGE_DELAY) }
    }

    #[test]
    fn tune_sets_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // mimalloc 3's default purge delay is 1000 ms; no other option defaults to that, so
        // this fails if the enum moved and PURGE_DELAY names something else.
        assert_eq!(purge_delay_ms(), 1000);
        tune();
        assert_eq!(purge_delay_ms(), PURGE_DELAY_MS);
    }
}
