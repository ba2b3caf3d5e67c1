//! Host name lookup that a slow DNS server cannot stretch past a call's deadline.
//!
//! hiredis resolves host names with getaddrinfo, which has no timeout: with an unanswering
//! resolver, glibc waits 5 s per attempt and server, so one get could block for tens of
//! seconds though `redis_timeout_ms` promises a bound. Here the lookup runs on a short-lived
//! thread of its own and the caller waits for its answer only until the call's deadline;
//! hiredis is then given numeric addresses, which it does not look up.
//!
//! An answer is used for [`FRESH_FOR`]; after that (or after [`Resolver::forget`], called when
//! no address would connect) the old answer is still served while one background lookup
//! refreshes it, so only the first lookup, or one after a failed lookup, is waited for.
//! At most one lookup per host is in flight; callers arriving meanwhile wait for that one.

use super::conn::{ConnError, ConnErrorKind};
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long an answer is used before it is refreshed in the background.
pub const FRESH_FOR: Duration = Duration::from_secs(30);

/// What performs one lookup: getaddrinfo in production, a stand-in in tests.
pub type Lookup = Arc<dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync>;

/// Resolves one host:port; shared by every connection a pool dials.
pub struct Resolver {
    host: String,
    port: u16,
    /// The address when the host is an IP literal: nothing to look up.
    literal: Option<SocketAddr>,
    lookup: Lookup,
    fresh_for: Duration,
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    answered: Condvar,
}

#[derive(Default)]
struct State {
    answer: Option<Answer>,
    in_flight: bool,
    /// Bumped by every finished lookup, so a waiter knows a new answer arrived.
    lookups_done: u64,
    /// The address that last accepted a connection: listed first while it is in the answer.
    preferred: Option<SocketAddr>,
}

struct Answer {
    addrs: Result<Vec<SocketAddr>, String>,
    refresh_after: Instant,
}

impl Resolver {
    /// A resolver using the system's getaddrinfo.
    pub fn new(host: &str, port: u16) -> Resolver {
        Resolver::with_lookup(host, port, FRESH_FOR, Arc::new(system_lookup))
    }

