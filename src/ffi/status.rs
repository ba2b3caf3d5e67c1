//! Status codes, this thread's last error message, and the version.

use crate::error::Error;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};

pub use crate::error::status::*;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_last_error(e: &Error) {
    let msg = CString::new(e.to_string().replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = msg);
}

/// The message of this thread's last failing call ("" if none failed yet).
///
/// Owned by the library: valid until this thread's next failing call; never free it.
#[no_mangle]
pub extern "C" fn sz_last_error() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

/// The library's version, "MAJOR.MINOR.PATCH"; compare with SZ_VERSION from the header.
/// Static; never free it.
#[no_mangle]
pub extern "C" fn sz_version() -> *const c_char {
    static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

/// A static description of a status code, e.g. "not found". Never free it.
#[no_mangle]
pub extern "C" fn sz_status_str(code: c_int) -> *const c_char {
    let s: &'static str = match code {
        SZ_OK => "ok\0",
        SZ_NOT_FOUND => "not found\0",
        SZ_ERR_INVALID => "invalid argument\0",
        SZ_ERR_TOO_LARGE => "too large\0",
        SZ_ERR_NOMEM => "out of memory\0",
        SZ_ERR_IO => "disk I/O error\0",
        SZ_ERR_BACKEND => "backend (Redis) error\0",
        SZ_ERR_CONFIG => "configuration error\0",
        SZ_ERR_BUFFER_TOO_SMALL => "buffer too small\0",
        SZ_ERR_INTERNAL => "internal error\0",
        _ => "unknown status\0",
    };
    s.as_ptr().cast()
}
