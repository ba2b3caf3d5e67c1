//! The process's worker threads for queued calls: started on demand up to a bound, they exit
//! after a while without work, and a forked child starts its own (the parent's do not exist
//! there).
//!
//! Size: the calls are I/O-bound and a worker waiting on Redis holds one of its cache's
//! `redis_pool_size` connections, so more workers than a few pools' worth only queue in the
//! library. `SMARTCACHE_ASYNC_WORKERS` (1..1024) overrides the default of 32.

use super::{run_gets, Job};
use crate::fork::{self, ForkAware, Held};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

const DEFAULT_WORKERS: usize = 32;
/// Most gets run as one `get_many` (one Redis MGET).
pub const GET_BATCH_MAX: usize = 256;
/// A worker without work for this long exits (a new one starts when work comes).
const IDLE_EXIT: Duration = Duration::from_secs(30);

struct Pool {
    state: Mutex<State>,
    work: Condvar,
    max_workers: usize,
}

struct State {
    jobs: VecDeque<Job>,
    workers: usize,
    idle: usize,
}

static POOL: OnceLock<Arc<Pool>> = OnceLock::new();

fn pool() -> &'static Arc<Pool> {
    POOL.get_or_init(|| {
        let pool = Arc::new(Pool {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                workers: 0,
                idle: 0,
            }),
            work: Condvar::new(),
            max_workers: worker_limit(std::env::var("SMARTCACHE_ASYNC_WORKERS").ok()),
        });
        let weak = Arc::downgrade(&pool);
        fork::register(weak);
        pool
    })
}

/// The worker bound from `SMARTCACHE_ASYNC_WORKERS` (unset or not a number: the default).
fn worker_limit(text: Option<String>) -> usize {
    text.and_then(|t| t.trim().parse::<usize>().ok())
        .unwrap_or(DEFAULT_WORKERS)
        .clamp(1, 1024)
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Queues `jobs` for the workers, waking (or starting, within the bound) one worker per
/// GET_BATCH_MAX jobs: a burst submitted at once wakes a few threads, not one per job.
pub fn submit(jobs: Vec<Job>) -> crate::error::Result<()> {
    let pool = pool();
    let wanted = jobs.len().div_ceil(GET_BATCH_MAX);
    let mut state = pool.lock();
    let queued = state.jobs.len();
    state.jobs.extend(jobs);
    let missing = wanted.saturating_sub(state.idle);
    for _ in 0..missing {
        if state.workers >= pool.max_workers {
            break;
        }
        let spawned = std::thread::Builder::new()
            .name("smartcache-async".into())
            .spawn(|| work(pool));
        match spawned {
            Ok(_) => state.workers += 1,
            // Without a new thread the jobs wait for a busy one; with none at all they would
            // wait for ever, so they are refused.
            Err(e) if state.workers == 0 => {
                state.jobs.truncate(queued);
                return Err(crate::error::Error::NoMem(format!(
                    "cannot start a worker thread: {e}"
                )));
            }
            Err(_) => break,
        }
    }
    drop(state);
    for _ in 0..wanted {
        pool.work.notify_one();
    }
    Ok(())
}

fn work(pool: &'static Pool) {
    loop {
        let batch = {
            let mut state = pool.lock();
            loop {
                if !state.jobs.is_empty() {
                    break;
                }
                state.idle += 1;
                let (guard, wait) = pool
                    .work
                    .wait_timeout(state, IDLE_EXIT)
                    .unwrap_or_else(PoisonError::into_inner);
                state = guard;
                state.idle -= 1;
                if wait.timed_out() && state.jobs.is_empty() {
                    state.workers -= 1;
                    return;
                }
            }
            take_batch(&mut state.jobs)
        };
        if batch.len() == 1 && !batch[0].is_get() {
            batch.into_iter().for_each(Job::run);
        } else {
            run_gets(batch);
        }
    }
}

/// The next job; when it is a get, with it every queued get of the same cache (up to
/// GET_BATCH_MAX), in queue order.
fn take_batch(jobs: &mut VecDeque<Job>) -> Vec<Job> {
    let Some(first) = jobs.pop_front() else {
        return Vec::new();
    };
    if !first.is_get() {
        return vec![first];
    }
    let mut batch = vec![first];
    let mut rest = VecDeque::with_capacity(jobs.len());
    while let Some(job) = jobs.pop_front() {
        if batch.len() < GET_BATCH_MAX && job.is_get() && Arc::ptr_eq(&job.cache, &batch[0].cache) {
            batch.push(job);
        } else {
            rest.push_back(job);
        }
    }
    *jobs = rest;
    batch
}

impl ForkAware for Pool {
    fn hold_locks<'a>(&'a self, held: &mut Vec<Box<dyn Held + 'a>>) {
        held.push(Box::new(self.lock()));
    }

    /// The parent's workers do not exist here: their count goes to zero (the next submit
    /// starts new ones) and the jobs queued in the parent are kept unrun (their callers, the
    /// parent's event loops, are not in this process either).
    fn in_child(&self) {
        let mut state = self.lock();
        for job in state.jobs.drain(..) {
            fork::abandon(job);
        }
        state.workers = 0;
        state.idle = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::worker_limit;

    #[test]
    fn worker_limit_reads_the_environment_within_bounds() {
        assert_eq!(worker_limit(None), 32);
        assert_eq!(worker_limit(Some("8".into())), 8);
        assert_eq!(worker_limit(Some("0".into())), 1);
        assert_eq!(worker_limit(Some("99999".into())), 1024);
        assert_eq!(worker_limit(Some("many".into())), 32);
    }
}
