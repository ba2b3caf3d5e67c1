//! Cache handles and their operations.

use super::stats::write_sized;
use super::value::into_handle;
use super::{
    boundary, boundary_ptr, bytes, free_handle, handle, key_arg, out_arg, sz_config, sz_health,
    sz_stats, sz_value, SZ_NOT_FOUND, SZ_OK,
};
use crate::config::Config;
use crate::error::Error;
use crate::tiered::{Cache, Copied};
use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering::Release};
use std::sync::Arc;
use std::time::Duration;

/// An open cache. Opaque; safe to use from many threads at once.
pub struct sz_cache {
    /// Shared with the calls queued on it (sz_queue_submit), which keep it open until they end.
    pub(super) inner: Arc<Cache>,
    /// Set by sz_cache_close: queued calls that have not started yet then fail instead.
    pub(super) closed: Arc<AtomicBool>,
}

impl Drop for sz_cache {
    fn drop(&mut self) {
        self.closed.store(true, Release);
    }
}

/// The value under construction in a sz_compute_fn callback. Opaque.
pub struct sz_sink {
    bytes: Vec<u8>,
}

/// Produces the value of a missing key for sz_cache_get_or_compute: append the bytes with
/// sz_sink_write and return SZ_OK to store them; any other return stores nothing and fails the
/// call (and the calls waiting on it) with SZ_ERR_BACKEND.
pub type sz_compute_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        key: *const c_void,
        key_len: usize,
        sink: *mut sz_sink,
    ) -> c_int,
>;

/// Runs a keyed question (delete, exists) and answers SZ_OK for yes, SZ_NOT_FOUND for no.
///
/// # Safety
/// `c` is NULL or from sz_cache_open; `key` NULL or valid for `key_len` bytes.
unsafe fn found_by(
    c: *mut sz_cache,
    key: *const c_void,
    key_len: usize,
    ask: fn(&Cache, &[u8]) -> Result<bool, Error>,
) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (cache, k) = unsafe { (handle(c, "cache")?, key_arg(key.cast(), key_len)?) };
        Ok(found(ask(&cache.inner, k)?))
    })
}

/// SZ_OK for found, SZ_NOT_FOUND for not.
fn found(yes: bool) -> c_int {
    if yes {
        SZ_OK
    } else {
        SZ_NOT_FOUND
    }
}

pub(super) fn ttl(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// Opens a cache with `cfg` (NULL = all defaults; the config is copied and may be freed right
/// after). On success *out is the handle; close it with sz_cache_close.
///
/// Returns SZ_OK; SZ_ERR_CONFIG for inconsistent options;
/// SZ_ERR_IO when the disk tier's file cannot be used; SZ_ERR_INVALID when out is NULL.
///
/// # Safety
/// `cfg` is NULL or from sz_config_new; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sz_cache_open(cfg: *const sz_config, out: *mut *mut sz_cache) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let dst = unsafe { out_arg(out, "out") }?;
        // SAFETY: per this function's contract; NULL means defaults.
        let config = match unsafe { cfg.as_ref() } {
            Some(c) => c.inner.clone(),
            None => Config::default(),
        };
        let cache = Cache::open(config)?;
        *dst = Box::into_raw(Box::new(sz_cache {
            inner: Arc::new(cache),
            closed: Arc::new(AtomicBool::new(false)),
        }));
        Ok(SZ_OK)
    })
}

/// Closes a cache: stops its background threads and flushes the disk tier. Pinned values
/// handed out earlier stay valid until released. NULL is a no-op. No other thread may be using
/// the handle. Calls queued on it with sz_queue_submit that have not started fail with
/// SZ_ERR_INVALID; those running finish first, and the cache is stopped and flushed when the
/// last of them ends (on its worker thread).
///
/// # Safety
/// `c` is NULL or from sz_cache_open, closed exactly once.
#[no_mangle]
pub unsafe extern "C" fn sz_cache_close(c: *mut sz_cache) {
    // SAFETY: per this function's contract c is NULL or a live Box from sz_cache_open.
    unsafe { free_handle(c) }
}

