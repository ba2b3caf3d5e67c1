//! Completion queues: calls run by the library's worker threads, finished calls collected by
//! an event loop that watches a descriptor (see `crate::offload`).

use super::cache::{byte_arrays, entry_arrays, ttl};
use super::{boundary, bytes, free_handle, handle, key_arg, out_arg, sz_cache, SZ_OK};
use crate::error::Error;
use crate::offload::{pool, Done, Job, Op, Sink};
use std::ffi::{c_char, c_int, c_void};
use std::sync::{Arc, Mutex, PoisonError};

/// sz_queue_submit: look up the key (as sz_cache_get).
pub const SZ_OP_GET: c_int = 1;
/// sz_queue_submit: store the value under the key (as sz_cache_set).
pub const SZ_OP_SET: c_int = 2;
/// sz_queue_submit: remove the key (as sz_cache_delete).
pub const SZ_OP_DELETE: c_int = 3;
/// sz_queue_submit: ask whether the key is held (as sz_cache_exists).
pub const SZ_OP_EXISTS: c_int = 4;
/// sz_queue_submit: remove every entry of the cache (as sz_cache_clear; no key).
pub const SZ_OP_CLEAR: c_int = 5;

/// A completion queue. Opaque. Submit from any thread; drain from one thread at a time.
pub struct sz_queue {
    sink: Arc<Sink>,
    /// The completions handed out by the last sz_queue_drain: their values and messages stay
    /// valid until the next drain or sz_queue_close.
    held: Mutex<Vec<Done>>,
}

/// One finished call, filled in by sz_queue_drain.
#[repr(C)]
pub struct sz_completion {
    /// The token the call was submitted with.
    pub token: u64,
    /// What the synchronous call would have returned: SZ_OK, SZ_NOT_FOUND or a negative
    /// SZ_ERR_* code.
    pub status: c_int,
    /// SZ_OP_GET with SZ_OK: the value's bytes (`len` of them); otherwise NULL. Owned by the
    /// queue: valid until the next sz_queue_drain or sz_queue_close on it.
    pub data: *const u8,
    pub len: usize,
    /// After a negative status: its message (NUL-terminated, owned like `data`); else NULL.
    pub error: *const c_char,
}

/// Opens a completion queue: calls submitted to it run on the library's worker threads (never
/// on the caller's), and each finished call waits in the queue until sz_queue_drain collects
/// it. sz_queue_fd gives a descriptor that is readable exactly while finished calls wait, for
/// an event loop to watch (epoll, poll, asyncio's add_reader).
///
/// Returns SZ_OK (*out is the queue; close it with sz_queue_close); SZ_ERR_INVALID when out is
/// NULL; SZ_ERR_IO when the descriptor cannot be made.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sz_queue_open(out: *mut *mut sz_queue) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let dst = unsafe { out_arg(out, "out") }?;
        let queue = sz_queue {
            sink: Arc::new(Sink::new()?),
            held: Mutex::new(Vec::new()),
        };
        *dst = Box::into_raw(Box::new(queue));
        Ok(SZ_OK)
    })
}

/// The queue's descriptor (an eventfd): readable while finished calls wait to be drained. Read
/// nothing from it yourself (sz_queue_drain resets it). Returns the descriptor (>= 0) or
/// SZ_ERR_INVALID for NULL.
///
/// # Safety
/// `q` is NULL or from sz_queue_open, not yet closed.
#[no_mangle]
pub unsafe extern "C" fn sz_queue_fd(q: *const sz_queue) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let queue = unsafe { handle(q, "queue") }?;
        Ok(queue.sink.fd())
    })
}

/// Closes a queue. Calls still queued or running finish on the worker threads and their
/// completions are dropped (values released); nothing waits for them, so this never blocks on
/// I/O. Values from the last drain become invalid. NULL is a no-op. In a child of fork(),
/// close the parent's queues (this is the one call allowed on them) and open new ones.
///
/// # Safety
/// `q` is NULL or from sz_queue_open, closed exactly once, not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn sz_queue_close(q: *mut sz_queue) {
    // SAFETY: per this function's contract q is NULL or a live Box from sz_queue_open.
    unsafe { free_handle(q) }
}

