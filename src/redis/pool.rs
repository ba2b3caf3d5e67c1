//! A bounded pool of logged-in connections.
//!
//! At most `size` connections exist at once. A caller takes an idle one, or dials a new one
//! while under the bound, or waits for one to come back — never past its deadline. A connection
//! that failed is dropped on return and replaced lazily by the next dial. [`Pool::reset`] drops
//! every idle connection and outdates those in use (a generation number), so after Redis
//! restarts nobody reuses a socket to the old process. Host names are looked up by a
//! [`Resolver`], never by hiredis, so DNS too is bounded by the caller's deadline.

use super::conn::{Conn, ConnError, ConnErrorKind, Endpoint, Reply};
use super::resolve::Resolver;
use super::sentinel::{self, Locator};
use super::tls::{Tls, TlsTarget};
use super::url::RedisUrl;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub struct Pool {
    url: RedisUrl,
    /// For a TCP endpoint.
    resolver: Option<Resolver>,
    /// For a `redis+sentinel://` URL: where the master is (instead of `resolver`).
    sentinel: Option<Locator>,
    /// For a `rediss://` URL (see `with_tls`).
    tls: Option<Tls>,
    timeout: Duration,
    size: usize,
    /// Largest value a reply may carry (see `Conn::set_max_value_size`).
    max_value_size: Option<usize>,
    state: Mutex<State>,
    returned: Condvar,
    generation: AtomicU64,
}

struct State {
    idle: Vec<Conn>,
    /// Connections in existence: idle, lent out, or being dialled.
    open: usize,
}

/// A connection lent by the pool; goes back (or is dropped if broken) when this is dropped.
pub struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    generation: u64,
    /// Came from the idle list (it may have gone stale since its last use).
    pub reused: bool,
}

