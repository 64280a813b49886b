//! Allocator tuning for the process-wide mimalloc (installed in `main.rs`).
//!
//! mimalloc gives freed memory back to the OS (`MADV_DONTNEED`) one second after it was
//! freed. A config apply frees the previous table and document tree (tens of MB for 10,000
//! hosts) and builds new ones; with pushes a second or so apart, every apply then faulted
//! all its memory back in, and the kernel zeroing those pages was a quarter of the apply's
//! CPU time. Ten seconds keeps the memory of back-to-back applies and load bursts mapped and
//! still returns it once things are quiet.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_option_set, mi_option_t, mi_realloc,
    mi_realloc_aligned, mi_zalloc, mi_zalloc_aligned,
};

/// mimalloc as the process's allocator, through its plain entry points wherever their
/// alignment suffices. The `mimalloc` crate's `MiMalloc` calls the aligned ones for every
/// allocation; in mimalloc 3 those take a slow path for any block over 1 KiB whose size class
/// is not a power of two (request and response buffers, boxed futures): they over-allocate by
/// the alignment and mark the page as holding interior pointers, which slows every later free
/// on that page. Plain `mi_malloc` aligns every block of 16 bytes or more to 16 bytes, and
/// smaller ones to their size class, as the C standard asks of `malloc`.
pub struct Mimalloc;

/// The alignment mimalloc's plain allocation guarantees (`MI_MAX_ALIGN_SIZE`), for blocks at
/// least that large.
const PLAIN_ALIGN: usize = 16;

/// Whether a block of `size` bytes from plain `mi_malloc` is aligned enough for `align`.
fn plain_suffices(size: usize, align: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: every method hands the layout's size (and, where plain allocation does not
// guarantee it, its alignment) to mimalloc, which returns null or a block that satisfies them;
// `mi_free` and the reallocs accept any block from either family.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain_suffices(layout.size(), layout.align()) {
            mi_malloc(layout.size()).cast()
        } else {
            mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain_suffices(layout.size(), layout.align()) {
            mi_zalloc(layout.size()).cast()
        } else {
            mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain_suffices(new_size, layout.align()) {
            mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
        }
    }
}

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
    fn blocks_have_the_alignment_their_layout_asks_for() {
        // Sizes around the 1 KiB small-block limit and past it, alignments up to a page.
        for size in [1, 8, 15, 16, 24, 100, 1000, 1024, 1500, 4096, 5000, 70_000] {
            for align in [1, 2, 8, 16, 32, 64, 128, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: the layout has a non-zero size; each block is freed once.
                unsafe {
                    let p = Mimalloc.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xa5, size);
                    let z = Mimalloc.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0, "zeroed size {size} align {align}");
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    let grown = Mimalloc.realloc(p, layout, size * 3);
                    assert_eq!(
                        grown as usize % align,
                        0,
                        "realloc size {size} align {align}"
                    );
                    assert!(std::slice::from_raw_parts(grown, size)
                        .iter()
                        .all(|&b| b == 0xa5));
                    Mimalloc.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());
                    Mimalloc.dealloc(z, layout);
                }
            }
        }
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
