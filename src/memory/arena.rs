//! Where L1 entry storage comes from: a dedicated jemalloc arena, or the system allocator.
//!
//! A dedicated arena keeps cache entries (long-lived, many sizes) from fragmenting the host
//! process's heap, and lets us report usable sizes exactly (`nallocx`). The arena is created once
//! per process and shared by every cache: jemalloc arenas cannot be freed cheaply, and pinned
//! values may outlive the cache that handed them out.

use once_cell::sync::Lazy;
use std::alloc::Layout;
use std::ffi::c_int;
use tikv_jemalloc_sys as je;

/// Every block is 8-aligned (the entry header holds a u64).
pub const ALIGN: usize = 8;

/// Which allocator a block came from; recorded in the block so it is freed by the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    Jemalloc,
    System,
}

impl Allocator {
    /// The allocator a cache configured with `jemalloc_enabled` uses (System when the arena
    /// could not be created).
    pub fn choose(jemalloc_enabled: bool) -> Allocator {
        if jemalloc_enabled && ARENA.is_some() {
            Allocator::Jemalloc
        } else {
            Allocator::System
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Allocator::Jemalloc => "jemalloc",
            Allocator::System => "system",
        }
    }

    /// Allocates `size` bytes (size > 0), 8-aligned. Null on failure.
    pub fn alloc(self, size: usize) -> *mut u8 {
        match (self, *ARENA) {
            // SAFETY: size > 0 and the flags name an arena that exists for the process's life.
            (Allocator::Jemalloc, Some(flags)) => unsafe { je::mallocx(size, flags) as *mut u8 },
            _ => match Layout::from_size_align(size, ALIGN) {
                // SAFETY: the layout has a non-zero size.
                Ok(layout) => unsafe { std::alloc::alloc(layout) },
                Err(_) => std::ptr::null_mut(),
            },
        }
    }

    /// Frees a block returned by `alloc` of this allocator with the same `size`.
    ///
    /// # Safety
    /// `ptr` came from `self.alloc(size)` and is not used afterwards.
    pub unsafe fn free(self, ptr: *mut u8, size: usize) {
        match (self, *ARENA) {
            // SAFETY: per the contract, ptr is a live mallocx block of this size and flags.
            (Allocator::Jemalloc, Some(flags)) => unsafe { je::sdallocx(ptr.cast(), size, flags) },
            // SAFETY: per the contract, ptr came from std::alloc::alloc with this layout.
            _ => unsafe {
                std::alloc::dealloc(ptr, Layout::from_size_align_unchecked(size, ALIGN))
            },
        }
    }

    /// Bytes a block of `size` really occupies: the size class for jemalloc; for the system
    /// allocator, the request rounded to 16 plus glibc's 8-byte chunk header.
    pub fn usable_size(self, size: usize) -> usize {
        match (self, *ARENA) {
            // SAFETY: nallocx only computes a size class; it allocates nothing.
            (Allocator::Jemalloc, Some(flags)) => unsafe { je::nallocx(size, flags) },
            _ => (size + 8).div_ceil(16) * 16,
        }
    }
}

/// mallocx flags naming the dedicated arena, or None if jemalloc refused to create one.
static ARENA: Lazy<Option<c_int>> = Lazy::new(|| {
    let mut index: u32 = 0;
    let mut len = std::mem::size_of::<u32>();
    // SAFETY: "arenas.create" writes an unsigned int to oldp, whose size we pass in len.
    let rc = unsafe {
        je::mallctl(
            c"arenas.create".as_ptr(),
            (&mut index as *mut u32).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    // No thread cache: a tcache would hand our blocks to other allocations of the same thread
    // and keep freed entry memory out of the arena.
    (rc == 0).then(|| je::MALLOCX_ARENA(index as usize) | je::MALLOCX_TCACHE_NONE)
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_allocators_round_trip() {
        for a in [Allocator::choose(true), Allocator::System] {
            for size in [1usize, 24, 100, 4096, 1 << 20] {
                let p = a.alloc(size);
                assert!(!p.is_null());
                assert_eq!(p as usize % ALIGN, 0);
                // SAFETY: p is a fresh block of `size` bytes.
                unsafe {
                    std::ptr::write_bytes(p, 0xAB, size);
                    a.free(p, size);
                }
                assert!(a.usable_size(size) >= size);
            }
        }
    }

    #[test]
    fn jemalloc_arena_is_available_here() {
        assert_eq!(Allocator::choose(true), Allocator::Jemalloc);
        assert_eq!(Allocator::choose(false), Allocator::System);
        assert_eq!(Allocator::Jemalloc.usable_size(140), 160);
    }
}
