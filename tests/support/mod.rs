//! Helpers shared by the integration tests (each test file includes this with `mod support;`).
#![allow(dead_code)] // each test file uses a different subset

pub mod fake_redis;
pub mod redis_cluster;
pub mod redis_server;
pub mod sentinel;
pub mod tls_certs;
