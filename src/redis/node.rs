//! One Redis server as the tier uses it: a connection pool, a circuit breaker and the probe
//! that closes it. The single-node tier has one; a cluster has one per node, so a node that is
//! down trips only its own breaker.

use super::breaker::{Breaker, ProbeThread, FAILURE_THRESHOLD, PROBE_INTERVAL};
use super::conn::Endpoint;
use super::pool::Pool;
use super::sentinel;
use super::tls::Tls;
use super::url::RedisUrl;
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub struct Node {
    /// The server's URL with the password hidden, for messages.
    pub shown: String,
    /// Where the server listens.
    pub endpoint: Endpoint,
    pub pool: Pool,
    pub breaker: Arc<Breaker>,
    /// Why the latest probe failed (None once one succeeded).
    probe_error: Mutex<Option<String>>,
}

impl Node {
    /// `tls`: the client settings when the URL asks for TLS (`rediss://`, or a node of a
    /// `rediss+cluster://` cluster).
    pub fn new(
        url: RedisUrl,
        tls: Option<Tls>,
        timeout: Duration,
        pool_size: usize,
        max_value_size: usize,
    ) -> Node {
        let mut pool =
            Pool::new(url.clone(), timeout, pool_size).with_max_value_size(max_value_size);
        if let Some(tls) = tls {
            pool = pool.with_tls(tls);
        }
        Node {
            shown: url.to_string(),
            endpoint: url.endpoint,
            pool,
            breaker: Arc::new(Breaker::new(FAILURE_THRESHOLD)),
            probe_error: Mutex::new(None),
        }
    }

    /// Dials one connection so the first call does not pay for it. On failure the breaker is
    /// opened (the node starts down) and the reason returned for counting.
    pub fn warm(&self, timeout: Duration) -> std::result::Result<(), String> {
        match self.pool.get(Instant::now() + timeout) {
            Ok(conn) => {
                drop(conn);
                Ok(())
            }
            Err(e) => {
                self.breaker.trip();
                Err(Error::backend(e.message).to_string())
            }
        }
    }

    /// Starts this node's probe thread: while the breaker is open it PINGs a fresh
    /// connection, and the first answer drops the stale pooled ones and closes the breaker.
    /// Behind Sentinel, while the breaker is closed it also asks where the master is now.
    pub fn spawn_probe(self: &Arc<Self>) -> Result<ProbeThread> {
        let probing = Arc::clone(self);
        let closing = Arc::clone(self);
        self.breaker
            .spawn_probe_watching(
                PROBE_INTERVAL,
                move || match probing.pool.probe() {
                    Ok(()) => true,
                    Err(e) => {
                        // Kept apart from `errors` so a long outage does not inflate the
                        // count by one per probe; health shows why the node is still down.
                        *lock(&probing.probe_error) = Some(Error::backend(e.message).to_string());
                        false
                    }
                },
                // Sockets opened before the outage point at a dead or restarted server.
                move || {
                    closing.pool.reset();
                    *lock(&closing.probe_error) = None;
                },
                self.pool.is_sentinel().then(|| {
                    let watching = Arc::clone(self);
                    let check: Box<dyn FnMut() + Send> =
                        Box::new(move || watching.pool.check_master());
                    (sentinel::WATCH_INTERVAL, check)
                }),
            )
            .map_err(|e| Error::Internal(format!("cannot start the redis probe thread: {e}")))
    }

    /// Host and port of a TCP node (None for a unix socket).
    pub fn host_port(&self) -> Option<(String, u16)> {
        match &self.endpoint {
            Endpoint::Tcp { host, port } => Some((host.clone(), *port)),
            Endpoint::Unix { .. } => None,
        }
    }

    pub fn probe_error(&self) -> Option<String> {
        lock(&self.probe_error).clone()
    }

    /// Takes this node's locks for `crate::fork`.
    pub fn hold_for_fork<'a>(&'a self, held: &mut Vec<Box<dyn crate::fork::Held + 'a>>) {
        self.pool.hold_for_fork(held);
        held.push(Box::new(self.breaker.hold_for_fork()));
        held.push(Box::new(lock(&self.probe_error)));
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only whole-value stores happen under these locks: poisoning cannot leave them torn.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
