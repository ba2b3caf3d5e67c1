//! SmartCache: a multi-tier cache — in-memory L1, Redis L2, memory-mapped disk L3 — behind a C ABI.
//!
//! Guarantees:
//! - An expired entry is never returned by any tier.
//! - A value handed out pinned (`sz_cache_get`) stays valid until released, whatever happens to
//!   the entry meanwhile (overwrite, delete, expiry, eviction, clear).
//! - No panic crosses the C boundary; every call returns a status code.
//!
//! Caveats:
//! - The disk tier's file is for local disks only.
//! - A cache opened before `fork()` works in the child as it is (see [`fork`]).
//! - A failing lower tier degrades to misses and skipped writes; it is reported in stats and
//!   health, not as an error of the call.

pub mod clock;
pub mod coherence;
pub mod compress;
pub mod config;
pub mod disk;
pub mod error;
pub mod ffi;
pub mod flight;
pub mod fork;
#[doc(hidden)]
pub mod fuzzing;
pub mod latency;
pub mod memory;
pub mod offload;
pub mod redis;
pub mod sign;
pub mod stats;
pub mod sync;
pub mod tier;
pub mod tiered;

pub use config::Config;
pub use error::{Error, Result};
pub use tiered::{Cache, Health};
