//! Where L1 entry storage comes from: a dedicated jemalloc arena, or the system allocator.
//!
//! A dedicated arena keeps cache entries (long-lived, many sizes) from fragmenting the host
//! process's heap, and lets us report usable sizes exactly (`nallocx`). The arena is created once
//! per process and shared by every cache: jemalloc arenas cannot be freed cheaply, and pinned
//! values may outlive the cache that handed them out.
//!
//! Each thread allocates small blocks through a thread cache of its own made for this arena
//! (an explicit jemalloc tcache, destroyed when the thread exits). Without one, every
//! allocation and free took the arena's mutex: ~640 of the ~1,230 instructions of a set that
//! replaces an entry (callgrind), and a lock that two threads setting at once contend for. A
//! thread's own tcache (not the thread's default one) only ever holds this arena's blocks, so
//! entry memory never leaks into the host's other allocations. Blocks above `TCACHE_MAX` go
//! straight to the arena, which bounds what a thread's cache can hold back.

use once_cell::sync::Lazy;
use std::alloc::Layout;
use std::ffi::{c_int, c_uint, c_void};
use tikv_jemalloc_sys as je;

/// Every block is 8-aligned (the entry header holds a u64).
pub const ALIGN: usize = 8;

/// Largest block served through the thread's cache. Entries are mostly small; with this bound a
/// thread's cache holds back at most ~1.25 MB (jemalloc keeps at most 200 blocks of each of the
/// 21 size classes up to 1 KiB), however the thread allocates and frees. An explicit tcache is
/// never trimmed by jemalloc's idle-time GC, hence the bound.
const TCACHE_MAX: usize = 1024;

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
            // SAFETY: size > 0; the flags name an arena that exists for the process's life and
            // a tcache owned by this thread (or none).
            (Allocator::Jemalloc, Some(arena)) => unsafe {
                je::mallocx(size, arena | tcache_flags(size)) as *mut u8
            },
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
            // SAFETY: per the contract, ptr is a live mallocx block of this size from this
            // arena; any thread may free it, into its own tcache (blocks of one arena are
            // interchangeable there) or straight to the arena.
            (Allocator::Jemalloc, Some(arena)) => unsafe {
                je::sdallocx(ptr.cast(), size, arena | tcache_flags(size))
            },
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
            (Allocator::Jemalloc, Some(_)) if size <= SIZE_CLASS_RULE_MAX => {
                jemalloc_size_class(size)
            }
            // SAFETY: nallocx only computes a size class; it allocates nothing.
            (Allocator::Jemalloc, Some(arena)) => unsafe {
                je::nallocx(size, arena | je::MALLOCX_TCACHE_NONE)
            },
            _ => (size + 8).div_ceil(16) * 16,
        }
    }
}

/// Largest request `jemalloc_size_class` answers for; above it jemalloc rounds large blocks
/// to pages its own way, and `usable_size` asks nallocx.
const SIZE_CLASS_RULE_MAX: usize = 32 * 1024;

/// jemalloc's size class for a request of `size` <= `SIZE_CLASS_RULE_MAX` bytes (what
/// `nallocx` answers, computed here because the policy asks for every entry it queues and
/// evicts, and the calls to nallocx cost a set ~40 instructions): 8, then multiples of the
/// 16-byte quantum up to 128, then four classes per doubling (160, 192, 224, 256, 320, ...).
/// A test checks every size against nallocx.
#[inline]
fn jemalloc_size_class(size: usize) -> usize {
    const QUANTUM: usize = 16;
    if size <= 8 {
        return 8;
    }
    if size <= 8 * QUANTUM {
        return size.div_ceil(QUANTUM) * QUANTUM;
    }
    // 2^p < size <= 2^(p+1); the classes in that range are 2^(p-2) apart.
    let p = usize::BITS - 1 - (size - 1).leading_zeros();
    let spacing = 1usize << (p - 2);
    size.div_ceil(spacing) * spacing
}

/// mallocx flags naming the dedicated arena, or None if jemalloc refused to create one.
static ARENA: Lazy<Option<c_int>> =
    Lazy::new(|| create_id(c"arenas.create").map(|index| je::MALLOCX_ARENA(index as usize)));

/// Initializes jemalloc (and with it its own fork handlers) and the dedicated arena now, so
/// that handlers registered afterwards (`crate::fork`) run their prepare step before
/// jemalloc's.
pub fn initialize_allocator() {
    Lazy::force(&ARENA);
}

