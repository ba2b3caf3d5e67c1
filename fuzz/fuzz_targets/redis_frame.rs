//! Fuzzes smartcache::fuzzing::redis_frame (see its documentation for what it feeds and checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| smartcache::fuzzing::redis_frame(data));
