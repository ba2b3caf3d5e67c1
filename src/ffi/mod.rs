//! The C ABI. Every `sz_*` function checks its arguments, turns them into Rust types, makes one
//! call into the coordinator and maps the result to a status code; no cache logic lives here.
//! All the crate's pointer handling for C sits in this folder.

#![allow(non_camel_case_types)]

mod cache;
mod config;
mod json;
mod queue;
mod stats;
mod status;
mod value;

pub use cache::*;
pub use config::*;
pub use json::*;
pub use queue::*;
pub use stats::*;
pub use status::*;
pub use value::*;

use crate::error::{Error, Result};
use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f` so that no panic crosses into C: Ok(code) is returned as is, Err(e) records its
/// message for `sz_last_error` and returns its code, a panic records "internal error: ..." and
/// returns SZ_ERR_INTERNAL.
#[inline]
pub(crate) fn boundary(f: impl FnOnce() -> Result<c_int>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            status::set_last_error(&e);
            e.code()
        }
        Err(panic) => {
            let e = Error::Internal(panic_message(&panic));
            status::set_last_error(&e);
            e.code()
        }
    }
}

/// `boundary` for functions that return a pointer: NULL on error or panic.
pub(crate) fn boundary_ptr<T>(f: impl FnOnce() -> Result<*mut T>) -> *mut T {
    let mut out = std::ptr::null_mut();
    boundary(|| {
        out = f()?;
        Ok(0)
    });
    out
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with no message".into()
    }
}

/// Frees a handle this library boxed for C (its destructor runs inside `boundary`, so a panic
/// there does not cross into C). NULL is a no-op.
///
/// # Safety
/// `p` is NULL or from `Box::into_raw` in this library, freed exactly once, unused afterwards.
pub(crate) unsafe fn free_handle<T>(p: *mut T) {
    if !p.is_null() {
        boundary(|| {
            // SAFETY: per this function's contract p is a live Box of ours.
            drop(unsafe { Box::from_raw(p) });
            Ok(0)
        });
    }
}

/// Borrows a C handle, or fails naming the argument when it is NULL.
///
/// # Safety
/// A non-null `p` points to a live `T` handed out by this library and not yet freed.
pub(crate) unsafe fn handle<'a, T>(p: *const T, what: &str) -> Result<&'a T> {
    // SAFETY: per the contract, non-null means live.
    match unsafe { p.as_ref() } {
        Some(r) => Ok(r),
        None => Err(null_argument(what)),
    }
}

/// "`what` is NULL". Out of line and cold: the message is built only when it is needed, and
/// the checks on every call's path stay a compare and a branch each.
#[cold]
#[inline(never)]
fn null_argument(what: &str) -> Error {
    Error::invalid(format!("{what} is NULL"))
}

/// Borrows `len` bytes at `p`. NULL is allowed only for len == 0.
///
/// # Safety
/// A non-null `p` points to `len` readable bytes that stay unchanged during the call.
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8]> {
    if p.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(null_argument(what))
        };
    }
    if len > isize::MAX as usize {
        return Err(too_long(what, len));
    }
    // SAFETY: per the contract p is valid for len bytes; len fits isize.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Borrows a key: NULL is an error even with length 0 (an empty key is refused later with its
/// own message).
///
/// # Safety
/// As for `bytes`.
pub(crate) unsafe fn key_arg<'a>(p: *const u8, len: usize) -> Result<&'a [u8]> {
    if p.is_null() {
        return Err(null_argument("key"));
    }
    // SAFETY: forwarded contract.
    unsafe { bytes(p, len, "key") }
}

/// Reads a NUL-terminated UTF-8 string argument.
///
/// # Safety
/// A non-null `p` points to a NUL-terminated string.
pub(crate) unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(null_argument(what));
    }
    // SAFETY: per the contract p is NUL-terminated.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| Error::invalid(format!("{what} is not valid UTF-8")))
}

/// Writes an output argument that the caller must supply.
///
/// # Safety
/// A non-null `p` points to writable memory for a `T`.
pub(crate) unsafe fn out_arg<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T> {
    // SAFETY: per the contract, non-null means writable.
    match unsafe { p.as_mut() } {
        Some(r) => Ok(r),
        None => Err(null_argument(what)),
    }
}

#[cold]
#[inline(never)]
fn too_long(what: &str, len: usize) -> Error {
    Error::TooLarge(format!("{what} length {len}"))
}
