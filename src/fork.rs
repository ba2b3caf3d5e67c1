//! fork(): a cache opened before `fork()` keeps working in the child, without being reopened.
//!
//! A child starts as a copy of its parent with one thread, the one that called fork. Three
//! kinds of inherited state would go wrong there, and each is handled once, here:
//!
//! - **Locks.** A lock another parent thread held at the instant of the fork stays held for
//!   ever in the child (its holder does not exist there). The `prepare` handler of
//!   `pthread_atfork` takes every lock of every open cache ([`ForkAware::hold_locks`]), so the
//!   fork happens at an instant when no other thread holds one; the `parent` and `child`
//!   handlers release them.
//! - **Per-process state.** Sockets to Redis, the write log's writer id, the disk tier's
//!   writer-lock descriptor, single-flight computations led by parent threads: the `child`
//!   handler calls [`ForkAware::in_child`] on every open cache, which forgets or rebuilds them
//!   without touching what the parent still uses (no QUIT on the parent's connections).
//! - **Threads.** None survives the fork, and starting threads inside the `child` handler is
//!   not safe, so the handler only bumps [`generation`]; a cache restarts its background
//!   threads on its next slow-path call when the generation moved (never on a memory hit).
//!
//! The prepare handler runs before the allocator's own (jemalloc registers first: see
//! [`install`]), so threads that must allocate to release our locks still can.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError, Weak};

/// Something that holds locks and per-process state and is registered for fork handling.
pub trait ForkAware: Send + Sync {
    /// Takes every lock a thread of this process may hold, in the order the code nests them,
    /// and pushes the guards. Called in the parent by the thread about to fork.
    fn hold_locks<'a>(&'a self, held: &mut Vec<Box<dyn Held + 'a>>);
    /// Called in the child, with the locks released and only one thread: forget or rebuild
    /// what belongs to the parent process.
    fn in_child(&self);
}

/// A lock guard kept from the prepare handler to the parent or child handler.
pub trait Held {}
impl<T> Held for T {}

/// Bumped in every child right after fork.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Every open cache (dead entries pruned on each registration).
static REGISTRY: Mutex<Vec<Weak<dyn ForkAware>>> = Mutex::new(Vec::new());

/// What a child must not run or join: the handles of threads that exist only in its parent.
/// Kept reachable (not leaked) and never dropped.
static ABANDONED: Mutex<Vec<Box<dyn Send>>> = Mutex::new(Vec::new());

static INSTALL: Once = Once::new();

/// The fork generation of this process: 0 in a process that was not forked from one using the
/// library, and one more in each child. Compare with a value saved earlier to learn that this
/// is a new process.
#[inline]
pub fn generation() -> u64 {
    GENERATION.load(Relaxed)
}

/// Registers `object` for fork handling (installing the handlers on first use).
pub fn register(object: Weak<dyn ForkAware>) {
    install();
    let mut registry = lock(&REGISTRY);
    registry.retain(|w| w.strong_count() > 0);
    registry.push(object);
}

/// Keeps `handle` (a thread of the parent process, as seen from a child) without dropping it:
/// joining or signalling a thread that does not exist in this process would hang.
pub fn abandon(handle: impl Send + 'static) {
    lock(&ABANDONED).push(Box::new(handle));
}

/// Installs the `pthread_atfork` handlers once per process.
fn install() {
    INSTALL.call_once(|| {
        // Handlers run prepare in reverse order of registration and child in order: jemalloc
        // must be registered before us, so that our prepare (which may wait for threads that
        // allocate while releasing our locks) runs before jemalloc takes its own locks.
        crate::memory::arena::initialize_allocator();
        // SAFETY: the three handlers are `extern "C" fn()` with no arguments, never unwind
        // (each catches panics), and live for the whole program.
        let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        // ENOMEM only; without the handlers a forked child is no worse off than before.
        debug_assert_eq!(rc, 0, "pthread_atfork failed");
    });
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The locks taken by `prepare`, released by `parent` or `child`.
struct Holding {
    /// Guards borrowing from `owners`: dropped first (see `Drop`).
    guards: Vec<Box<dyn Held>>,
    owners: Vec<Arc<dyn ForkAware>>,
    _abandoned: MutexGuard<'static, Vec<Box<dyn Send>>>,
    _registry: MutexGuard<'static, Vec<Weak<dyn ForkAware>>>,
}

impl Drop for Holding {
    fn drop(&mut self) {
        // Releases in reverse order of taking.
        while let Some(g) = self.guards.pop() {
            drop(g);
        }
    }
}

thread_local! {
    /// Set by `prepare` on the forking thread, taken by `parent` or `child` on the same thread.
    static HOLDING: RefCell<Option<Holding>> = const { RefCell::new(None) };
}

extern "C" fn prepare() {
    let _ = std::panic::catch_unwind(|| {
        let registry = lock(&REGISTRY);
        let abandoned = lock(&ABANDONED);
        let owners: Vec<Arc<dyn ForkAware>> = registry.iter().filter_map(Weak::upgrade).collect();
        let mut guards: Vec<Box<dyn Held>> = Vec::new();
        for owner in &owners {
            let mut held = Vec::new();
            owner.hold_locks(&mut held);
            for g in held {
                // SAFETY: the guard borrows from `owner`, an Arc stored in the same Holding as
                // the guard; Holding's Drop drops every guard before `owners`, and nothing
                // moves the Arc's target, so the borrow never outlives what it borrows.
                guards.push(unsafe {
                    std::mem::transmute::<Box<dyn Held + '_>, Box<dyn Held + 'static>>(g)
                });
            }
        }
        HOLDING.with(|h| {
            *h.borrow_mut() = Some(Holding {
                guards,
                owners,
                _abandoned: abandoned,
                _registry: registry,
            })
        });
    });
}

extern "C" fn parent() {
    let _ = std::panic::catch_unwind(|| {
        HOLDING.with(|h| h.borrow_mut().take());
    });
}

extern "C" fn child() {
    let _ = std::panic::catch_unwind(|| {
        GENERATION.fetch_add(1, Relaxed);
        let Some(mut holding) = HOLDING.with(|h| h.borrow_mut().take()) else {
            return;
        };
        // Release every lock first: this is the only thread, and `in_child` takes some.
        while let Some(g) = holding.guards.pop() {
            drop(g);
        }
        let owners = std::mem::take(&mut holding.owners);
        drop(holding);
        for owner in owners {
            owner.in_child();
            // The last reference to a cache closed meanwhile by a parent thread: dropping it
            // here would join threads of the parent.
            if Arc::strong_count(&owner) == 1 {
                abandon(owner);
            }
        }
    });
}
