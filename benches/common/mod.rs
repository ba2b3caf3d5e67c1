//! Workloads shared by the L1 benches: seeded key streams and the three caches under test,
//! each storing the same key and value bytes and handing out a cheap shared reference on get.

#![allow(dead_code)]

use smartcache::ffi::*;
use std::sync::Arc;

#[path = "../../tests/support/workload.rs"]
mod workload;
#[allow(unused_imports)] // each bench binary uses its own subset
pub use workload::{Rng, Zipf};

pub const VALUE_LEN: usize = 100;

/// The 16-byte key of index `i`: "key:" and 12 digits.
pub fn key(i: u64) -> [u8; 16] {
    let mut k = *b"key:000000000000";
    k[4..].copy_from_slice(format!("{i:012}").as_bytes());
    k
}

/// SmartCache through its C ABI, exactly as a C caller uses it.
pub struct Smart(pub *mut sz_cache);
// SAFETY: a sz_cache handle may be used from many threads at once (the ABI's contract).
unsafe impl Send for Smart {}
// SAFETY: as above.
unsafe impl Sync for Smart {}

impl Smart {
    pub fn open(capacity: usize, jemalloc: bool) -> Smart {
        Smart::open_with(capacity, jemalloc, &[])
    }

    /// `open`, plus the config settings in `extra`.
    pub fn open_with(capacity: usize, jemalloc: bool, extra: &[(&str, &str)]) -> Smart {
        let cfg = sz_config_new();
        let set = |n: &str, v: &str| {
            let (n, v) = (
                std::ffi::CString::new(n).unwrap(),
                std::ffi::CString::new(v).unwrap(),
            );
            // SAFETY: cfg is live and the strings are NUL-terminated.
            assert_eq!(unsafe { sz_config_set(cfg, n.as_ptr(), v.as_ptr()) }, SZ_OK);
        };
        set("memory_capacity", &capacity.to_string());
        set("memory_ttl", "0");
        set("auto_expire_interval", "0");
        set("jemalloc_enabled", if jemalloc { "true" } else { "false" });
        extra.iter().for_each(|(n, v)| set(n, v));
        let mut c = std::ptr::null_mut();
        // SAFETY: cfg is live; c is a valid out pointer.
        assert_eq!(unsafe { sz_cache_open(cfg, &mut c) }, SZ_OK);
        // SAFETY: cfg came from sz_config_new.
        unsafe { sz_config_free(cfg) };
        Smart(c)
    }
    #[inline]
    pub fn set(&self, k: &[u8], v: &[u8]) {
        // SAFETY: live handle, valid slices.
        unsafe {
            sz_cache_set(
                self.0,
                k.as_ptr().cast(),
                k.len(),
                v.as_ptr().cast(),
                v.len(),
                0,
            )
        };
    }
    /// Live entries in the memory tier (sz_stats.size).
    pub fn memory_size(&self) -> u64 {
        // SAFETY: sz_stats is plain data (integers and floats): all zeroes is a valid value.
        let mut st: sz_stats = unsafe { std::mem::zeroed() };
        st.struct_size = std::mem::size_of::<sz_stats>();
        // SAFETY: live handle; `st` is a valid sz_stats whose struct_size says its size (the
        // zeroed plain-data struct is a valid value).
        assert_eq!(unsafe { sz_cache_stats(self.0, &mut st) }, SZ_OK);
        st.size
    }
    /// A pinned get and its release, returning the first byte so the read is not optimised out.
    #[inline]
    pub fn get(&self, k: &[u8]) -> Option<u8> {
        let mut v = std::ptr::null_mut();
        // SAFETY: live handle, valid key, valid out pointer; v released once below.
        unsafe {
            if sz_cache_get(self.0, k.as_ptr().cast(), k.len(), &mut v) != SZ_OK {
                return None;
            }
            let b = *sz_value_data(v);
            sz_value_release(v);
            Some(b)
        }
    }
}

impl Drop for Smart {
    fn drop(&mut self) {
        // SAFETY: opened by Smart::open, closed once.
        unsafe { sz_cache_close(self.0) }
    }
}

pub type Quick = quick_cache::sync::Cache<Box<[u8]>, Arc<[u8]>>;
pub type Moka = moka::sync::Cache<Box<[u8]>, Arc<[u8]>>;

pub fn quick(capacity: usize) -> Quick {
    Quick::new(capacity)
}

pub fn moka(capacity: usize) -> Moka {
    Moka::new(capacity as u64)
}

#[inline]
pub fn quick_get(c: &Quick, k: &[u8]) -> Option<u8> {
    c.get(k).map(|v| v[0])
}

#[inline]
pub fn moka_get(c: &Moka, k: &[u8]) -> Option<u8> {
    c.get(k).map(|v| v[0])
}