/// Stores `val` (val_len bytes; val may be NULL when val_len is 0) under `key` in every enabled
/// tier, for `ttl_ms` milliseconds (0 = each tier's configured default TTL; a TTL over 100
/// years is stored as 100 years).
///
/// Returns SZ_OK; SZ_ERR_INVALID (NULL argument, empty key); SZ_ERR_TOO_LARGE (key over 65535
/// bytes, value over max_value_size or over the memory tier's byte budget); SZ_ERR_NOMEM.
///
/// # Safety
/// Pointers are NULL or valid for their lengths; `c` from sz_cache_open.
#[no_mangle]
pub unsafe extern "C" fn sz_cache_set(
    c: *mut sz_cache,
    key: *const c_void,
    key_len: usize,
    val: *const c_void,
    val_len: usize,
    ttl_ms: u64,
) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (cache, k, v) = unsafe {
            (
                handle(c, "cache")?,
                key_arg(key.cast(), key_len)?,
                bytes(val.cast(), val_len, "value")?,
            )
        };
        cache.inner.set(k, v, ttl(ttl_ms))?;
        Ok(SZ_OK)
    })
}

/// Looks up `key`. On SZ_OK, *out is a pinned, zero-copy value: read it with sz_value_data /
/// sz_value_len and release it with sz_value_release. It stays valid until released even if
/// the entry is overwritten, deleted, expired or evicted meanwhile. A hit in a lower tier is
/// copied into the tiers above it with its remaining lifetime.
///
/// Returns SZ_OK, SZ_NOT_FOUND (*out untouched), SZ_ERR_INVALID, SZ_ERR_TOO_LARGE (key).
///
/// # Safety
/// Pointers are NULL or valid; `c` from sz_cache_open.
#[no_mangle]
pub unsafe extern "C" fn sz_cache_get(
    c: *mut sz_cache,
    key: *const c_void,
    key_len: usize,
    out: *mut *mut sz_value,
) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (cache, k, dst) = unsafe {
            (
                handle(c, "cache")?,
                key_arg(key.cast(), key_len)?,
                out_arg(out, "out")?,
            )
        };
        Ok(match cache.inner.get(k)? {
            Some(blob) => {
                *dst = into_handle(blob);
                SZ_OK
            }
            None => SZ_NOT_FOUND,
        })
    })
}

/// Copies the value of `key` into `buf` (buf_cap bytes; buf may be NULL when buf_cap is 0) and
/// sets *val_len to its length.
///
/// Returns SZ_OK; SZ_NOT_FOUND; SZ_ERR_BUFFER_TOO_SMALL, with *val_len set to the length needed
/// and buf untouched; SZ_ERR_INVALID; SZ_ERR_TOO_LARGE (key).
///
/// # Safety
/// Pointers are NULL or valid for their lengths; `c` from sz_cache_open.
#[no_mangle]
pub unsafe extern "C" fn sz_cache_get_copy(
    c: *mut sz_cache,
    key: *const c_void,
    key_len: usize,
    buf: *mut c_void,
    buf_cap: usize,
    val_len: *mut usize,
) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (cache, k, len_out, dst) = unsafe {
            (
                handle(c, "cache")?,
                key_arg(key.cast(), key_len)?,
                out_arg(val_len, "val_len")?,
                receive_buffer(buf.cast(), buf_cap)?,
            )
        };
        copied_status(cache.inner.get_copy(k, dst), len_out)
    })
}

/// Lets go of a lock the caller holds around a call (Python's GIL: PyEval_SaveThread) and
/// returns a token for the matching sz_reacquire_fn.
pub type sz_release_fn = Option<unsafe extern "C" fn() -> *mut c_void>;

/// Takes the caller's lock back (Python's GIL: PyEval_RestoreThread) with the token its
/// sz_release_fn returned.
pub type sz_reacquire_fn = Option<unsafe extern "C" fn(token: *mut c_void)>;

