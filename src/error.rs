//! The one error type of the crate, and its mapping onto the C status codes of DESIGN.md.

use std::fmt;

/// Status codes of the C ABI. These numbers are part of the ABI: never renumber one; a retired
/// code stays reserved.
pub mod status {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const ERR_INVALID: i32 = -1;
    pub const ERR_TOO_LARGE: i32 = -2;
    pub const ERR_NOMEM: i32 = -3;
    pub const ERR_IO: i32 = -4;
    pub const ERR_BACKEND: i32 = -5;
    pub const ERR_CONFIG: i32 = -6;
    pub const ERR_BUFFER_TOO_SMALL: i32 = -7;
    pub const ERR_INTERNAL: i32 = -99;
}

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
    /// An unknown option, a bad option value, or a tier not available in this build.
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

    /// The C status code this error is reported as.
    pub fn code(&self) -> i32 {
        match self {
            Error::Invalid(_) => status::ERR_INVALID,
            Error::TooLarge(_) => status::ERR_TOO_LARGE,
            Error::NoMem(_) => status::ERR_NOMEM,
            Error::Io(_) => status::ERR_IO,
            Error::Backend(_) => status::ERR_BACKEND,
            Error::Config(_) => status::ERR_CONFIG,
            Error::BufferTooSmall(_) => status::ERR_BUFFER_TOO_SMALL,
            Error::Internal(_) => status::ERR_INTERNAL,
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
