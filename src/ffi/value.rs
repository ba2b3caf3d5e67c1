//! Pinned values: `sz_value *` is the entry's own reference-counted block, so pinning costs no
//! allocation and the bytes stay valid until released, whatever happens to the entry.

use crate::memory::Blob;

/// A pinned, zero-copy view of a value. Opaque.
pub struct sz_value {
    _private: [u8; 0],
}

/// Hands a pinned reference to C.
pub(crate) fn into_handle(blob: Blob) -> *mut sz_value {
    blob.into_raw() as *mut sz_value
}

/// The value's bytes: valid until sz_value_release(v), even if the entry is overwritten,
/// deleted, expired, evicted or cleared meanwhile. Never write through it. NULL if v is NULL.
///
/// # Safety
/// `v` is NULL or a handle from sz_cache_get not yet released.
#[no_mangle]
pub unsafe extern "C" fn sz_value_data(v: *const sz_value) -> *const u8 {
    if v.is_null() {
        return std::ptr::null();
    }
    // SAFETY: per the contract v is a live handle; the pointer stays valid while it is held.
    unsafe { Blob::raw_value(v.cast()) }.as_ptr()
}

/// The value's length in bytes (0 if v is NULL).
///
/// # Safety
/// `v` is NULL or a handle from sz_cache_get not yet released.
#[no_mangle]
pub unsafe extern "C" fn sz_value_len(v: *const sz_value) -> usize {
    if v.is_null() {
        return 0;
    }
    // SAFETY: per the contract v is a live handle.
    unsafe { Blob::raw_value(v.cast()) }.len()
}

/// Releases a pinned value; its data pointer is invalid afterwards. NULL is a no-op. Safe from
/// any thread, and after the cache that returned it was closed.
///
/// # Safety
/// `v` is NULL or a handle from sz_cache_get, released exactly once.
#[no_mangle]
pub unsafe extern "C" fn sz_value_release(v: *mut sz_value) {
    if !v.is_null() {
        // SAFETY: per the contract this takes back the one reference the handle holds.
        drop(unsafe { Blob::from_raw(v as *const u8) });
    }
}
