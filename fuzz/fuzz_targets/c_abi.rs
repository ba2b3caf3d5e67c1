//! Fuzzes the C ABI argument layer: the input is a program of `sz_*` calls with fuzzed
//! arguments -- NULL handles and pointers, lengths, keys, values, TTLs, option names and values,
//! struct sizes, buffer capacities, callback results. Every call must return a status code
//! (never crash, abort or unwind into C), and what the cache hands out must agree with itself.
//!
//! Pointers are only ever NULL or valid for the length passed (the ABI's contract); everything
//! else is the fuzzer's. The cache opened for the data calls has a fixed memory-only config, so
//! every input starts from an empty cache; option text goes to a separate config handle.
#![no_main]

use smartcache::config::OPTION_NAMES;
use smartcache::ffi::*;
use std::ffi::{c_char, c_int, c_void, CString};
use std::ptr::{null, null_mut};

/// The fuzz input, read front to back; reads past the end give zeroes / empty slices.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    /// A length-prefixed byte string (up to 255 bytes).
    fn blob(&mut self) -> &'a [u8] {
        let n = self.u8() as usize;
        self.bytes(n)
    }
    /// A length to pass with a NULL pointer: small, huge, or anything.
    fn len(&mut self) -> usize {
        match self.u8() % 4 {
            0 => 0,
            1 => usize::MAX - self.u8() as usize,
            2 => isize::MAX as usize + self.u8() as usize,
            _ => self.u16() as usize,
        }
    }
    fn ttl(&mut self) -> u64 {
        match self.u8() % 4 {
            0 => 0,
            1 => u64::MAX - self.u8() as u64,
            _ => self.u16() as u64 * 1000,
        }
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A key: NULL (with a fuzzed length) one time in eight, else fuzzed bytes.
fn key<'a>(inp: &mut Input<'a>) -> (*const c_void, usize, &'a [u8]) {
    if inp.u8() % 8 == 0 {
        (null(), inp.len(), &[])
    } else {
        let k = inp.blob();
        (k.as_ptr().cast(), k.len(), k)
    }
}

/// NUL-terminated text from fuzzed bytes (cut at the first NUL), or NULL.
fn text(inp: &mut Input) -> Option<CString> {
    let b = inp.blob();
    if b.first() == Some(&0xff) {
        return None;
    }
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    Some(CString::new(&b[..end]).expect("no NUL"))
}

/// An option's name: one the library knows (most of the time), or fuzzed text, or NULL.
fn option_name(inp: &mut Input) -> Option<CString> {
    match inp.u8() {
        i if i < 200 => Some(CString::new(OPTION_NAMES[i as usize % OPTION_NAMES.len()]).unwrap()),
        _ => text(inp),
    }
}

fn ptr_of(s: &Option<CString>) -> *const c_char {
    s.as_ref().map_or(null(), |s| s.as_ptr())
}

fn open_cache() -> *mut sz_cache {
    // SAFETY: every pointer passed is NULL or a live handle / NUL-terminated string.
    unsafe {
        let cfg = sz_config_new();
        assert!(!cfg.is_null());
        for (k, v) in [
            (c"memory_capacity", c"64"),
            (c"max_value_size", c"64K"),
            (c"compression_min_size", c"32"),
            (c"jemalloc_enabled", c"false"),
            (c"enable_stats", c"false"),
            (c"auto_expire_interval", c"0"),
        ] {
            assert_eq!(sz_config_set(cfg, k.as_ptr(), v.as_ptr()), SZ_OK);
        }
        let mut c = null_mut();
        assert_eq!(sz_cache_open(cfg, &mut c), SZ_OK);
        sz_config_free(cfg);
        c
    }
}

/// A status code the ABI documents, other than SZ_ERR_INTERNAL (a caught panic is a bug).
fn known(rc: c_int) -> bool {
    (SZ_ERR_BUFFER_TOO_SMALL..=SZ_NOT_FOUND).contains(&rc)
}

/// The result sz_compute_fn returns and the bytes it writes, taken from the input.
struct Compute<'a> {
    rc: c_int,
    bytes: &'a [u8],
}