/// A receive buffer bound to one cache, for sz_cache_get_buffered. The caller owns it and its
/// memory, fills in the fields once and reuses it for many gets (one thread at a time).
///
/// After SZ_OK the bytes from the value's end up to the previous value's end (`len` on entry,
/// at most `cap`) are zeroed. So a buffer that starts zeroed holds zeros after its value, always:
/// a value shorter than `cap` is NUL-terminated, and a decoder that reads past a value's end
/// finds zeros, never the bytes of an earlier value.
///
/// `release` and `reacquire` are optional (both NULL, or both set): when set, the get calls
/// `release` once before it does anything that may block (a memory-tier miss asking Redis or
/// the disk tier), and `reacquire` with its token before it returns; a memory hit calls
/// neither. They are for callers that hold a global lock across the call, like Python's GIL,
/// and want it released only around network and disk work.
///
/// With `pin_larger` nonzero, a value longer than `cap` is not refused: the get answers
/// SZ_ERR_BUFFER_TOO_SMALL as usual (b->len = its length, data untouched) and also hands the
/// value over, pinned, in `value` (read it with sz_value_data, release it with
/// sz_value_release). One lookup then serves any size: no second get, so no second hit counted
/// and no second read from Redis or disk. `value` is NULL after every other outcome.
#[repr(C)]
pub struct sz_get_buffer {
    /// The cache to read from, from sz_cache_open.
    pub cache: *mut sz_cache,
    /// Where values are copied: `cap` writable bytes (NULL only when cap is 0).
    pub data: *mut u8,
    pub cap: usize,
    /// Out: the value's length after SZ_OK; the length needed after SZ_ERR_BUFFER_TOO_SMALL.
    pub len: usize,
    /// Optional: lets go of the caller's lock before blocking work (see above).
    pub release: sz_release_fn,
    /// Optional: takes the caller's lock back (see above).
    pub reacquire: sz_reacquire_fn,
    /// In: nonzero to receive a value longer than `cap` pinned in `value` (see above).
    pub pin_larger: c_int,
    /// Out: a value too long for `cap`, pinned, when `pin_larger` is set; otherwise NULL.
    pub value: *mut sz_value,
}

/// sz_cache_get_copy with the cache, buffer and length out-parameter gathered in `b`: the same
/// lookup, copy and results, in three arguments instead of six. It exists for bindings whose
/// foreign calls cost per argument (Python's ctypes spends ~45 ns converting each one, more
/// than a memory-tier lookup takes) and, with b->release / b->reacquire, for callers that keep
/// a global lock across memory hits.
///
/// Returns SZ_OK (value in b->data, length in b->len); SZ_NOT_FOUND; SZ_ERR_BUFFER_TOO_SMALL,
/// with b->len set to the length needed and b->data untouched (and, with b->pin_larger, the
/// value pinned in b->value: release it); SZ_ERR_INVALID (NULL `b`,
/// b->cache or key, or only one of release / reacquire); SZ_ERR_TOO_LARGE (key).
///
/// # Safety
/// `b` is NULL or points to a sz_get_buffer whose cache is NULL or from sz_cache_open, whose
/// data is NULL or valid for cap bytes, and whose release / reacquire, when set, may be called
/// from this thread; `key` is NULL or valid for `key_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn sz_cache_get_buffered(
    b: *mut sz_get_buffer,
    key: *const c_void,
    key_len: usize,
) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let b = unsafe { out_arg(b, "get buffer")? };
        b.value = std::ptr::null_mut();
        // SAFETY: per this function's contract, b's fields describe a live cache and buffer.
        let (cache, k, dst) = unsafe { buffered_args(b, key, key_len)? };
        let before_blocking = match (b.release, b.reacquire) {
            (Some(release), Some(reacquire)) => Some(move || {
                // SAFETY: the caller allows both hooks on this thread; the guard hands the
                // token back exactly once, also when a panic unwinds through the get.
                LockReleased(reacquire, unsafe { release() })
            }),
            (None, None) => None,
            _ => {
                return Err(Error::invalid(
                    "set both of release and reacquire, or neither",
                ))
            }
        };
        let previous = b.len.min(dst.len());
        let pin_larger = b.pin_larger != 0;
        let copied = match before_blocking {
            Some(f) => cache.inner.get_copy_yielding(k, dst, pin_larger, f),
            None => cache.inner.get_copy_yielding(k, dst, pin_larger, || ()),
        };
        buffered_status(b, dst, previous, copied)
    })
}