/// Submits one call on `c` to run on a worker thread; its completion, carrying `token`, comes
/// out of sz_queue_drain. `op` is SZ_OP_GET, SZ_OP_SET (with `val`, `val_len`, `ttl_ms` as for
/// sz_cache_set), SZ_OP_DELETE, SZ_OP_EXISTS (key only) or SZ_OP_CLEAR (key ignored, may be
/// NULL). Key and value are copied: the caller may free them on return. The completion's
/// status is what the synchronous call returns (delete and exists: SZ_OK for yes,
/// SZ_NOT_FOUND for no). Gets queued for the same cache run together as one sz_cache_get_many
/// (one Redis round trip).
///
/// Closing `c` while its calls are queued is safe: they hold the cache until they finish, and
/// one that had not started fails with SZ_ERR_INVALID.
///
/// Returns SZ_OK (queued); SZ_ERR_INVALID for NULL arguments, an unknown op, a NULL key for a
/// keyed op, or a queue opened before fork() in a child; SZ_ERR_NOMEM when no worker thread can
/// be started. Key checks (empty, too long) are reported in the completion.
///
/// # Safety
/// `q` from sz_queue_open; `c` from sz_cache_open, not closed during this call; pointers NULL
/// or valid for their lengths.
#[no_mangle]
pub unsafe extern "C" fn sz_queue_submit(
    q: *mut sz_queue,
    c: *mut sz_cache,
    op: c_int,
    key: *const c_void,
    key_len: usize,
    val: *const c_void,
    val_len: usize,
    ttl_ms: u64,
    token: u64,
) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (queue, cache) = unsafe { queue_and_cache(q, c) }?;
        // SAFETY: per this function's contract.
        let owned_key = || unsafe { key_arg(key.cast(), key_len) }.map(<[u8]>::to_vec);
        let op = match op {
            SZ_OP_GET => Op::Get(owned_key()?),
            SZ_OP_SET => {
                // SAFETY: per this function's contract.
                let value = unsafe { bytes(val.cast(), val_len, "value") }?;
                Op::Set(owned_key()?, value.to_vec(), ttl(ttl_ms))
            }
            SZ_OP_DELETE => Op::Delete(owned_key()?),
            SZ_OP_EXISTS => Op::Exists(owned_key()?),
            SZ_OP_CLEAR => Op::Clear,
            other => return Err(Error::invalid(format!("unknown op {other}"))),
        };
        submit(queue, cache, token, op)
    })
}

/// sz_cache_set_many as a queued call: `n` entries (`keys[i]` -> `vals[i]`), all for `ttl_ms`,
/// stored on a worker thread; the completion (carrying `token`) has sz_cache_set_many's status.
/// Everything is copied: the caller may free the arrays on return.
///
/// Returns SZ_OK (queued) or SZ_ERR_INVALID / SZ_ERR_NOMEM as sz_queue_submit.
///
/// # Safety
/// As for sz_queue_submit; when n > 0 the four arrays hold n elements each and every pointer
/// is valid for its length.
#[no_mangle]
pub unsafe extern "C" fn sz_queue_submit_set_many(
    q: *mut sz_queue,
    c: *mut sz_cache,
    keys: *const *const c_void,
    key_lens: *const usize,
    vals: *const *const c_void,
    val_lens: *const usize,
    n: usize,
    ttl_ms: u64,
    token: u64,
) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (queue, cache) = unsafe { queue_and_cache(q, c) }?;
        // SAFETY: per this function's contract.
        let items = unsafe { entry_arrays(keys, key_lens, vals, val_lens, n) }?
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        submit(queue, cache, token, Op::SetMany(items, ttl(ttl_ms)))
    })
}