impl Pool {
    pub fn new(url: RedisUrl, timeout: Duration, size: usize) -> Pool {
        let sentinel = url
            .sentinel
            .clone()
            .map(|spec| Locator::new(spec, None, timeout));
        let resolver = match &url.endpoint {
            _ if sentinel.is_some() => None,
            Endpoint::Tcp { host, port } => Some(Resolver::new(host, *port)),
            Endpoint::Unix { .. } => None,
        };
        Pool {
            url,
            resolver,
            sentinel,
            tls: None,
            timeout,
            size: size.max(1),
            max_value_size: None,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
            generation: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave State inconsistent (every update is a
        // single push/pop/counter step), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lends a connection, dialling one if none is idle, waiting at most until `deadline`.
    pub fn get(&self, deadline: Instant) -> Result<Pooled<'_>, ConnError> {
        let generation = self.generation.load(Ordering::Acquire);
        let mut st = self.lock();
        loop {
            if let Some(conn) = st.idle.pop() {
                return Ok(Pooled {
                    pool: self,
                    conn: Some(conn),
                    generation,
                    reused: true,
                });
            }
            if st.open < self.size {
                st.open += 1;
                drop(st);
                return match self.dial(deadline) {
                    Ok(conn) => Ok(Pooled {
                        pool: self,
                        conn: Some(conn),
                        generation,
                        reused: false,
                    }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.returned.notify_one();
                        Err(e)
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ConnError {
                    kind: ConnErrorKind::PoolBusy,
                    message: format!(
                        "all {} connections to {} busy for {} ms",
                        self.size,
                        self.url.endpoint,
                        self.timeout.as_millis()
                    ),
                });
            }
            st = self
                .returned
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Opens a connection outside the pool, logs in and PINGs: the breaker's health check.
    pub fn probe(&self) -> Result<(), ConnError> {
        let deadline = Instant::now() + self.timeout;
        let mut conn = self.dial(deadline)?;
        match conn.command(&[b"PING"], deadline)? {
            Reply::Status(s) if s == b"PONG" => Ok(()),
            other => Err(ConnError {
                kind: ConnErrorKind::Protocol,
                message: format!("{} answered PING with {other:?}", conn.peer()),
            }),
        }
    }

    /// Takes the pool's and the resolver's locks for `crate::fork`.
    pub fn hold_for_fork<'a>(&'a self, held: &mut Vec<Box<dyn crate::fork::Held + 'a>>) {
        held.push(Box::new(self.lock()));
        if let Some(r) = &self.resolver {
            held.push(Box::new(r.hold_for_fork()));
        }
    }

    /// In a forked child: the connections are the parent's sockets. The idle ones are closed
    /// (this process's copy of the descriptor only: nothing is sent, the parent's exchanges
    /// go on), the lent ones belonged to parent threads that do not exist here and are
    /// outdated, so the child dials its own. A DNS lookup in flight was the parent's too.
    pub fn after_fork(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let inherited = {
            let mut st = self.lock();
            st.open = 0;
            std::mem::take(&mut st.idle)
        };
        drop(inherited);
        if let Some(r) = &self.resolver {
            r.after_fork();
        }
    }

    /// Connections speak TLS with these settings (and so do the Sentinels, if any).
    pub fn with_tls(mut self, tls: Tls) -> Pool {
        if let Some(spec) = self.url.sentinel.clone() {
            self.sentinel = Some(Locator::new(spec, Some(tls.clone()), self.timeout));
        }
        self.tls = Some(tls);
        self
    }

    /// True for a `redis+sentinel://` pool.
    pub fn is_sentinel(&self) -> bool {
        self.sentinel.is_some()
    }

    /// With Sentinel: asks the Sentinels where the master is and, if it moved (a failover
    /// the pooled connections have not noticed: the old master keeps answering until the
    /// Sentinels reconfigure it), drops every connection to the old one. A failed ask
    /// changes nothing.
    pub fn check_master(&self) {
        let Some(loc) = &self.sentinel else { return };
        if loc.refresh() {
            self.reset_connections();
        }
    }

    /// A reply said the server is no longer the master (READONLY): with Sentinel, the next
    /// dial asks where the master is now; every connection to the old one is dropped.
    pub fn master_moved(&self) {
        self.reset();
    }

    /// Drops idle connections and outdates lent ones; with Sentinel, forgets the master's
    /// address (an outage may have been a failover).
    pub fn reset(&self) {
        if let Some(loc) = &self.sentinel {
            loc.forget();
        }
        self.reset_connections();
    }

    /// Drops idle connections and outdates lent ones.
    fn reset_connections(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let stale = {
            let mut st = self.lock();
            let stale = std::mem::take(&mut st.idle);
            st.open -= stale.len();
            stale
        };
        // Closing sockets outside the lock.
        drop(stale);
        self.returned.notify_all();
    }

    /// Replies on this pool's connections may carry values of up to `n` bytes (plus their
    /// frame); anything larger is a protocol error (see `Conn`).
    pub fn with_max_value_size(mut self, n: usize) -> Pool {
        self.max_value_size = Some(n);
        self
    }

    /// Connections currently open (idle + lent).
    pub fn open_connections(&self) -> usize {
        self.lock().open
    }

    /// A logged-in connection of its own for a caller that keeps it (the invalidation
    /// listener's): not counted against the pool's size and never returned to it.
    pub fn dial_dedicated(&self, deadline: Instant) -> Result<Conn, ConnError> {
        self.dial(deadline)
    }

    /// Connects, then AUTH and SELECT as the URL says; with Sentinel, to the master it names,
    /// asking again once if the address it had cached is not the master any more.
    fn dial(&self, deadline: Instant) -> Result<Conn, ConnError> {
        let Some(loc) = &self.sentinel else {
            return self.dial_at(self.connect(deadline)?, deadline);
        };
        let (addr, fresh) = loc.master(deadline)?;
        match self.dial_master(loc, addr, deadline) {
            Err(_) if !fresh => {
                loc.forget();
                let (addr, _) = loc.master(deadline)?;
                self.dial_master(loc, addr, deadline)
            }
            Err(e) => {
                loc.forget();
                Err(e)
            }
            ok => ok,
        }
    }

    /// Dials the master at `addr` (as a Sentinel named it) and checks its ROLE.
    fn dial_master(
        &self,
        loc: &Locator,
        addr: std::net::SocketAddr,
        deadline: Instant,
    ) -> Result<Conn, ConnError> {
        let ep = Endpoint::Tcp {
            host: addr.ip().to_string(),
            port: addr.port(),
        };
        let peer = format!("master '{}' at {ep}", loc.master_name());
        let target = loc.target(&addr.ip().to_string())?;
        let conn = Conn::connect_tls(&ep, peer, self.timeout, deadline, target.as_ref())?;
        let mut conn = self.dial_at(conn, deadline)?;
        conn.expect_nesting(2);
        let role = conn.command(&[b"ROLE"], deadline)?;
        if !sentinel::is_master(&role) {
            return Err(ConnError {
                kind: ConnErrorKind::Connect,
                message: format!(
                    "{} is not a master (ROLE answered {role:?}): a failover is under way",
                    conn.peer()
                ),
            });
        }
        Ok(conn)
    }

    /// Logs in on a fresh connection: AUTH and SELECT as the URL says.
    fn dial_at(&self, mut conn: Conn, deadline: Instant) -> Result<Conn, ConnError> {
        if let Some(n) = self.max_value_size {
            conn.set_max_value_size(n);
        }
        if let Some(password) = &self.url.password {
            let reply = match &self.url.user {
                Some(user) => {
                    conn.command(&[b"AUTH", user.as_bytes(), password.as_bytes()], deadline)?
                }
                None => conn.command(&[b"AUTH", password.as_bytes()], deadline)?,
            };
            expect_ok(&conn, "AUTH", reply)?;
        }
        if self.url.db != 0 {
            let db = self.url.db.to_string();
            let reply = conn.command(&[b"SELECT", db.as_bytes()], deadline)?;
            expect_ok(&conn, "SELECT", reply)?;
        }
        Ok(conn)
    }

    /// Opens a socket: to the unix path, or to the host's addresses in turn until one answers.
    /// Each address gets an equal share of the time left, so one that never answers (a dead
    /// node of a round robin, an unrouted IPv6 address) cannot use up every call's budget
    /// before the next address is tried; the address that last answered goes first.
    fn connect(&self, deadline: Instant) -> Result<Conn, ConnError> {
        let name = self.url.endpoint.to_string();
        // Verified against the URL's host, whatever address it resolves to.
        let target = match &self.url.endpoint {
            Endpoint::Tcp { host, .. } => self.tls_target(host)?,
            Endpoint::Unix { .. } => None,
        };
        let Some(resolver) = &self.resolver else {
            return Conn::connect_tls(&self.url.endpoint, name, self.timeout, deadline, None);
        };
        let addrs = resolver.resolve(deadline)?;
        let mut failure = None;
        for (i, &addr) in addrs.iter().enumerate() {
            let now = Instant::now();
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() && failure.is_some() {
                break;
            }
            // Never 0: addrs.len() > i.
            let share = left / u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
            let ep = Endpoint::Tcp {
                host: addr.ip().to_string(),
                port: addr.port(),
            };
            let numeric = ep.to_string();
            let peer = if numeric == name {
                name.clone()
            } else {
                format!("{name} ({numeric})")
            };
            match Conn::connect_tls(&ep, peer, self.timeout, now + share, target.as_ref()) {
                Ok(conn) => {
                    resolver.prefer(addr);
                    return Ok(conn);
                }
                Err(e) => failure = Some(e),
            }
        }
        // No address answered: the name may point elsewhere by now.
        resolver.forget();
        Err(failure.expect("a resolver answers with at least one address"))
    }
}

impl Pool {
    fn tls_target(&self, host: &str) -> Result<Option<TlsTarget>, ConnError> {
        self.tls
            .as_ref()
            .map(|tls| {
                tls.target(host).map_err(|why| ConnError {
                    kind: ConnErrorKind::Connect,
                    message: format!("cannot connect to {}: {why}", self.url.endpoint),
                })
            })
            .transpose()
    }
}

fn expect_ok(conn: &Conn, what: &str, reply: Reply) -> Result<(), ConnError> {
    match reply {
        Reply::Status(s) if s == b"OK" => Ok(()),
        Reply::Error(e) => Err(ConnError {
            kind: ConnErrorKind::Connect,
            message: format!("{what} on {} refused: {e}", conn.peer()),
        }),
        other => Err(ConnError {
            kind: ConnErrorKind::Protocol,
            message: format!("{what} on {} answered {other:?}", conn.peer()),
        }),
    }
}

impl Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("present until drop")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("present until drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        let current = self.pool.generation.load(Ordering::Acquire) == self.generation;
        let mut st = self.pool.lock();
        if current && !conn.is_broken() {
            st.idle.push(conn);
        } else {
            st.open -= 1;
            drop(st);
            drop(conn);
        }
        self.pool.returned.notify_one();
    }
}
