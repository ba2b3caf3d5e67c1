//! Configuration handles.

use super::{boundary, boundary_ptr, handle, out_arg, text};
use crate::config::{Config, OPTION_NAMES};
use crate::error::Error;
use once_cell::sync::OnceCell;
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

/// Sets option `name` to `value` (both NUL-terminated text). Names and accepted values:
/// - memory_capacity: 1..=2^32 items
/// - memory_max_bytes: 0 (no byte bound) or 4096..=2^48
/// - memory_ttl, redis_ttl, disk_ttl: 0 (no expiry) or 1..=3153600000 seconds (a century)
/// - compression_enabled, jemalloc_enabled, redis_enabled, disk_enabled, enable_stats: booleans
/// - compression_min_size: 0..=4294967295 bytes
/// - redis_url: `redis://[user:password@]host:port/db`, `rediss://...` (TLS),
///   `redis+sentinel://host:port[,host:port]/master-name[/db]` (also `rediss+sentinel://`),
///   a Redis Cluster's `redis+cluster://[user:password@]host:port,host:port/` (seeds; also
///   `rediss+cluster://`) or unix:///path?db=N, 1..=4095 bytes
/// - redis_timeout_ms: 1..=600000
/// - redis_pool_size: 1..=1024 connections
/// - redis_key_prefix: 0..=1024 bytes (empty = derived from disk_path)
/// - redis_tls_ca_file, redis_tls_cert_file, redis_tls_key_file: PEM file paths for
///   `rediss://` URLs, 0..=4095 bytes (empty = unset): the CA certificates that verify the
///   server (unset: the system's trust store), and a client certificate with its key
/// - redis_tls_server_name: 0..=253 bytes, the name the server's certificate must carry
///   (empty = the URL's host)
/// - redis_invalidation: boolean (default false). With Redis on, the memory tier drops the keys
///   other hosts change, told by Redis (`CLIENT TRACKING ... BCAST PREFIX <prefix>`), and is
///   held empty while that connection is down (see README, "Several hosts")
/// - disk_path: a directory, 1..=4095 bytes
/// - disk_max_size: 65536..=2^38 bytes
/// - auto_expire_interval: 0 (off) or 1..=86400 seconds
/// - max_value_size: 1..=2^31 bytes
/// - value_secret, value_secret_previous: empty (off, the default) or 16..=4096 bytes, taken
///   verbatim (not trimmed). With value_secret, every value written to Redis and disk is signed
///   (HMAC-SHA256) and a value found there without a valid signature is a miss counted as
///   tampered. value_secret_previous is accepted when verifying only, for rotating the secret;
///   set without value_secret, sz_cache_open fails with SZ_ERR_CONFIG. sz_config_get reports a
///   set secret as "***", never its text; error messages never contain it.
///
/// Booleans take true/false/1/0/yes/no/on/off; sizes take an optional K, M or G suffix.
/// sz_config_option lists the names. Options that depend on each other are checked by
/// sz_cache_open (SZ_ERR_CONFIG), and what it allocates up front for them can fail with
/// SZ_ERR_NOMEM; neither aborts.
///
/// Returns SZ_OK; SZ_ERR_CONFIG for an unknown name, a value out of range (the message names
/// both and the accepted range; the option keeps its previous value) or a name or value that
/// is not UTF-8; SZ_ERR_INVALID for a NULL argument.
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
        let name = unsafe { text(name, "option name") }.map_err(utf8_as_config)?;
        // SAFETY: per this function's contract.
        let value = unsafe { text(value, &format!("the value of option {name}")) }
            .map_err(utf8_as_config)?;
        cfg.inner.set(name, value)?;
        Ok(super::SZ_OK)
    })
}

/// A name or value that is not UTF-8 is a bad option (SZ_ERR_CONFIG), not a bad argument:
/// SZ_ERR_INVALID stays for NULL.
fn utf8_as_config(e: Error) -> Error {
    match e {
        Error::Invalid(m) if m.ends_with("UTF-8") => {
            Error::config(format!("{m} (options are UTF-8 text)"))
        }
        other => other,
    }
}

/// The name of option number `index` (0, 1, ...) in the order sz_config_set lists them, or NULL
/// past the last: lets a program or binding walk every option. Static; never free it.
#[no_mangle]
pub extern "C" fn sz_config_option(index: usize) -> *const c_char {
    static NAMES: OnceCell<Vec<CString>> = OnceCell::new();
    let names = NAMES.get_or_init(|| {
        OPTION_NAMES
            .iter()
            .filter_map(|n| CString::new(*n).ok())
            .collect()
    });
    names.get(index).map_or(std::ptr::null(), |n| n.as_ptr())
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