/// Runs a jemalloc "*.create" control (arenas.create, tcache.create), which answers the new
/// object's unsigned int id; None when jemalloc refuses (e.g. no tcache ids left).
fn create_id(name: &std::ffi::CStr) -> Option<c_uint> {
    let mut id: c_uint = 0;
    let mut len = std::mem::size_of::<c_uint>();
    // SAFETY: the *.create controls write an unsigned int to oldp, whose size we pass in len,
    // and read nothing (newp null).
    let rc = unsafe {
        je::mallctl(
            name.as_ptr(),
            (&mut id as *mut c_uint).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    (rc == 0).then_some(id)
}

thread_local! {
    static TCACHE: ThreadCache = ThreadCache::create();
}

/// mallocx/sdallocx flags for the tcache a block of `size` goes through on this thread.
#[inline]
fn tcache_flags(size: usize) -> c_int {
    if size > TCACHE_MAX {
        return je::MALLOCX_TCACHE_NONE;
    }
    // Err: this thread is exiting and its cache is gone (a block freed by a later thread-local
    // destructor); the arena takes it directly.
    TCACHE
        .try_with(|t| t.flags)
        .unwrap_or(je::MALLOCX_TCACHE_NONE)
}

/// This thread's explicit jemalloc tcache, used only for the dedicated arena.
struct ThreadCache {
    id: Option<c_uint>,
    flags: c_int,
}

impl ThreadCache {
    fn create() -> ThreadCache {
        // jemalloc has a few thousand explicit tcaches per process; a thread that finds none
        // left allocates from the arena directly, as before.
        let id = create_id(c"tcache.create");
        ThreadCache {
            id,
            flags: id.map_or(je::MALLOCX_TCACHE_NONE, |id| {
                je::MALLOCX_TCACHE(id as usize)
            }),
        }
    }
}

impl Drop for ThreadCache {
    fn drop(&mut self) {
        if let Some(mut id) = self.id {
            // SAFETY: "tcache.destroy" reads an unsigned int from newp, whose size we pass. The
            // id is this thread's, and nothing uses it after this: the thread-local is gone, so
            // tcache_flags answers MALLOCX_TCACHE_NONE from here on. Destroying flushes the
            // cached blocks back to the arena and frees the id for another thread.
            unsafe {
                je::mallctl(
                    c"tcache.destroy".as_ptr(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    (&mut id as *mut c_uint).cast::<c_void>(),
                    std::mem::size_of::<c_uint>(),
                );
            }
        }
    }
}

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

    fn this_threads_tcache() -> Option<c_uint> {
        TCACHE.with(|t| t.id)
    }

    #[test]
    fn exiting_threads_give_their_tcache_back() {
        // jemalloc has 4093 explicit tcache ids; more threads than that, one after another,
        // each get one only if exiting threads destroy theirs.
        for i in 0..5000 {
            let id = std::thread::spawn(|| {
                let p = Allocator::Jemalloc.alloc(100);
                // SAFETY: p is a fresh block of 100 bytes.
                unsafe { Allocator::Jemalloc.free(p, 100) };
                this_threads_tcache()
            })
            .join()
            .unwrap();
            assert!(id.is_some(), "thread {i} found no tcache id left");
        }
    }

    #[test]
    fn blocks_are_freed_by_other_threads_and_after_the_tcache_is_gone() {
        struct FreeAtExit(Vec<(usize, usize)>);
        impl Drop for FreeAtExit {
            fn drop(&mut self) {
                for &(p, size) in &self.0 {
                    // SAFETY: each was allocated below with this size and freed nowhere else.
                    unsafe { Allocator::Jemalloc.free(p as *mut u8, size) };
                }
            }
        }
        thread_local! {
            static LATE: std::cell::RefCell<FreeAtExit> =
                const { std::cell::RefCell::new(FreeAtExit(Vec::new())) };
        }
        let sizes = [8, 100, TCACHE_MAX, TCACHE_MAX + 1, 5000];
        let made: Vec<(usize, usize)> = std::thread::spawn(move || {
            (0..2000)
                .map(|i| {
                    let size = sizes[i % sizes.len()];
                    let p = Allocator::Jemalloc.alloc(size);
                    assert!(!p.is_null());
                    // SAFETY: p is a fresh block of `size` bytes.
                    unsafe { std::ptr::write_bytes(p, i as u8, size) };
                    (p as usize, size)
                })
                .collect()
        })
        .join()
        .unwrap();
        let (now, late) = made.split_at(1000);
        let (now, late) = (now.to_vec(), late.to_vec());
        std::thread::spawn(move || {
            for (p, size) in now {
                // SAFETY: allocated by the thread above, which is gone; freed once, here.
                unsafe { Allocator::Jemalloc.free(p as *mut u8, size) };
            }
            // Registered before this thread's tcache is first used below, so destroyed after
            // it: these frees run with the tcache already gone.
            LATE.with(|l| l.borrow_mut().0 = late);
            let p = Allocator::Jemalloc.alloc(64);
            // SAFETY: p is a fresh block of 64 bytes.
            unsafe { Allocator::Jemalloc.free(p, 64) };
            assert!(this_threads_tcache().is_some());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn size_classes_match_nallocx() {
        let arena = ARENA.expect("jemalloc arena");
        for size in 1..=SIZE_CLASS_RULE_MAX + 10_000 {
            // SAFETY: nallocx only computes a size class; it allocates nothing.
            let theirs = unsafe { je::nallocx(size, arena | je::MALLOCX_TCACHE_NONE) };
            assert_eq!(Allocator::Jemalloc.usable_size(size), theirs, "size {size}");
            if size <= SIZE_CLASS_RULE_MAX {
                assert_eq!(jemalloc_size_class(size), theirs, "size {size}");
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