    pub fn with_lookup(host: &str, port: u16, fresh_for: Duration, lookup: Lookup) -> Resolver {
        let literal = host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port));
        Resolver {
            host: host.to_owned(),
            port,
            literal,
            lookup,
            fresh_for,
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                answered: Condvar::new(),
            }),
        }
    }

    /// The host's addresses, in the order getaddrinfo gave them; waits for a lookup at most
    /// until `deadline`.
    pub fn resolve(&self, deadline: Instant) -> Result<Vec<SocketAddr>, ConnError> {
        if let Some(addr) = self.literal {
            return Ok(vec![addr]);
        }
        let mut st = self.lock();
        if let Some(Answer {
            addrs: Ok(addrs),
            refresh_after,
        }) = &st.answer
        {
            let addrs = preferred_first(addrs, st.preferred);
            if Instant::now() >= *refresh_after {
                // A failure to start the refresh leaves the old answer in use; the next call
                // tries again.
                let _ = self.start_lookup(&mut st);
            }
            return Ok(addrs);
        }
        // No answer yet, or the last lookup failed: look up (again) and wait for it.
        let seen = st.lookups_done;
        self.start_lookup(&mut st)?;
        loop {
            if st.lookups_done != seen {
                let answer = st.answer.as_ref().map(|a| a.addrs.clone());
                return match answer {
                    Some(Ok(addrs)) => Ok(preferred_first(&addrs, st.preferred)),
                    Some(Err(why)) => Err(self.error(ConnErrorKind::Connect, why)),
                    None => unreachable!("a finished lookup always leaves an answer"),
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.error(
                    ConnErrorKind::Timeout,
                    "the DNS lookup did not answer in time (it goes on in the background)".into(),
                ));
            }
            st = self
                .shared
                .answered
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// No address of the current answer would connect: refresh it on the next call (which
    /// still gets the old answer, so a host that is merely down costs no extra wait).
    pub fn forget(&self) {
        if let Some(answer) = self.lock().answer.as_mut() {
            answer.refresh_after = Instant::now();
        }
    }

    /// `addr` accepted a connection: try it first from now on.
    pub fn prefer(&self, addr: SocketAddr) {
        if self.literal.is_none() {
            self.lock().preferred = Some(addr);
        }
    }

    /// Held by the thread about to fork (see `crate::fork`).
    pub fn hold_for_fork(&self) -> MutexGuard<'_, impl Sized> {
        self.lock()
    }

    /// In a forked child: a lookup in flight ran on a parent thread, which does not exist
    /// here and will never answer; the next call starts one of its own.
    pub fn after_fork(&self) {
        self.lock().in_flight = false;
    }

    /// Starts a lookup thread unless one is running.
    fn start_lookup(&self, st: &mut State) -> Result<(), ConnError> {
        if st.in_flight {
            return Ok(());
        }
        let (host, port) = (self.host.clone(), self.port);
        let (lookup, shared, fresh_for) =
            (self.lookup.clone(), self.shared.clone(), self.fresh_for);
        // The thread owns everything it touches (the Arc'd state), so a resolver or cache
        // dropped while getaddrinfo still waits leaves nothing dangling.
        let started = std::thread::Builder::new()
            .name("smartcache-dns".into())
            .spawn(move || {
                let addrs = match lookup(&host, port) {
                    Ok(addrs) if addrs.is_empty() => Err("no addresses found".to_owned()),
                    Ok(addrs) => Ok(addrs),
                    Err(e) => Err(e.to_string()),
                };
                let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                // A failed refresh keeps the last good answer: the host's addresses rarely
                // vanish, resolvers fail transiently. Only the first answer may be an error.
                if addrs.is_ok() || !matches!(st.answer, Some(Answer { addrs: Ok(_), .. })) {
                    st.answer = Some(Answer {
                        addrs,
                        refresh_after: Instant::now() + fresh_for,
                    });
                }
                st.in_flight = false;
                st.lookups_done += 1;
                drop(st);
                shared.answered.notify_all();
            });
        match started {
            Ok(_) => {
                st.in_flight = true;
                Ok(())
            }
            Err(e) => Err(self.error(
                ConnErrorKind::Connect,
                format!("cannot start a thread for the DNS lookup: {e}"),
            )),
        }
    }

    fn error(&self, kind: ConnErrorKind, why: String) -> ConnError {
        ConnError {
            kind,
            message: format!("cannot resolve {}: {why}", self.host),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update under this lock is a plain assignment, so a poisoned lock still holds
        // a consistent state.
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `addrs` in their order, except that `preferred` (when among them) comes first.
fn preferred_first(addrs: &[SocketAddr], preferred: Option<SocketAddr>) -> Vec<SocketAddr> {
    let mut out = Vec::with_capacity(addrs.len());
    out.extend(preferred.filter(|p| addrs.contains(p)));
    out.extend(addrs.iter().filter(|&&a| Some(a) != preferred));
    out
}

fn system_lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    (host, port).to_socket_addrs().map(Iterator::collect)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    const LOOPBACK: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 6379);

    /// A lookup that counts its calls and answers each one only when the test says so.
    fn gated() -> (
        Lookup,
        Arc<AtomicUsize>,
        mpsc::Sender<io::Result<Vec<SocketAddr>>>,
    ) {
        let calls = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel::<io::Result<Vec<SocketAddr>>>();
        let rx = Mutex::new(rx);
        let counted = calls.clone();
        let lookup: Lookup = Arc::new(move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            rx.lock().unwrap().recv().unwrap()
        });
        (lookup, calls, tx)
    }

    /// A deadline no busy machine should reach: the resolver thread answers long before.
    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let give_up = soon();
        while !done() {
            assert!(Instant::now() < give_up, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn ip_literals_are_not_looked_up() {
        let (lookup, calls, _tx) = gated();
        for (host, want) in [("127.0.0.1", "127.0.0.1:7000"), ("::1", "[::1]:7000")] {
            let r = Resolver::with_lookup(host, 7000, FRESH_FOR, lookup.clone());
            let got = r.resolve(Instant::now()).unwrap();
            assert_eq!(got, vec![want.parse::<SocketAddr>().unwrap()]);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn an_unanswered_lookup_ends_at_the_deadline_and_its_answer_serves_later_calls() {
        let (lookup, calls, tx) = gated();
        let r = Resolver::with_lookup("cache.example", 6379, FRESH_FOR, lookup);
        let t = Instant::now();
        let err = r.resolve(t + Duration::from_millis(50)).unwrap_err();
        assert_eq!(err.kind, ConnErrorKind::Timeout, "{}", err.message);
        assert!(err.message.contains("cache.example"), "{}", err.message);
        // Bounded by the deadline (generous slack for a loaded machine), not by the lookup,
        // which has not answered at all.
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "waited {:?}",
            t.elapsed()
        );
        // A second caller joins the lookup in flight instead of starting another.
        let err = r
            .resolve(Instant::now() + Duration::from_millis(10))
            .unwrap_err();
        assert_eq!(err.kind, ConnErrorKind::Timeout);
        wait_until("the lookup to start", || calls.load(Ordering::SeqCst) == 1);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one lookup in flight at a time"
        );

        tx.send(Ok(vec![LOOPBACK])).unwrap();
        wait_until("the answer", || !r.lock().in_flight);
        assert_eq!(r.resolve(Instant::now()).unwrap(), vec![LOOPBACK]);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a fresh answer is reused");
    }

    #[test]
    fn a_waiting_caller_gets_the_answer_as_soon_as_it_arrives() {
        let (lookup, _calls, tx) = gated();
        let r = Arc::new(Resolver::with_lookup(
            "cache.example",
            6379,
            FRESH_FOR,
            lookup,
        ));
        let waiter = {
            let r = r.clone();
            std::thread::spawn(move || r.resolve(soon()))
        };
        wait_until("the lookup to start", || r.lock().in_flight);
        tx.send(Ok(vec![LOOPBACK])).unwrap();
        assert_eq!(waiter.join().unwrap().unwrap(), vec![LOOPBACK]);
    }

    #[test]
    fn a_failed_lookup_is_reported_and_retried_by_the_next_call() {
        let (lookup, calls, tx) = gated();
        let r = Resolver::with_lookup("no-such-host.invalid", 6379, FRESH_FOR, lookup);
        tx.send(Err(io::Error::other("Name or service not known")))
            .unwrap();
        let err = r.resolve(soon()).unwrap_err();
        assert_eq!(err.kind, ConnErrorKind::Connect);
        assert!(
            err.message.contains("no-such-host.invalid")
                && err.message.contains("Name or service not known"),
            "{}",
            err.message
        );
        tx.send(Ok(vec![])).unwrap();
        let err = r.resolve(soon()).unwrap_err();
        assert!(err.message.contains("no addresses"), "{}", err.message);
        tx.send(Ok(vec![LOOPBACK])).unwrap();
        assert_eq!(r.resolve(soon()).unwrap(), vec![LOOPBACK]);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_stale_answer_is_served_while_one_background_lookup_refreshes_it() {
        let (lookup, calls, tx) = gated();
        let r = Resolver::with_lookup("cache.example", 6379, FRESH_FOR, lookup);
        tx.send(Ok(vec![LOOPBACK])).unwrap();
        r.resolve(soon()).unwrap();

        r.forget();
        let moved: SocketAddr = "10.0.0.7:6379".parse().unwrap();
        // Served at once (deadline already passed) although the refresh has not answered.
        for _ in 0..3 {
            assert_eq!(r.resolve(Instant::now()).unwrap(), vec![LOOPBACK]);
        }
        wait_until("the refresh to start", || calls.load(Ordering::SeqCst) == 2);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "one refresh, however many callers"
        );
        tx.send(Ok(vec![moved])).unwrap();
        wait_until("the refresh", || !r.lock().in_flight);
        assert_eq!(r.resolve(Instant::now()).unwrap(), vec![moved]);

        // A refresh that fails keeps the last good answer.
        r.forget();
        assert_eq!(r.resolve(Instant::now()).unwrap(), vec![moved]);
        tx.send(Err(io::Error::other(
            "Temporary failure in name resolution",
        )))
        .unwrap();
        wait_until("the failed refresh", || !r.lock().in_flight);
        assert_eq!(r.resolve(Instant::now()).unwrap(), vec![moved]);
    }

    #[test]
    fn the_address_that_last_answered_is_tried_first_while_it_is_listed() {
        let (lookup, _calls, tx) = gated();
        let r = Resolver::with_lookup("cache.example", 6379, FRESH_FOR, lookup);
        let a: SocketAddr = "10.0.0.1:6379".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:6379".parse().unwrap();
        let c: SocketAddr = "10.0.0.3:6379".parse().unwrap();
        tx.send(Ok(vec![a, b, c])).unwrap();
        assert_eq!(r.resolve(soon()).unwrap(), vec![a, b, c]);
        r.prefer(c);
        assert_eq!(r.resolve(soon()).unwrap(), vec![c, a, b]);
        // A new answer without it: the lookup's own order again.
        r.forget();
        r.resolve(soon()).unwrap();
        tx.send(Ok(vec![b, a])).unwrap();
        wait_until("the refresh", || !r.lock().in_flight);
        assert_eq!(r.resolve(soon()).unwrap(), vec![b, a]);
    }

    #[test]
    fn answers_expire_after_fresh_for() {
        let (lookup, calls, tx) = gated();
        let r = Resolver::with_lookup("cache.example", 6379, Duration::ZERO, lookup);
        tx.send(Ok(vec![LOOPBACK])).unwrap();
        r.resolve(soon()).unwrap();
        wait_until("the first lookup to finish", || !r.lock().in_flight);
        r.resolve(Instant::now()).unwrap();
        wait_until("an expired answer to start a refresh", || {
            calls.load(Ordering::SeqCst) == 2
        });
        tx.send(Ok(vec![LOOPBACK])).unwrap();
    }

    #[test]
    fn the_system_lookup_resolves_localhost() {
        let r = Resolver::new("localhost", 6379);
        let addrs = r.resolve(soon()).unwrap();
        assert!(
            addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 6379),
            "{addrs:?}"
        );
    }
}
