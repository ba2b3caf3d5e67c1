//! Coherence between the processes of one host (and the hosts sharing a Redis): the
//! cross-process protocol, in one place. docs/coherence.md states it: what each process writes
//! and in what order, what a reader checks, what a crash at each step leaves behind.
//!
//! - `write_log`: the shared file `<disk_path>/smartcache.writes`, with the ring of writes that
//!   tells every process's memory tier what others set, deleted or cleared, and the copy
//!   fence (copies from disk into Redis in flight, which a delete waits for);
//! - `outage`: the Redis invalidations that could not be made, which every process pays before
//!   it trusts a Redis read again (kept in the same file).
//!
//! The memory tier's part, the write marks that refuse a promotion older than a write that
//! finished meanwhile, stays inside its shards (`crate::memory`): it is on the hit path.

pub mod outage;
pub mod write_log;