/// sz_cache_get_buffered restricted to the memory tier: the same buffer, copy and results, but
/// a key the memory tier does not hold answers SZ_NOT_FOUND at once, without asking Redis or
/// the disk tier. It never blocks on network or disk I/O (b->release / b->reacquire are never
/// called), so an event loop may call it inline and hand only a miss to a worker thread for
/// the full sz_cache_get_buffered. A miss here is not counted in the stats (the full get that
/// follows counts it); a hit is counted as one. A value stored compressed that does not decode
/// also answers SZ_NOT_FOUND here (the full get counts it and drops it from every tier).
///
/// # Safety
/// As for sz_cache_get_buffered.
#[no_mangle]
pub unsafe extern "C" fn sz_cache_get_memory(
    b: *mut sz_get_buffer,
    key: *const c_void,
    key_len: usize,
) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let b = unsafe { out_arg(b, "get buffer")? };
        b.value = std::ptr::null_mut();
        // SAFETY: per this function's contract, b's fields describe a live cache and buffer.
        let (cache, k, dst) = unsafe { buffered_args(b, key, key_len)? };
        let previous = b.len.min(dst.len());
        let copied = cache.inner.get_copy_memory(k, dst, b.pin_larger != 0);
        buffered_status(b, dst, previous, copied)
    })
}

/// The cache, key and destination a sz_get_buffer call names, each checked.
///
/// # Safety
/// As for sz_cache_get_buffered: b's cache is NULL or from sz_cache_open, its data NULL or
/// valid for cap bytes; `key` is NULL or valid for `key_len` bytes.
unsafe fn buffered_args<'a>(
    b: &sz_get_buffer,
    key: *const c_void,
    key_len: usize,
) -> Result<(&'a sz_cache, &'a [u8], &'a mut [u8]), Error> {
    // SAFETY: per this function's contract.
    unsafe {
        Ok((
            handle(b.cache, "get buffer's cache")?,
            key_arg(key.cast(), key_len)?,
            receive_buffer(b.data, b.cap)?,
        ))
    }
}

