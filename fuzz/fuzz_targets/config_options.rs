//! Fuzzes smartcache::fuzzing::config_options (see its documentation for what it feeds and checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| smartcache::fuzzing::config_options(data));
