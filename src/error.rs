//! The one error type of the crate, and its mapping onto the C status codes of docs/c-api.md.

use std::fmt;

/// Status codes of the C ABI (exported to the header as `SZ_*`). These numbers are part of the
/// ABI: never renumber one; a retired code stays reserved.
pub mod status {
    /// Success.
    pub const SZ_OK: i32 = 0;
    /// The key has no live entry (get, get_copy, delete, exists).
    pub const SZ_NOT_FOUND: i32 = 1;
    /// A bad argument: a NULL pointer, an empty key, a string that is not UTF-8.
    pub const SZ_ERR_INVALID: i32 = -1;
    /// A key over 65535 bytes, or a value over max_value_size or the memory tier's budget.
    pub const SZ_ERR_TOO_LARGE: i32 = -2;
    /// Memory could not be allocated.
    pub const SZ_ERR_NOMEM: i32 = -3;
    /// The disk tier's file could not be used (or is not ours).
    pub const SZ_ERR_IO: i32 = -4;
    /// The Redis tier failed.
    pub const SZ_ERR_BACKEND: i32 = -5;
    /// An unknown option or a bad option value.
    pub const SZ_ERR_CONFIG: i32 = -6;
    /// The caller's buffer is too small; *val_len holds the length needed.
    pub const SZ_ERR_BUFFER_TOO_SMALL: i32 = -7;
    /// A bug in the library (a caught panic). Please report it with sz_last_error().
    pub const SZ_ERR_INTERNAL: i32 = -99;
}

use status::*;

/// What went wrong, with a message written for the person reading `sz_last_error()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A bad argument: NULL pointer, empty key, wrong type.
    Invalid(String),
    /// A key or value over its limit.
    TooLarge(String),
    /// An allocation failed.
    NoMem(String),
    /// A file could not be opened, read, written, or is not ours.
    Io(String),
    /// A remote backend (Redis) failed, timed out or replied garbage.
    Backend(String),
    /// An unknown option or a bad option value.
    Config(String),
    /// The caller's buffer is too small; carries the length needed.
    BufferTooSmall(usize),
    /// A bug: a caught panic or a broken invariant.
    Internal(String),
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }
    pub fn io(msg: impl Into<String>) -> Self {
        Error::Io(msg.into())
    }
    pub fn backend(msg: impl Into<String>) -> Self {
        Error::Backend(msg.into())
    }

    /// The same error with `what` (e.g. `keys[3]`) before its message.
    pub fn about(self, what: &str) -> Error {
        let with = |m: String| format!("{what}: {m}");
        match self {
            Error::Invalid(m) => Error::Invalid(with(m)),
            Error::TooLarge(m) => Error::TooLarge(with(m)),
            Error::NoMem(m) => Error::NoMem(with(m)),
            Error::Io(m) => Error::Io(with(m)),
            Error::Backend(m) => Error::Backend(with(m)),
            Error::Config(m) => Error::Config(with(m)),
            Error::Internal(m) => Error::Internal(with(m)),
            e @ Error::BufferTooSmall(_) => e,
        }
    }

    /// The C status code this error is reported as.
    pub fn code(&self) -> i32 {
        match self {
            Error::Invalid(_) => SZ_ERR_INVALID,
            Error::TooLarge(_) => SZ_ERR_TOO_LARGE,
            Error::NoMem(_) => SZ_ERR_NOMEM,
            Error::Io(_) => SZ_ERR_IO,
            Error::Backend(_) => SZ_ERR_BACKEND,
            Error::Config(_) => SZ_ERR_CONFIG,
            Error::BufferTooSmall(_) => SZ_ERR_BUFFER_TOO_SMALL,
            Error::Internal(_) => SZ_ERR_INTERNAL,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(m) => write!(f, "invalid argument: {m}"),
            Error::TooLarge(m) => write!(f, "too large: {m}"),
            Error::NoMem(m) => write!(f, "out of memory: {m}"),
            Error::Io(m) => write!(f, "disk: {m}"),
            Error::Backend(m) => write!(f, "redis: {m}"),
            Error::Config(m) => write!(f, "config: {m}"),
            Error::BufferTooSmall(n) => write!(f, "buffer too small: the value needs {n} bytes"),
            Error::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_abi_numbers() {
        assert_eq!(Error::invalid("x").code(), -1);
        assert_eq!(Error::TooLarge("x".into()).code(), -2);
        assert_eq!(Error::NoMem("x".into()).code(), -3);
        assert_eq!(Error::io("x").code(), -4);
        assert_eq!(Error::backend("x").code(), -5);
        assert_eq!(Error::config("x").code(), -6);
        assert_eq!(Error::BufferTooSmall(3).code(), -7);
        assert_eq!(Error::Internal("x".into()).code(), -99);
    }

    #[test]
    fn messages_name_the_area() {
        assert_eq!(
            Error::config("unknown option 'memry_ttl'").to_string(),
            "config: unknown option 'memry_ttl'"
        );
        assert!(Error::BufferTooSmall(10).to_string().contains("10 bytes"));
    }
}