/// The status of a get into a sz_get_buffer: keeps the buffer's tail zeroed after a copy (the
/// bytes from the value's end up to `previous`, the last value's end) and hands a value too big
/// for it over pinned in b->value.
fn buffered_status(
    b: &mut sz_get_buffer,
    dst: &mut [u8],
    previous: usize,
    copied: Result<Option<Copied>, Error>,
) -> Result<c_int, Error> {
    let copied = match copied {
        Ok(Some(Copied::Into(n))) => {
            if previous > n {
                dst[n..previous].fill(0); // the buffer's tail stays zeroed, see sz_get_buffer
            }
            Ok(Some(n))
        }
        Ok(Some(Copied::Pinned(v))) => {
            let n = v.value().len();
            b.value = into_handle(v);
            Err(Error::BufferTooSmall(n))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    copied_status(copied, &mut b.len)
}

/// The token of a released caller lock: dropping it takes the lock back.
struct LockReleased(unsafe extern "C" fn(*mut c_void), *mut c_void);

impl Drop for LockReleased {
    fn drop(&mut self) {
        // SAFETY: the token comes from the matching release hook and is handed back once.
        unsafe { (self.0)(self.1) }
    }
}

/// Borrows a caller's receive buffer of `cap` bytes; NULL is allowed only for cap == 0.
///
/// # Safety
/// A non-null `buf` points to `cap` writable bytes not otherwise in use during the call.
pub(super) unsafe fn receive_buffer<'a>(buf: *mut u8, cap: usize) -> Result<&'a mut [u8], Error> {
    if cap == 0 {
        Ok(&mut [])
    } else if buf.is_null() {
        Err(Error::invalid("buf is NULL"))
    } else {
        // SAFETY: per the contract buf has cap writable bytes.
        Ok(unsafe { std::slice::from_raw_parts_mut(buf, cap) })
    }
}

/// The status of a copying get (sz_cache_get_copy, sz_cache_get_buffered): the value's length
/// goes to `len_out` on a hit, and so does the length needed when the buffer was too small.
pub(super) fn copied_status(
    copied: Result<Option<usize>, Error>,
    len_out: &mut usize,
) -> Result<c_int, Error> {
    match copied {
        Ok(Some(n)) => {
            *len_out = n;
            Ok(SZ_OK)
        }
        Ok(None) => Ok(SZ_NOT_FOUND),
        Err(Error::BufferTooSmall(n)) => {
            *len_out = n;
            Err(Error::BufferTooSmall(n))
        }
        Err(e) => Err(e),
    }
}

/// Borrows `n` byte strings given as parallel arrays of pointers and lengths.
///
/// # Safety
/// When n > 0, `ptrs` and `lens` point to n elements each, and every non-null ptrs[i] is valid
/// for lens[i] bytes.
pub(super) unsafe fn byte_arrays<'a>(
    ptrs: *const *const c_void,
    lens: *const usize,
    n: usize,
    what: &str,
    is_key: bool,
) -> Result<Vec<&'a [u8]>, Error> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if ptrs.is_null() || lens.is_null() {
        return Err(Error::invalid(format!(
            "{what} or its lengths array is NULL"
        )));
    }
    // SAFETY: per the contract both arrays hold n elements.
    let (ptrs, lens) = unsafe {
        (
            std::slice::from_raw_parts(ptrs, n),
            std::slice::from_raw_parts(lens, n),
        )
    };
    ptrs.iter()
        .zip(lens)
        .enumerate()
        .map(|(i, (&p, &len))| {
            // SAFETY: per the contract each pointer is valid for its length.
            let r = unsafe {
                if is_key {
                    key_arg(p.cast(), len)
                } else {
                    bytes(p.cast(), len, "value")
                }
            };
            r.map_err(|e| e.about(&format!("{what}[{i}]")))
        })
        .collect()
}

/// Key and value of one entry of a set_many, borrowed from the caller.
pub(super) type Entry<'a> = (&'a [u8], &'a [u8]);

/// Borrows `n` entries given as the four parallel arrays of a set_many (keys checked as keys).
///
/// # Safety
/// As for `byte_arrays`, for both the keys and the values.
pub(super) unsafe fn entry_arrays<'a>(
    keys: *const *const c_void,
    key_lens: *const usize,
    vals: *const *const c_void,
    val_lens: *const usize,
    n: usize,
) -> Result<Vec<Entry<'a>>, Error> {
    // SAFETY: per this function's contract.
    let (keys, vals) = unsafe {
        (
            byte_arrays(keys, key_lens, n, "keys", true)?,
            byte_arrays(vals, val_lens, n, "vals", false)?,
        )
    };
    Ok(keys.into_iter().zip(vals).collect())
}