unsafe extern "C" fn compute(
    user: *mut c_void,
    _key: *const c_void,
    _key_len: usize,
    sink: *mut sz_sink,
) -> c_int {
    // SAFETY: user_data is the &Compute the caller passed, alive for the whole call.
    let c = unsafe { &*(user as *const Compute) };
    // SAFETY: sink is the live sink of this call; bytes is valid for its length.
    let rc = unsafe { sz_sink_write(sink, c.bytes.as_ptr().cast(), c.bytes.len()) };
    assert!(rc == SZ_OK || rc == SZ_ERR_TOO_LARGE, "sink write {rc}");
    c.rc
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let cache = open_cache();
    let cfg = sz_config_new();
    let mut steps = 0;
    // SAFETY (every call below): each pointer is NULL or valid for the length passed with it,
    // handles are live until freed at the end, and out-parameters point at locals.
    unsafe {
        while !inp.is_empty() && steps < 64 {
            steps += 1;
            let c = if inp.u8() % 16 == 0 {
                null_mut()
            } else {
                cache
            };
            let rc = match inp.u8() % 21 {
                0 => {
                    let (k, kl, _) = key(&mut inp);
                    let v = inp.blob();
                    let vp = if v.is_empty() && inp.u8() % 2 == 0 {
                        null()
                    } else {
                        v.as_ptr()
                    };
                    let ttl = inp.ttl();
                    sz_cache_set(c, k, kl, vp.cast(), v.len(), ttl)
                }
                1 => {
                    let (k, kl, _) = key(&mut inp);
                    let mut v: *mut sz_value = null_mut();
                    let out = if inp.u8() % 8 == 0 {
                        null_mut()
                    } else {
                        &mut v as *mut _
                    };
                    let rc = sz_cache_get(c, k, kl, out);
                    if rc == SZ_OK {
                        let (p, n) = (sz_value_data(v), sz_value_len(v));
                        assert!(n == 0 || !p.is_null());
                        let copy = std::slice::from_raw_parts(p, n).to_vec();
                        sz_value_release(v);
                        let _ = copy;
                    } else {
                        assert!(v.is_null(), "a failed get handed out a value");
                    }
                    rc
                }
                2 => {
                    let (k, kl, _) = key(&mut inp);
                    let cap = inp.u16() as usize % 2048;
                    let mut buf = vec![0u8; cap];
                    let bp = if cap == 0 && inp.u8() % 2 == 0 {
                        null_mut()
                    } else {
                        buf.as_mut_ptr()
                    };
                    let mut n = usize::MAX;
                    let np = if inp.u8() % 8 == 0 {
                        null_mut()
                    } else {
                        &mut n as *mut usize
                    };
                    let rc = sz_cache_get_copy(c, k, kl, bp.cast(), cap, np);
                    if rc == SZ_OK {
                        assert!(n <= cap, "copied {n} into {cap}");
                    }
                    rc
                }
                3 => {
                    let n = inp.u8() as usize % 6;
                    let keys: Vec<_> = (0..n).map(|_| key(&mut inp)).collect();
                    let ptrs: Vec<*const c_void> = keys.iter().map(|k| k.0).collect();
                    let lens: Vec<usize> = keys.iter().map(|k| k.1).collect();
                    let mut out = vec![null_mut(); n];
                    let (pp, lp, op) = match inp.u8() % 8 {
                        0 => (null(), lens.as_ptr(), out.as_mut_ptr()),
                        1 => (ptrs.as_ptr(), null(), out.as_mut_ptr()),
                        2 => (ptrs.as_ptr(), lens.as_ptr(), null_mut()),
                        _ => (ptrs.as_ptr(), lens.as_ptr(), out.as_mut_ptr()),
                    };
                    let rc = sz_cache_get_many(c, pp, lp, n, op);
                    for v in out {
                        if !v.is_null() {
                            assert_eq!(rc, SZ_OK, "values handed out by a failed get_many");
                            sz_value_release(v);
                        }
                    }
                    rc
                }
                4 => {
                    let n = inp.u8() as usize % 6;
                    let keys: Vec<_> = (0..n).map(|_| key(&mut inp)).collect();
                    let vals: Vec<&[u8]> = (0..n).map(|_| inp.blob()).collect();
                    let kp: Vec<*const c_void> = keys.iter().map(|k| k.0).collect();
                    let kl: Vec<usize> = keys.iter().map(|k| k.1).collect();
                    let vp: Vec<*const c_void> = vals.iter().map(|v| v.as_ptr().cast()).collect();
                    let vl: Vec<usize> = vals.iter().map(|v| v.len()).collect();
                    let nulls = inp.u8();
                    let pick = |bit: u8, p: *const usize| {
                        if nulls & bit != 0 && nulls % 3 == 0 {
                            null()
                        } else {
                            p
                        }
                    };
                    sz_cache_set_many(
                        c,
                        if nulls & 1 != 0 && nulls % 3 == 0 {
                            null()
                        } else {
                            kp.as_ptr()
                        },
                        pick(2, kl.as_ptr()),
                        if nulls & 4 != 0 && nulls % 3 == 0 {
                            null()
                        } else {
                            vp.as_ptr()
                        },
                        pick(8, vl.as_ptr()),
                        n,
                        inp.ttl(),
                    )
                }
                5 => {
                    let (k, kl, _) = key(&mut inp);
                    sz_cache_delete(c, k, kl)
                }
                6 => {
                    let (k, kl, _) = key(&mut inp);
                    sz_cache_exists(c, k, kl)
                }
                7 => sz_cache_clear(c),
                8 => sz_cache_expire_now(c),
                9 => {
                    // A caller's struct of any declared size, up to far larger than ours.
                    let mut mem = vec![0u64; 256];
                    let size = inp.u16() as usize % (mem.len() * 8);
                    let s = mem.as_mut_ptr() as *mut sz_stats;
                    (*s).struct_size = size;
                    let out = if inp.u8() % 8 == 0 { null_mut() } else { s };
                    let rc = sz_cache_stats(c, out);
                    if rc == SZ_OK {
                        assert!((*s).struct_size <= size.max(std::mem::size_of::<usize>()));
                    }
                    rc
                }
                10 => {
                    let mut mem = vec![0u64; 256];
                    let size = inp.u16() as usize % (mem.len() * 8);
                    let h = mem.as_mut_ptr() as *mut sz_health;
                    (*h).struct_size = size;
                    sz_cache_health(c, if inp.u8() % 8 == 0 { null_mut() } else { h })
                }
                11 => {
                    let s = if inp.u8() % 2 == 0 {
                        sz_cache_stats_json(c)
                    } else {
                        sz_cache_stats_prometheus(c)
                    };
                    assert_eq!(s.is_null(), c.is_null());
                    sz_string_free(s);
                    SZ_OK
                }
                12 => {
                    // An option by its name (or fuzzed text) set to fuzzed text, on a config
                    // handle or NULL.
                    let name = option_name(&mut inp);
                    let value = text(&mut inp);
                    let h = if inp.u8() % 16 == 0 { null_mut() } else { cfg };
                    let rc = sz_config_set(h, ptr_of(&name), ptr_of(&value));
                    assert!(
                        rc == SZ_OK || rc == SZ_ERR_CONFIG || rc == SZ_ERR_INVALID,
                        "{rc}"
                    );
                    rc
                }
                13 => {
                    let name = option_name(&mut inp);
                    let mut out: *mut c_char = null_mut();
                    let op = if inp.u8() % 8 == 0 {
                        null_mut()
                    } else {
                        &mut out as *mut _
                    };
                    let h = if inp.u8() % 16 == 0 {
                        null()
                    } else {
                        cfg as *const _
                    };
                    let rc = sz_config_get(h, ptr_of(&name), op);
                    if rc == SZ_OK {
                        assert!(!out.is_null());
                    }
                    sz_string_free(out);
                    rc
                }
                14 => {
                    let (k, kl, _) = key(&mut inp);
                    let comp = Compute {
                        rc: [SZ_OK, 42, -1, SZ_ERR_NOMEM][inp.u8() as usize % 4],
                        bytes: inp.blob(),
                    };
                    let f: sz_compute_fn = if inp.u8() % 8 == 0 {
                        None
                    } else {
                        Some(compute)
                    };
                    let mut v: *mut sz_value = null_mut();
                    let out = if inp.u8() % 8 == 0 {
                        null_mut()
                    } else {
                        &mut v as *mut _
                    };
                    let ttl = inp.ttl();
                    let rc = sz_cache_get_or_compute(
                        c,
                        k,
                        kl,
                        ttl,
                        f,
                        &comp as *const Compute as *mut c_void,
                        out,
                    );
                    if !v.is_null() {
                        assert_eq!(rc, SZ_OK);
                        sz_value_release(v);
                    }
                    rc
                }
                15 => {
                    let (k, kl, _) = key(&mut inp);
                    let cap = inp.u16() as usize % 2048;
                    let mut buf = vec![0u8; cap];
                    let mut b = sz_get_buffer {
                        cache: c,
                        data: if cap == 0 && inp.u8() % 2 == 0 {
                            null_mut()
                        } else {
                            buf.as_mut_ptr()
                        },
                        cap,
                        len: inp.u16() as usize % (cap + 1),
                        release: None,
                        reacquire: None,
                        pin_larger: (inp.u8() % 2) as c_int,
                        value: null_mut(),
                    };
                    let bp = if inp.u8() % 16 == 0 {
                        null_mut()
                    } else {
                        &mut b as *mut _
                    };
                    let rc = if inp.u8() % 2 == 0 {
                        sz_cache_get_buffered(bp, k, kl)
                    } else {
                        sz_cache_get_memory(bp, k, kl)
                    };
                    if rc == SZ_OK {
                        assert!(b.len <= cap);
                    }
                    if !b.value.is_null() {
                        sz_value_release(b.value);
                    }
                    rc
                }
                16 => {
                    let code = i32::from_le_bytes([inp.u8(), inp.u8(), inp.u8(), inp.u8()]);
                    assert!(!sz_status_str(code).is_null());
                    assert!(!sz_version().is_null());
                    SZ_OK
                }
                17 => {
                    // JSON text (fuzzed; the library validates it) stored in the tagged form.
                    let (k, kl, _) = key(&mut inp);
                    let j = inp.blob();
                    let jp = if j.is_empty() && inp.u8() % 2 == 0 {
                        null()
                    } else {
                        j.as_ptr()
                    };
                    let ttl = inp.ttl();
                    sz_cache_set_json(c, k, kl, jp.cast(), j.len(), ttl)
                }
                18 => {
                    let (k, kl, _) = key(&mut inp);
                    let cap = inp.u16() as usize % 2048;
                    let mut buf = vec![0u8; cap];
                    let bp = if cap == 0 && inp.u8() % 2 == 0 {
                        null_mut()
                    } else {
                        buf.as_mut_ptr()
                    };
                    let mut n = usize::MAX;
                    let np = if inp.u8() % 8 == 0 {
                        null_mut()
                    } else {
                        &mut n as *mut usize
                    };
                    let rc = sz_cache_get_json(c, k, kl, bp.cast(), cap, np);
                    if rc == SZ_OK {
                        assert!(n <= cap, "copied {n} into {cap}");
                    }
                    rc
                }
                19 => {
                    let index = usize::from_le_bytes([inp.u8(), inp.u8(), 0, 0, 0, 0, 0, inp.u8()]);
                    let name = sz_config_option(index);
                    assert_eq!(
                        name.is_null(),
                        index >= OPTION_NAMES.len(),
                        "option {index}"
                    );
                    SZ_OK
                }
                _ => {
                    // Releasing and freeing NULL is a no-op.
                    sz_value_release(null_mut());
                    sz_string_free(null_mut());
                    sz_config_free(null_mut());
                    sz_cache_close(null_mut());
                    let mut out: *mut sz_cache = null_mut();
                    sz_cache_open(
                        null(),
                        if inp.u8() % 2 == 0 {
                            null_mut()
                        } else {
                            &mut out
                        },
                    );
                    sz_cache_close(out);
                    SZ_OK
                }
            };
            assert!(
                known(rc),
                "status {rc}: {:?}",
                std::ffi::CStr::from_ptr(sz_last_error())
            );
            if rc != SZ_OK && rc != SZ_NOT_FOUND {
                assert!(!sz_last_error().is_null());
            }
        }
        sz_config_free(cfg);
        sz_cache_close(cache);
    }
});
