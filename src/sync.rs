//! The synchronisation primitives of the code whose interleavings are checked: the memory
//! tier's locks and pin counts, the write log and the disk-to-Redis copy fence.
//!
//! Normally these are std's. Built with the `shuttle` feature they are the `shuttle`
//! crate's, whose scheduler runs the code's threads one at a time and switches between them
//! at every atomic access and lock, trying many schedules of the real code (tests/interleavings.rs,
//! `make test-interleavings`). A build with the feature is for those tests only: outside a
//! `shuttle::check_*` run its primitives panic.
//!
//! Shuttle runs every schedule sequentially consistent, so it finds interleaving bugs (a lost
//! update, a check and act that another thread can split), not weak-memory-ordering ones.

#[cfg(not(feature = "shuttle"))]
pub use std::sync::{atomic, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
#[cfg(not(feature = "shuttle"))]
pub use std::thread::yield_now;

#[cfg(feature = "shuttle")]
pub use shuttle::sync::{atomic, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
#[cfg(feature = "shuttle")]
pub use shuttle::thread::yield_now;