/// Looks up `n` keys at once (`keys[i]`, `key_lens[i]` bytes each): memory first, then the keys
/// still missing from Redis in one round trip (MGET), then from disk. On SZ_OK, `out[i]` is a
/// pinned value for `keys[i]` (release each with sz_value_release) or NULL when it is missing.
///
/// Returns SZ_OK (also when some or all keys are missing); SZ_ERR_INVALID for a NULL argument
/// or an empty key (the message names its index; out is untouched); SZ_ERR_TOO_LARGE for a key
/// over 65535 bytes. With n == 0 the arrays may be NULL.
///
/// # Safety
/// `c` from sz_cache_open; when n > 0, `keys`, `key_lens` and `out` point to n elements each
/// and every `keys[i]` is valid for `key_lens[i]` bytes.
#[no_mangle]
pub unsafe extern "C" fn sz_cache_get_many(
    c: *mut sz_cache,
    keys: *const *const c_void,
    key_lens: *const usize,
    n: usize,
    out: *mut *mut sz_value,
) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let cache = unsafe { handle(c, "cache") }?;
        // SAFETY: per this function's contract.
        let keys = unsafe { byte_arrays(keys, key_lens, n, "keys", true) }?;
        if n > 0 && out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let found = cache.inner.get_many(&keys)?;
        for (i, blob) in found.into_iter().enumerate() {
            // SAFETY: out holds n elements per the contract.
            unsafe { *out.add(i) = blob.map_or(std::ptr::null_mut(), into_handle) };
        }
        Ok(SZ_OK)
    })
}

/// Stores `n` entries at once (`keys[i]` -> `vals[i]`), all for `ttl_ms` (0 = tier defaults), in
/// every enabled tier; Redis receives them pipelined in one round trip. Every key and value is
/// checked against every limit before anything is stored: any error means nothing was stored.
///
/// Returns SZ_OK; SZ_ERR_INVALID for a NULL argument or an empty key (naming its index);
/// SZ_ERR_TOO_LARGE for a key or value over its limit (max_value_size, or with memory as the
/// only tier memory's per-shard byte budget, on the compressed size), naming its index. With
/// n == 0 the arrays may be NULL.
///
/// # Safety
/// `c` from sz_cache_open; when n > 0, the four arrays hold n elements each and every pointer
/// is valid for its length.
#[no_mangle]
pub unsafe extern "C" fn sz_cache_set_many(
    c: *mut sz_cache,
    keys: *const *const c_void,
    key_lens: *const usize,
    vals: *const *const c_void,
    val_lens: *const usize,
    n: usize,
    ttl_ms: u64,
) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let cache = unsafe { handle(c, "cache") }?;
        // SAFETY: per this function's contract.
        let items = unsafe { entry_arrays(keys, key_lens, vals, val_lens, n) }?;
        cache.inner.set_many(&items, ttl(ttl_ms))?;
        Ok(SZ_OK)
    })
}

/// Removes `key` from every tier. Returns SZ_OK if some tier had it, SZ_NOT_FOUND if none did,
/// SZ_ERR_INVALID / SZ_ERR_TOO_LARGE for a bad key.
///
/// # Safety
/// Pointers are NULL or valid; `c` from sz_cache_open.
#[no_mangle]
pub unsafe extern "C" fn sz_cache_delete(
    c: *mut sz_cache,
    key: *const c_void,
    key_len: usize,
) -> c_int {
    // SAFETY: per this function's contract.
    unsafe { found_by(c, key, key_len, Cache::delete) }
}

/// SZ_OK if some tier holds a live entry for `key`, else SZ_NOT_FOUND. Does not promote and does
/// not count as an access.
///
/// # Safety
/// Pointers are NULL or valid; `c` from sz_cache_open.
#[no_mangle]
pub unsafe extern "C" fn sz_cache_exists(
    c: *mut sz_cache,
    key: *const c_void,
    key_len: usize,
) -> c_int {
    // SAFETY: per this function's contract.
    unsafe { found_by(c, key, key_len, Cache::exists) }
}

/// Removes this cache's entries from every tier (in Redis only keys under its prefix). Pinned
/// values stay valid until released.
///
/// Returns SZ_OK; SZ_ERR_BACKEND when Redis is up but could not finish the clear within
/// redis_timeout_ms (or refused it): memory and disk are cleared, this process reads Redis
/// again only once the clear has finished there, but until then other processes could read
/// what it left. With Redis down the clear is finished there when it returns (SZ_OK).
///
/// # Safety
/// `c` is NULL or from sz_cache_open.
#[no_mangle]
pub unsafe extern "C" fn sz_cache_clear(c: *mut sz_cache) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let cache = unsafe { handle(c, "cache") }?;
        cache.inner.clear()?;
        Ok(SZ_OK)
    })
}

