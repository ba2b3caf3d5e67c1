//! Fuzzes smartcache::fuzzing::disk_file (see its documentation for what it feeds and checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| smartcache::fuzzing::disk_file(data));
