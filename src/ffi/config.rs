//! Configuration handles.

use super::{boundary, boundary_ptr, handle, out_arg, text};
use crate::config::Config;
use std::ffi::{c_char, c_int, CString};

/// Options for sz_cache_open, set by name. Opaque.
pub struct sz_config {
    pub(crate) inner: Config,
}

/// A new configuration with every option at its default. Free it with sz_config_free (after
/// sz_cache_open, which copies it). NULL only if memory is exhausted.
#[no_mangle]
pub extern "C" fn sz_config_new() -> *mut sz_config {
    boundary_ptr(|| {
        Ok(Box::into_raw(Box::new(sz_config {
            inner: Config::default(),
        })))
    })
}

/// Sets option `name` to `value` (both NUL-terminated text). Names: memory_capacity (items),
/// memory_max_bytes, memory_ttl (seconds, 0 = none), compression_enabled, compression_min_size,
/// jemalloc_enabled, redis_enabled, redis_url (`redis://[user:password@]host:port/db` or
/// unix:///path?db=N), redis_ttl, redis_timeout_ms, redis_pool_size, redis_key_prefix,
/// disk_enabled, disk_path (a directory), disk_max_size, disk_ttl, enable_stats,
/// auto_expire_interval (seconds, 0 = off), max_value_size, value_secret, value_secret_previous.
/// Booleans take true/false/1/0/yes/no/on/off; sizes take an optional K, M or G suffix.
///
/// value_secret: empty (the default) = off; otherwise 16 to 4096 bytes, taken verbatim (not
/// trimmed). With it, every value written to Redis and disk is signed (HMAC-SHA256) and a value
/// found there without a valid signature is a miss counted as tampered. value_secret_previous
/// (same bounds) is accepted when verifying only, for rotating the secret; setting it without
/// value_secret fails sz_cache_open with SZ_ERR_CONFIG. sz_config_get reports a set secret as
/// "***", never its text; error messages never contain it.
///
/// Returns SZ_OK; SZ_ERR_CONFIG for an unknown name or a bad value (the message names both; the
/// option keeps its previous value); SZ_ERR_INVALID for a NULL argument.
///
/// # Safety
/// `cfg` is NULL or from sz_config_new; `name`, `value` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn sz_config_set(
    cfg: *mut sz_config,
    name: *const c_char,
    value: *const c_char,
) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let cfg = unsafe { out_arg(cfg, "cfg") }?;
        // SAFETY: per this function's contract.
        let (name, value) = unsafe { (text(name, "name")?, text(value, "value")?) };
        cfg.inner.set(name, value)?;
        Ok(super::SZ_OK)
    })
}

/// The current value of option `name` as text, in *out; free it with sz_string_free.
/// Returns SZ_OK, SZ_ERR_CONFIG for an unknown name, SZ_ERR_INVALID for NULL arguments.
///
/// # Safety
/// `cfg` is NULL or from sz_config_new; `name` NULL or NUL-terminated; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sz_config_get(
    cfg: *const sz_config,
    name: *const c_char,
    out: *mut *mut c_char,
) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (cfg, name) = unsafe { (handle(cfg, "cfg")?, text(name, "name")?) };
        // SAFETY: per this function's contract.
        let dst = unsafe { out_arg(out, "out") }?;
        let v = cfg.inner.get(name)?;
        *dst = CString::new(v).unwrap_or_default().into_raw();
        Ok(super::SZ_OK)
    })
}

/// Frees a configuration. NULL is a no-op.
///
/// # Safety
/// `cfg` is NULL or from sz_config_new and not freed before.
#[no_mangle]
pub unsafe extern "C" fn sz_config_free(cfg: *mut sz_config) {
    if !cfg.is_null() {
        // SAFETY: per the contract, cfg is a live Box from sz_config_new.
        drop(unsafe { Box::from_raw(cfg) });
    }
}