/// The value of `key`; on a miss, calls `compute(user_data, key, key_len, sink)` to produce it,
/// stores it for `ttl_ms` (0 = tier defaults) and returns it. Concurrent callers for the same
/// key wait for that one computation instead of running their own (stampede protection), and
/// all of them receive its result. On SZ_OK *out is a pinned value as from sz_cache_get.
///
/// The callback may use the cache, but must not ask for the same key through
/// sz_cache_get_or_compute on the same thread: that call fails with SZ_ERR_INVALID instead of
/// waiting for itself.
///
/// Returns SZ_OK; SZ_ERR_BACKEND when compute returned non-zero (nothing is stored);
/// SZ_ERR_INVALID for NULL arguments; SZ_ERR_TOO_LARGE when the produced value is too large.
///
/// # Safety
/// Pointers are NULL or valid; `compute` is safe to call from this thread with `user_data`.
#[no_mangle]
pub unsafe extern "C" fn sz_cache_get_or_compute(
    c: *mut sz_cache,
    key: *const c_void,
    key_len: usize,
    ttl_ms: u64,
    compute: sz_compute_fn,
    user_data: *mut c_void,
    out: *mut *mut sz_value,
) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (cache, k, dst) = unsafe {
            (
                handle(c, "cache")?,
                key_arg(key.cast(), key_len)?,
                out_arg(out, "out")?,
            )
        };
        let compute = compute.ok_or_else(|| Error::invalid("compute is NULL"))?;
        let blob = cache.inner.get_or_compute(k, ttl(ttl_ms), || {
            let mut sink = sz_sink { bytes: Vec::new() };
            // SAFETY: the caller promised compute is callable with user_data; key and sink
            // outlive the call.
            let rc = unsafe { compute(user_data, k.as_ptr().cast(), k.len(), &mut sink) };
            if rc != SZ_OK {
                return Err(Error::backend(format!(
                    "the compute callback returned {rc}"
                )));
            }
            Ok(sink.bytes)
        })?;
        *dst = into_handle(blob);
        Ok(SZ_OK)
    })
}

/// Appends `len` bytes to the value being produced (for sz_compute_fn callbacks only).
/// Returns SZ_OK or SZ_ERR_INVALID.
///
/// # Safety
/// `sink` is the one passed to the running callback; `data` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn sz_sink_write(
    sink: *mut sz_sink,
    data: *const c_void,
    len: usize,
) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (sink, data) = unsafe { (out_arg(sink, "sink")?, bytes(data.cast(), len, "data")?) };
        sink.bytes
            .try_reserve(data.len())
            .map_err(|_| Error::NoMem(format!("sink: {len} more bytes")))?;
        sink.bytes.extend_from_slice(data);
        Ok(SZ_OK)
    })
}

/// Bounds how long every later call made by this thread may wait on Redis to `timeout_ms`
/// milliseconds: the shorter of it and the cache's `redis_timeout_ms` applies, for every cache.
/// 0 removes the bound. A caller with a deadline of its own (a request budget, a Go
/// `context.Context`) sets it before its calls; other threads are not affected. Returns SZ_OK.
#[no_mangle]
pub extern "C" fn sz_thread_redis_timeout(timeout_ms: u32) -> c_int {
    boundary(|| {
        let limit = (timeout_ms > 0).then(|| Duration::from_millis(u64::from(timeout_ms)));
        crate::redis::call_timeout::set_for_this_thread(limit);
        Ok(SZ_OK)
    })
}

/// Runs one bounded pass of expiry over every tier now (the background thread does this every
/// auto_expire_interval seconds). Returns the number of entries reclaimed, or a negative status.
///
/// # Safety
/// `c` is NULL or from sz_cache_open.
#[no_mangle]
pub unsafe extern "C" fn sz_cache_expire_now(c: *mut sz_cache) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let cache = unsafe { handle(c, "cache") }?;
        Ok(cache.inner.expire_now().min(c_int::MAX as usize) as c_int)
    })
}

