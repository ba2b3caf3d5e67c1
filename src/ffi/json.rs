//! The JSON-tagged value form shared with the Python binding (docs/value-format.md): the
//! tag byte 'J' followed by JSON text in UTF-8. These calls add the tag on set and check and
//! strip it on get, so C code exchanges JSON with Python's `serializer="json"` caches without
//! knowing the tag. The JSON text itself is the caller's: it is neither parsed nor validated
//! beyond being UTF-8.

use super::cache::{copied_status, receive_buffer, sz_cache, ttl};
use super::{boundary, bytes, handle, key_arg, out_arg, SZ_OK};
use crate::error::Error;
use std::ffi::{c_int, c_void};

/// The first byte of a value in the JSON-tagged form; the JSON text follows it.
pub const SZ_TAG_JSON: u8 = b'J';

/// Stores the JSON text `json` (json_len bytes of UTF-8, not NUL-terminated; json may be NULL
/// only when json_len is 0) under `key` in the JSON-tagged form that Python's
/// `serializer="json"` and Go's GetJSON read: the byte SZ_TAG_JSON, then the text. `ttl_ms` as
/// in sz_cache_set. The text is stored as given: the library does not check that it is JSON.
///
/// Returns SZ_OK; SZ_ERR_INVALID (NULL argument, empty key, text not UTF-8);
/// SZ_ERR_TOO_LARGE; SZ_ERR_NOMEM; as sz_cache_set otherwise.
///
/// # Safety
/// Pointers are NULL or valid for their lengths; `c` from sz_cache_open.
#[no_mangle]
pub unsafe extern "C" fn sz_cache_set_json(
    c: *mut sz_cache,
    key: *const c_void,
    key_len: usize,
    json: *const c_void,
    json_len: usize,
    ttl_ms: u64,
) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (cache, k, text) = unsafe {
            (
                handle(c, "cache")?,
                key_arg(key.cast(), key_len)?,
                bytes(json.cast(), json_len, "json")?,
            )
        };
        if let Err(e) = std::str::from_utf8(text) {
            return Err(Error::invalid(format!(
                "json is not UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            )));
        }
        let mut tagged = Vec::new();
        tagged
            .try_reserve_exact(1 + text.len())
            .map_err(|_| Error::NoMem(format!("{} bytes for a JSON value", 1 + text.len())))?;
        tagged.push(SZ_TAG_JSON);
        tagged.extend_from_slice(text);
        cache.inner.set(k, &tagged, ttl(ttl_ms))?;
        Ok(SZ_OK)
    })
}

/// Copies the JSON text of `key`, stored in the JSON-tagged form, into `buf` (buf_cap bytes;
/// buf may be NULL when buf_cap is 0) without its tag byte, and sets *json_len to the text's
/// length. When buf_cap > *json_len a NUL byte follows the text, so a buffer one byte longer
/// than the text receives a C string.
///
/// Returns SZ_OK; SZ_NOT_FOUND; SZ_ERR_BUFFER_TOO_SMALL, with *json_len set to the text's
/// length and buf untouched; SZ_ERR_INVALID for NULL arguments and for a value that is not in
/// the JSON-tagged form (empty, or another first byte: written raw, as bytes/str, or pickled;
/// sz_last_error() names the byte found); SZ_ERR_TOO_LARGE (key).
///
/// # Safety
/// Pointers are NULL or valid for their lengths; `c` from sz_cache_open.
#[no_mangle]
pub unsafe extern "C" fn sz_cache_get_json(
    c: *mut sz_cache,
    key: *const c_void,
    key_len: usize,
    buf: *mut c_void,
    buf_cap: usize,
    json_len: *mut usize,
) -> c_int {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (cache, k, len_out, dst) = unsafe {
            (
                handle(c, "cache")?,
                key_arg(key.cast(), key_len)?,
                out_arg(json_len, "json_len")?,
                receive_buffer(buf.cast(), buf_cap)?,
            )
        };
        let copied = match cache.inner.get(k)? {
            None => Ok(None),
            Some(blob) => json_text(blob.value()).and_then(|text| {
                if text.len() > dst.len() {
                    return Err(Error::BufferTooSmall(text.len()));
                }
                dst[..text.len()].copy_from_slice(text);
                if let Some(nul) = dst.get_mut(text.len()) {
                    *nul = 0;
                }
                Ok(Some(text.len()))
            }),
        };
        copied_status(copied, len_out)
    })
}

/// The JSON text of a stored value, or why it is not in the JSON-tagged form.
fn json_text(stored: &[u8]) -> Result<&[u8], Error> {
    match stored.split_first() {
        Some((&SZ_TAG_JSON, text)) => Ok(text),
        Some((&tag, _)) => Err(Error::invalid(format!(
            "the value is not in the JSON-tagged form: its first byte is {tag:#04x}, not 'J' \
             (see docs/value-format.md)"
        ))),
        None => Err(Error::invalid(
            "the value is not in the JSON-tagged form: it is empty (see docs/value-format.md)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_text_strips_the_tag_and_refuses_other_forms() {
        assert_eq!(json_text(b"J{\"a\":1}").unwrap(), b"{\"a\":1}");
        assert_eq!(json_text(b"J").unwrap(), b"");
        for other in [&b"Bbytes"[..], b"Stext", b"\x80\x05pickle", b""] {
            let e = json_text(other).unwrap_err();
            assert!(e.to_string().contains("not in the JSON-tagged form"), "{e}");
        }
    }
}
