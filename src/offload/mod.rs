//! Calls that run on the library's own worker threads and report to a [`Sink`] when done: the
//! C ABI's `sz_queue_*` functions, for event loops (Python's asyncio) that must never wait on
//! Redis or disk I/O and must not run threads of their own that contend for their lock (the
//! GIL) to do it.
//!
//! A caller submits a [`Job`]; a worker of the process's [`pool`] runs it against the cache and
//! pushes a [`Done`] to the job's sink, whose descriptor the caller's loop watches. Gets queued
//! for the same cache are run together, as one `get_many` (one Redis MGET round trip).
//!
//! A job holds its cache (an `Arc`), so closing the cache while jobs are queued or running
//! frees nothing they use: a job that had not started yet when the cache was closed fails with
//! SZ_ERR_INVALID ("closed"), one already running finishes, and the last one out drops the
//! cache.

pub mod pool;
pub mod sink;

pub use sink::Sink;

use crate::error::{Error, Result};
use crate::ffi::{SZ_NOT_FOUND, SZ_OK};
use crate::memory::Blob;
use crate::tiered::Cache;
use std::ffi::{c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering::Acquire};
use std::sync::Arc;
use std::time::Duration;

/// What a job does, with its own copies of the caller's keys and values.
pub enum Op {
    Get(Vec<u8>),
    Set(Vec<u8>, Vec<u8>, Option<Duration>),
    SetMany(Vec<(Vec<u8>, Vec<u8>)>, Option<Duration>),
    Delete(Vec<u8>),
    Exists(Vec<u8>),
    Clear,
}

/// One submitted call.
pub struct Job {
    pub cache: Arc<Cache>,
    /// Set when the caller's handle was closed: a job not started by then does not run.
    pub closed: Arc<AtomicBool>,
    pub sink: Arc<Sink>,
    /// The caller's name for this job, handed back in its completion.
    pub token: u64,
    pub op: Op,
}

/// A finished job: its token, status (SZ_OK / SZ_NOT_FOUND / a negative SZ_ERR_*), the value a
/// get found, and the message of a failure.
pub struct Done {
    pub token: u64,
    pub status: c_int,
    pub value: Option<Blob>,
    pub message: Option<CString>,
}

/// What a job answers before it becomes a `Done`.
enum Reply {
    Value(Option<Blob>),
    Found(bool),
    Stored,
}

impl Done {
    fn of(token: u64, result: Result<Reply>) -> Done {
        let (status, value) = match result {
            Ok(Reply::Value(Some(blob))) => (SZ_OK, Some(blob)),
            Ok(Reply::Value(None)) | Ok(Reply::Found(false)) => (SZ_NOT_FOUND, None),
            Ok(Reply::Found(true)) | Ok(Reply::Stored) => (SZ_OK, None),
            Err(e) => {
                let message = CString::new(e.to_string().replace('\0', "\\0")).ok();
                return Done {
                    token,
                    status: e.code(),
                    value: None,
                    message,
                };
            }
        };
        Done {
            token,
            status,
            value,
            message: None,
        }
    }
}

/// Runs `f` so that a panic becomes an internal error of this job only.
fn guarded(f: impl FnOnce() -> Result<Reply>) -> Result<Reply> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(Error::Internal("a queued call panicked".into())))
}

fn closed_error() -> Error {
    Error::invalid("the cache was closed before this queued call ran")
}

impl Job {
    fn is_get(&self) -> bool {
        matches!(self.op, Op::Get(_))
    }

    /// Runs the job and reports to its sink.
    fn run(self) {
        let result = guarded(|| {
            if self.closed.load(Acquire) {
                return Err(closed_error());
            }
            let cache = &*self.cache;
            match &self.op {
                Op::Get(key) => cache.get(key).map(Reply::Value),
                Op::Set(key, value, ttl) => cache.set(key, value, *ttl).map(|_| Reply::Stored),
                Op::SetMany(items, ttl) => {
                    let items: Vec<(&[u8], &[u8])> =
                        items.iter().map(|(k, v)| (&k[..], &v[..])).collect();
                    cache.set_many(&items, *ttl).map(|_| Reply::Stored)
                }
                Op::Delete(key) => cache.delete(key).map(Reply::Found),
                Op::Exists(key) => cache.exists(key).map(Reply::Found),
                Op::Clear => cache.clear().map(|_| Reply::Stored),
            }
        });
        self.sink.push(Done::of(self.token, result));
    }
}

/// Runs gets of one cache (see `pool::take_batch`) as one `get_many`; if that fails (one bad
/// key fails the whole call), each get on its own, so only the bad key's caller sees the error.
fn run_gets(batch: Vec<Job>) {
    let Some(first) = batch.first() else {
        return;
    };
    if first.closed.load(Acquire) || batch.len() == 1 {
        return batch.into_iter().for_each(Job::run);
    }
    let cache = Arc::clone(&first.cache);
    let keys: Vec<&[u8]> = batch
        .iter()
        .map(|j| match &j.op {
            Op::Get(k) => &k[..],
            _ => &[][..],
        })
        .collect();
    let found = catch_unwind(AssertUnwindSafe(|| cache.get_many(&keys)));
    drop(keys);
    match found {
        Ok(Ok(values)) if values.len() == batch.len() => {
            for (job, value) in batch.into_iter().zip(values) {
                job.sink.push(Done::of(job.token, Ok(Reply::Value(value))));
            }
        }
        _ => batch.into_iter().for_each(Job::run),
    }
}