/// Fills *out with the cache's counters; set out->struct_size = sizeof(sz_stats) first.
/// Returns SZ_OK, or SZ_ERR_INVALID for NULL or a struct_size too small.
///
/// # Safety
/// `c` is NULL or from sz_cache_open; `out` NULL or valid for out->struct_size bytes.
#[no_mangle]
pub unsafe extern "C" fn sz_cache_stats(c: *mut sz_cache, out: *mut sz_stats) -> c_int {
    // SAFETY: per this function's contract.
    unsafe { fill_sized(c, out, "sz_stats", |cache| sz_stats::from(&cache.stats())) }
}

/// Fills a caller's versioned struct (sz_stats, sz_health) with what `make` reads from the
/// cache.
///
/// # Safety
/// `c` is NULL or from sz_cache_open; `out` NULL or valid for out->struct_size bytes.
unsafe fn fill_sized<T: Copy>(
    c: *mut sz_cache,
    out: *mut T,
    name: &str,
    make: impl FnOnce(&Cache) -> T,
) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let cache = unsafe { handle(c, "cache") }?;
        // SAFETY: out is NULL or valid for its struct_size bytes per the contract.
        unsafe { write_sized(out, &make(&cache.inner), name) }?;
        Ok(SZ_OK)
    })
}

/// The stats and per-tier details as a JSON object, or NULL on error (see sz_last_error).
/// Free it with sz_string_free.
///
/// # Safety
/// `c` is NULL or from sz_cache_open.
#[no_mangle]
pub unsafe extern "C" fn sz_cache_stats_json(c: *mut sz_cache) -> *mut c_char {
    // SAFETY: per this function's contract.
    unsafe { render(c, Cache::stats_json) }
}

/// The stats in the Prometheus text exposition format (version 0.0.4), ready to serve on a
/// /metrics endpoint, or NULL on error (see sz_last_error). Free it with sz_string_free.
///
/// # Safety
/// `c` is NULL or from sz_cache_open.
#[no_mangle]
pub unsafe extern "C" fn sz_cache_stats_prometheus(c: *mut sz_cache) -> *mut c_char {
    // SAFETY: per this function's contract.
    unsafe { render(c, Cache::stats_prometheus) }
}

/// The cache's stats rendered as text by `as_text`, copied out as a C string, or NULL on error.
///
/// # Safety
/// `c` is NULL or from sz_cache_open.
unsafe fn render(c: *mut sz_cache, as_text: fn(&Cache) -> String) -> *mut c_char {
    boundary_ptr(|| {
        // SAFETY: per this function's contract.
        let cache = unsafe { handle(c, "cache") }?;
        let text = as_text(&cache.inner);
        Ok(CString::new(text).unwrap_or_default().into_raw())
    })
}

/// Fills *out with each tier's up/down state and last error; set out->struct_size =
/// sizeof(sz_health) first. Returns SZ_OK or SZ_ERR_INVALID.
///
/// # Safety
/// `c` is NULL or from sz_cache_open; `out` NULL or valid for out->struct_size bytes.
#[no_mangle]
pub unsafe extern "C" fn sz_cache_health(c: *mut sz_cache, out: *mut sz_health) -> c_int {
    // SAFETY: per this function's contract.
    unsafe {
        fill_sized(c, out, "sz_health", |cache| {
            sz_health::from(&cache.health())
        })
    }
}

/// Frees a string returned by this library (sz_cache_stats_json, sz_cache_stats_prometheus,
/// sz_config_get). NULL is a no-op.
///
/// # Safety
/// `s` is NULL or such a string, freed exactly once.
#[no_mangle]
pub unsafe extern "C" fn sz_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: per the contract s came from CString::into_raw in this library.
        drop(unsafe { CString::from_raw(s) });
    }
}