/// sz_queue_submit for `n` keys at once: `n` calls of `op` (SZ_OP_GET, SZ_OP_DELETE or
/// SZ_OP_EXISTS), the one on `keys[i]` (`key_lens[i]` bytes) carrying token `tokens[i]`.
/// One library call and one wake-up of the workers for the lot: what an event loop uses to
/// submit the gets its coroutines made in one iteration. Their completions are separate, as if
/// submitted one by one. Keys are copied.
///
/// Returns SZ_OK (all queued); SZ_ERR_INVALID for NULL arguments or a NULL key (naming its
/// index; nothing is queued), another op, or a queue opened before fork() in a child;
/// SZ_ERR_NOMEM when no worker thread can be started. With n == 0 the arrays may be NULL.
///
/// # Safety
/// As for sz_queue_submit; when n > 0, `keys`, `key_lens` and `tokens` hold n elements each
/// and every key is valid for its length.
#[no_mangle]
pub unsafe extern "C" fn sz_queue_submit_many(
    q: *mut sz_queue,
    c: *mut sz_cache,
    op: c_int,
    keys: *const *const c_void,
    key_lens: *const usize,
    tokens: *const u64,
    n: usize,
) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (queue, cache) = unsafe { queue_and_cache(q, c) }?;
        let make: fn(Vec<u8>) -> Op = match op {
            SZ_OP_GET => Op::Get,
            SZ_OP_DELETE => Op::Delete,
            SZ_OP_EXISTS => Op::Exists,
            other => {
                return Err(Error::invalid(format!(
                    "op {other} cannot be submitted per key (SZ_OP_GET, SZ_OP_DELETE, \
                     SZ_OP_EXISTS)"
                )))
            }
        };
        // SAFETY: per this function's contract.
        let keys = unsafe { byte_arrays(keys, key_lens, n, "keys", true) }?;
        let tokens = match n {
            0 => &[][..],
            _ if tokens.is_null() => return Err(Error::invalid("tokens is NULL")),
            // SAFETY: per this function's contract tokens holds n elements.
            _ => unsafe { std::slice::from_raw_parts(tokens, n) },
        };
        let jobs = keys
            .into_iter()
            .zip(tokens.iter().copied())
            .map(|(k, token)| job(queue, cache, token, make(k.to_vec())))
            .collect();
        pool::submit(jobs)?;
        Ok(SZ_OK)
    })
}

/// The queue and cache a submit names, checked: neither NULL, the queue of this process.
///
/// # Safety
/// `q` is NULL or from sz_queue_open; `c` NULL or from sz_cache_open; both live.
unsafe fn queue_and_cache<'a>(
    q: *const sz_queue,
    c: *const sz_cache,
) -> crate::error::Result<(&'a sz_queue, &'a sz_cache)> {
    // SAFETY: per this function's contract.
    let (queue, cache) = unsafe { (handle(q, "queue")?, handle(c, "cache")?) };
    queue.sink.check_process()?;
    Ok((queue, cache))
}

fn job(queue: &sz_queue, cache: &sz_cache, token: u64, op: Op) -> Job {
    Job {
        cache: Arc::clone(&cache.inner),
        closed: Arc::clone(&cache.closed),
        sink: Arc::clone(&queue.sink),
        token,
        op,
    }
}

fn submit(queue: &sz_queue, cache: &sz_cache, token: u64, op: Op) -> crate::error::Result<c_int> {
    pool::submit(vec![job(queue, cache, token, op)])?;
    Ok(SZ_OK)
}

/// Moves up to `cap` finished calls into `out[0..]`, oldest first, and returns how many (0 when
/// none wait; never blocks). Their `data` and `error` stay valid until the next sz_queue_drain
/// or sz_queue_close on this queue, which releases them. The descriptor stays readable while
/// more wait, so a loop that drains a bounded number per wake-up is called again.
///
/// Returns the count (>= 0); SZ_ERR_INVALID for a NULL queue, a NULL `out` with cap > 0, or a
/// queue opened before fork() in a child.
///
/// # Safety
/// `q` from sz_queue_open; `out` NULL or writable for `cap` elements; one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn sz_queue_drain(
    q: *mut sz_queue,
    out: *mut sz_completion,
    cap: usize,
) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let queue = unsafe { handle(q, "queue") }?;
        queue.sink.check_process()?;
        if cap > 0 && out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let mut held = queue.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.clear(); // the previous batch's values, released
        *held = queue.sink.take(cap.min(c_int::MAX as usize));
        for (i, done) in held.iter().enumerate() {
            let (data, len) = done.value.as_ref().map_or((std::ptr::null(), 0), |b| {
                (b.value().as_ptr(), b.value().len())
            });
            let completion = sz_completion {
                token: done.token,
                status: done.status,
                data,
                len,
                error: done
                    .message
                    .as_ref()
                    .map_or(std::ptr::null(), |m| m.as_ptr()),
            };
            // SAFETY: i < held.len() <= cap, and out is writable for cap elements.
            unsafe { out.add(i).write(completion) };
        }
        Ok(held.len() as c_int)
    })
}
