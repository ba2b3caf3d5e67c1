//! Single-flight: when many callers miss on one key at once, one computes the value and the
//! others wait for its result instead of stampeding the backend.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// In-progress computations by key.
pub struct SingleFlight<T: Clone> {
    flights: Mutex<HashMap<Vec<u8>, Arc<Flight<T>>>>,
}

pub struct Flight<T> {
    result: Mutex<Option<Result<T>>>,
    done: Condvar,
    /// The thread running the computation: if it asks for the same key again from inside its
    /// own computation, waiting would wait for itself forever.
    leader: std::thread::ThreadId,
}

impl<T: Clone> Default for SingleFlight<T> {
    fn default() -> Self {
        SingleFlight {
            flights: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Clone> SingleFlight<T> {
    /// Held by the thread about to fork (see `crate::fork`).
    pub fn hold_for_fork(&self) -> MutexGuard<'_, HashMap<Vec<u8>, Arc<Flight<T>>>> {
        self.flights.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// In a forked child: the computations in progress were run by parent threads, which do
    /// not exist here, so nobody would ever finish them; a caller of their keys computes anew.
    pub fn after_fork(&self) {
        self.hold_for_fork().clear();
    }

    /// Runs `work` for `key` unless another caller is already running it, in which case waits
    /// for and shares that caller's result (errors included). A panic in `work` is reported to
    /// the waiters as an internal error and then resumed in the caller that ran it.
    pub fn run(&self, key: &[u8], work: impl FnOnce() -> Result<T>) -> Result<T> {
        let (flight, leader) = {
            let mut map = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(key) {
                Some(f) => (Arc::clone(f), false),
                None => {
                    let f = Arc::new(Flight {
                        result: Mutex::new(None),
                        done: Condvar::new(),
                        leader: std::thread::current().id(),
                    });
                    map.insert(key.to_vec(), Arc::clone(&f));
                    (f, true)
                }
            }
        };
        if !leader {
            if flight.leader == std::thread::current().id() {
                return Err(Error::invalid(
                    "the value's computation asked for its own key again (it would wait for itself)",
                ));
            }
            let mut slot = flight.result.lock().unwrap_or_else(|e| e.into_inner());
            while slot.is_none() {
                slot = flight.done.wait(slot).unwrap_or_else(|e| e.into_inner());
            }
            return slot.clone().expect("checked above");
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        let shared = match &outcome {
            Ok(r) => r.clone(),
            Err(_) => Err(Error::Internal("the value's computation panicked".into())),
        };
        self.flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        *flight.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(shared);
        flight.done.notify_all();
        match outcome {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn concurrent_callers_share_one_computation() {
        let sf = Arc::new(SingleFlight::<u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (sf, runs, barrier) = (sf.clone(), runs.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    sf.run(b"key", || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        // Finish only once the seven others wait on this flight (each holds a
                        // reference to it, as do the map and this leader): a fixed pause let a
                        // caller that a busy machine stalled that long start a second flight.
                        let give_up = std::time::Instant::now() + Duration::from_secs(30);
                        while std::time::Instant::now() < give_up {
                            let map = sf.flights.lock().unwrap();
                            if map.get(&b"key"[..]).map(Arc::strong_count) == Some(9) {
                                break;
                            }
                            drop(map);
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Ok(7)
                    })
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap().unwrap(), 7);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_computation_asking_for_its_own_key_fails_instead_of_hanging() {
        let sf = SingleFlight::<u32>::default();
        let outer = sf.run(b"k", || match sf.run(b"k", || Ok(1)) {
            Err(Error::Invalid(m)) => {
                assert!(m.contains("its own key"));
                Ok(2)
            }
            other => panic!("{other:?}"),
        });
        assert_eq!(outer.unwrap(), 2);
    }

    #[test]
    fn errors_are_shared_and_the_next_call_retries() {
        let sf = SingleFlight::<u32>::default();
        assert!(sf.run(b"k", || Err(Error::backend("down"))).is_err());
        assert_eq!(sf.run(b"k", || Ok(1)).unwrap(), 1);
    }

    #[test]
    fn a_panic_reaches_waiters_as_an_error() {
        let sf = Arc::new(SingleFlight::<u32>::default());
        let sf2 = sf.clone();
        let leader = std::thread::spawn(move || {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                sf2.run(b"k", || {
                    std::thread::sleep(Duration::from_millis(100));
                    panic!("boom")
                })
            }));
        });
        std::thread::sleep(Duration::from_millis(20));
        let r = sf.run(b"k", || Ok(5));
        leader.join().unwrap();
        // Either we waited on the panicking leader, or we ran after it finished.
        assert!(matches!(r, Err(Error::Internal(_)) | Ok(5)));
    }
}
