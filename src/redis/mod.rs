//! L2: the Redis tier over hiredis (see docs/architecture.md and docs/guide.md, "L2 — Redis").
//!
//! [`RedisTier`] is `Send + Sync`; every call takes a pooled connection for one exchange.
//!
//! **Keys** are stored as `<prefix><key>`, binary-safe. When `redis_key_prefix` is unset the
//! prefix is derived from the cache's identity, its `disk_path` (see [`prefix`]):
//! `"sc:" + 32 hex digits of SHA-256(canonical disk_path) + ":"`, e.g.
//! `sc:0f6c1a...e2:`. The disk_path is used even when the disk tier is off.
//! Two workers of one app (same config) therefore share their Redis entries, as they share
//! their disk file, while two differently configured caches do not collide. Set
//! `redis_key_prefix` to share across hosts whose disk paths differ.
//!
//! **Values** are framed (see [`frame`]): magic, version, flags, absolute expiry, a MAC when
//! `value_secret` is set, payload. A value under our prefix that is not a valid frame reads as
//! a miss and counts as an error; one whose MAC is wrong or missing while a secret is set is a
//! miss counted as `tampered`; one whose payload is longer than `max_value_size` is a miss
//! counted as an error.
//!
//! **Failures** (see [`breaker`]): every call ends within `redis_timeout_ms` (plus ~2 ms
//! slack), covering pool wait, connect, login, write and read together. Waiting for a free
//! pooled connection past the deadline counts as an error but not toward the breaker. A transport failure
//! returns `Err(Error::Backend)` and is counted in `errors` with its message kept as
//! `last_error`; the caller (the coordinator) treats it as a miss or skipped write. After three
//! in a row the breaker opens: calls then return `Err(Error::Backend("… circuit open …"))`
//! immediately, counted in `skipped` (not `errors`), until the probe thread sees Redis answer
//! PING. Redis being down at `open` is not an error: the tier starts with the breaker open.
//!
//! Host names are looked up off the calling thread (see [`resolve`]): a DNS server that does
//! not answer delays a call no more than Redis not answering does.
//!
//! **clear** deletes only keys under the prefix, with `SCAN MATCH <escaped prefix>* COUNT n`
//! and `UNLINK` per batch; never FLUSHDB. n is 500, or fewer when max_value_size is small: a
//! batch's reply is held to one value's budget (about max_value_size + 1 MiB), and twice n of
//! the longest keys must fit in it; a batch past the budget fails the clear. Each SCAN/UNLINK has its own timeout, so clearing a
//! huge keyspace takes as long as it needs but never hangs on a dead server.

pub mod breaker;
pub mod call_timeout;
pub mod cluster;
pub mod conn;
pub mod frame;
pub mod invalidation;
pub mod node;
pub mod pool;
pub mod prefix;
pub mod resolve;
pub mod sentinel;
pub mod tls;
pub mod transport;
pub mod url;
pub mod wire;

use crate::clock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::sign::Signer;
use crate::tier::{shown_key, ttl_from_secs, Hit, TierCounters, TierSnapshot};
use breaker::{BreakerState, ProbeThread};
use cluster::{slots, Cluster, ClusterUrl, Redirect, RefreshThread};
use conn::{Conn, ConnError, ConnErrorKind, Reply};
use frame::{Decoded, Foreign};
use node::Node;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
pub use url::RedisUrl;
use wire::Wire;

/// One entry of [`RedisTier::set_many`]: key, value, flags, ttl (None = no expiry).
pub type SetItem<'a> = (&'a [u8], &'a [u8], u8, Option<Duration>);

/// A snapshot of the tier for stats and health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStats {
    /// hits, misses, sets, deletes, errors, last_error.
    pub tier: TierSnapshot,
    /// Calls not sent because the breaker was open.
    pub skipped: u64,
    /// Breaker closed: calls go to Redis.
    pub up: bool,
    pub breaker: BreakerState,
    pub consecutive_failures: u32,
    /// How many times the breaker has opened since `open`.
    pub times_opened: u64,
    pub open_connections: usize,
    /// `redis_url` with the password replaced by `***`.
    pub url: String,
    pub key_prefix: String,
    /// Why the breaker's latest probe failed, while it is open.
    pub last_probe_error: Option<String>,
}

/// The L2 tier.
pub struct RedisTier {
    inner: Arc<Inner>,
    // Declared after `inner` only for readability: Drop below stops the threads explicitly.
    // Behind mutexes only so a forked child can replace them (`restart_probe`).
    probe: Mutex<Option<ProbeThread>>,
    /// A cluster's slot-table refresh thread.
    refresher: Mutex<Option<RefreshThread>>,
}

/// What the tier talks to.
enum Target {
    /// One server (`redis://`, `unix://`).
    Single(Arc<Node>),
    /// A Redis Cluster (`redis+cluster://`): a node per slot.
    Cluster(Arc<Cluster>),
}

struct Inner {
    target: Target,
    /// The last call got an error reply (NOAUTH, NOPERM, OOM...). Such replies do not trip the
    /// breaker (the server answers, fast), but a Redis refusing every command is not "up".
    refusing: AtomicBool,
    counters: TierCounters,
    skipped: AtomicU64,
    prefix: Vec<u8>,
    timeout: Duration,
    url_shown: String,
    default_ttl: Option<Duration>,
    /// Signs what is written and checks what is read (None: `value_secret` unset).
    signer: Option<Signer>,
    /// A stored payload longer than this is refused as a miss (another writer's, or forged).
    max_value_size: usize,
}

/// Most redirections one call follows (a slot being migrated takes two: MOVED, then ASK).
const MAX_REDIRECTS: usize = 5;

/// How one exchange failed.
enum CallError {
    /// Transport failure: counts toward the breaker.
    Conn(ConnError),
    /// Redis answered with an error reply: it is alive; counted, breaker untouched.
    Reply(String),
    /// A reply of the wrong shape: the server does not speak Redis as we expect. Treated like a
    /// transport failure, and the connection is dropped.
    Unexpected(String),
    /// A cluster node answered MOVED or ASK: the key is served elsewhere.
    Redirect(Redirect),
}

impl From<ConnError> for CallError {
    fn from(e: ConnError) -> Self {
        CallError::Conn(e)
    }
}

pub use prefix::derived_prefix;

/// Checks `redis_url` as `RedisTier::open` will parse it: a `redis+cluster://` URL, else a
/// single server's. Err is a config error naming redis_url.
pub fn check_url(url: &str) -> Result<()> {
    if ClusterUrl::is_cluster(url) {
        ClusterUrl::parse(url).map(drop)
    } else {
        RedisUrl::parse(url).map(drop)
    }
}

/// Most keys asked for per SCAN of `clear` (fewer when max_value_size is small and the
/// longest keys of a batch would not fit its reply budget, see `Conn::expect_keys`).
const SCAN_COUNT: usize = 500;

impl RedisTier {
    /// Bad URL -> `Err(Error::Config)` naming redis_url. Redis down at open is not an error:
    /// the tier starts down (breaker open, error counted) and the probe brings it up later.
    pub fn open(cfg: &Config) -> Result<RedisTier> {
        let prefix = cfg
            .redis_key_prefix
            .clone()
            .unwrap_or_else(|| derived_prefix(&cfg.disk_path));
        let timeout = Duration::from_millis(cfg.redis_timeout_ms.max(1));
        let (pool_size, max_value_size) = (cfg.redis_pool_size, cfg.max_value_size);
        let target = if ClusterUrl::is_cluster(&cfg.redis_url) {
            let url = ClusterUrl::parse(&cfg.redis_url)?;
            slots::check_prefix(prefix.as_bytes()).map_err(|why| {
                Error::config(format!(
                    "bad value '{}' for option 'redis_key_prefix': {why}",
                    crate::config::shortened(&prefix)
                ))
            })?;
            let tls = open_tls(url.tls, cfg)?;
            Target::Cluster(Arc::new(Cluster::new(
                url,
                tls,
                timeout,
                pool_size,
                max_value_size,
            )))
        } else {
            let url = RedisUrl::parse(&cfg.redis_url)?;
            let tls = open_tls(url.tls, cfg)?;
            Target::Single(Arc::new(Node::new(
                url,
                tls,
                timeout,
                pool_size,
                max_value_size,
            )))
        };
        let url_shown = match &target {
            Target::Single(node) => node.shown.clone(),
            Target::Cluster(c) => c.shown.clone(),
        };
        let inner = Arc::new(Inner {
            target,
            refusing: AtomicBool::new(false),
            counters: TierCounters::default(),
            skipped: AtomicU64::new(0),
            prefix: prefix.into_bytes(),
            timeout,
            url_shown,
            default_ttl: ttl_from_secs(cfg.redis_ttl),
            signer: Signer::from_config(cfg),
            max_value_size,
        });

        // Warm a connection (a cluster: read its slot table) so the first call does not pay
        // for it; failing here only means the tier starts down.
        let (probe, refresher) = match &inner.target {
            Target::Single(node) => {
                if let Err(e) = node.warm(timeout) {
                    inner.counters.error(&e);
                }
                (Some(node.spawn_probe()?), None)
            }
            Target::Cluster(c) => {
                if let Err(e) = c.refresh(Instant::now() + 2 * timeout) {
                    inner.counters.error(&Error::backend(e).to_string());
                }
                let refresher = c.spawn_refresher().map_err(|e| {
                    Error::Internal(format!("cannot start the redis slot refresh thread: {e}"))
                })?;
                (None, Some(refresher))
            }
        };
        Ok(RedisTier {
            inner,
            probe: Mutex::new(probe),
            refresher: Mutex::new(refresher),
        })
    }

    /// Takes this tier's locks for `crate::fork`.
    pub fn hold_for_fork<'a>(&'a self, held: &mut Vec<Box<dyn crate::fork::Held + 'a>>) {
        let i = &*self.inner;
        match &i.target {
            Target::Single(node) => node.hold_for_fork(held),
            Target::Cluster(c) => c.hold_for_fork(held),
        }
        held.push(Box::new(lock(&self.probe)));
        held.push(Box::new(lock(&self.refresher)));
        held.push(Box::new(i.counters.hold_for_fork()));
    }

    /// In a forked child, single threaded: the parent's sockets are let go of (see
    /// `Pool::after_fork`). The probe threads are restarted later by `restart_probe`: threads
    /// must not be started inside the fork handler.
    pub fn after_fork(&self) {
        match &self.inner.target {
            Target::Single(node) => node.pool.after_fork(),
            Target::Cluster(c) => c.after_fork(),
        }
    }

    /// In a forked child: lets go of the parent's probe (and refresh) threads, which do not
    /// exist here.
    pub fn abandon_probe(&self) {
        if let Some(old) = lock(&self.probe).take() {
            old.abandon();
        }
        if let Some(old) = lock(&self.refresher).take() {
            old.abandon();
        }
        if let Target::Cluster(c) = &self.inner.target {
            c.abandon_probes();
        }
    }

    /// In a forked child, after `abandon_probe`: threads of this process's own.
    pub fn restart_probe(&self) -> Result<()> {
        match &self.inner.target {
            Target::Single(node) => *lock(&self.probe) = Some(node.spawn_probe()?),
            Target::Cluster(c) => {
                c.restart_probes();
                let refresher = c.spawn_refresher().map_err(|e| {
                    Error::Internal(format!("cannot start the redis slot refresh thread: {e}"))
                })?;
                *lock(&self.refresher) = Some(refresher);
            }
        }
        Ok(())
    }

    /// The TTL the coordinator uses when the caller gives none (`redis_ttl`; None = no expiry).
    pub fn default_ttl(&self) -> Option<Duration> {
        self.inner.default_ttl
    }

    /// The key prefix in use.
    pub fn key_prefix(&self) -> &[u8] {
        &self.inner.prefix
    }

    /// The per-call timeout (`redis_timeout_ms`).
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// A logged-in connection outside the pool, for the invalidation listener. A cluster has
    /// none to give: tracking covers only the node it is turned on at, so the configuration
    /// refuses `redis_invalidation` with a cluster URL before a tier is opened.
    pub fn dial_dedicated(&self, deadline: Instant) -> std::result::Result<Conn, ConnError> {
        match &self.inner.target {
            Target::Single(node) => node.pool.dial_dedicated(deadline),
            Target::Cluster(_) => Err(ConnError {
                kind: ConnErrorKind::Connect,
                message: "redis_invalidation is not available on a Redis Cluster".into(),
            }),
        }
    }

    /// The breaker is closed (a cluster: every slot has a master whose breaker is closed).
    pub fn is_up(&self) -> bool {
        match &self.inner.target {
            Target::Single(node) => node.breaker.allows(),
            Target::Cluster(c) => c.all_up(),
        }
    }

    /// `Ok(None)` on a miss, on an expired frame, and on a value that is not ours (that one
    /// also counts an error). `Err` on a transport failure or an open breaker.
    ///
    /// The remaining lifetime is the lesser of the frame's (the writer's clock) and Redis's own
    /// PTTL, asked in the same round trip: a writer whose clock runs ahead must not make a
    /// promoted copy outlive the Redis entry.
    pub fn get(&self, key: &[u8]) -> Result<Option<Hit>> {
        let k = self.inner.key(key);
        // PTTL counts from when Redis answered, some time before we read the answer: counting
        // the lifetime left from before the request instead errs short, never long.
        let asked_ns = clock::unix_ns();
        let (stored, pttl) = self.inner.run(&k, |c, d| {
            c.append(&[b"GET", &k])?;
            c.append(&[b"PTTL", &k])?;
            let mut replies = c.finish(d)?.into_iter();
            let stored = match replies.next() {
                Some(Reply::Bulk(v)) => Some(v),
                Some(Reply::Nil) => None,
                Some(other) => return Err(unexpected("GET", other)),
                None => return Err(CallError::Unexpected("GET got no reply".into())),
            };
            match replies.next() {
                Some(Reply::Integer(ms)) => Ok((stored, ms)),
                Some(other) => Err(unexpected("PTTL", other)),
                None => Err(CallError::Unexpected("PTTL got no reply".into())),
            }
        })?;
        let mut hit = self.inner.unframe(key, stored);
        if let Some(h) = &mut hit {
            // PTTL: -1 = no expiry, -2 = gone since the GET (then 0 left).
            if pttl >= -2 && pttl != -1 {
                let at = asked_ns.saturating_add((pttl.max(0) as u64).saturating_mul(1_000_000));
                h.expires_ns = Some(h.expires_ns.map_or(at, |a| a.min(at)));
            }
        }
        Ok(hit)
    }

    /// The raw stored bytes of `key` (GET), framed.
    fn fetch(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let k = self.inner.key(key);
        self.inner
            .run(&k, |c, d| match c.command(&[b"GET", &k], d)? {
                Reply::Bulk(v) => Ok(Some(v)),
                Reply::Nil => Ok(None),
                other => Err(unexpected("GET", other)),
            })
    }

    /// True when `get` would return a value, without counting a hit or miss (for `exists`,
    /// which must not move the hit ratio).
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.fetch(key)?.is_some_and(|v| {
            matches!(
                self.inner.decode(key, v, frame::now_ms()),
                Ok(Decoded::Live(..))
            )
        }))
    }

    /// What `get` would return, not counted as a hit or miss (a re-check by the coordinator).
    pub fn peek(&self, key: &[u8]) -> Result<Option<Hit>> {
        let Some(stored) = self.fetch(key)? else {
            return Ok(None);
        };
        let now_ms = frame::now_ms();
        Ok(match self.inner.decode(key, stored, now_ms) {
            Ok(Decoded::Live(value, flags, remaining)) => {
                Some(live_hit(value, flags, remaining, now_ms))
            }
            _ => None,
        })
    }

    /// Stores `value` framed with `flags`; `ttl` None = no expiry (`SET key val [PX ms]`).
    pub fn set(&self, key: &[u8], value: &[u8], flags: u8, ttl: Option<Duration>) -> Result<()> {
        let k = self.inner.key(key);
        let (framed, px) = self.inner.framed(&k, value, flags, ttl);
        self.inner.run(&k, |c, d| {
            let reply = match &px {
                Some(ms) => c.command(&[b"SET", &k, &framed, b"PX", ms.as_bytes()], d)?,
                None => c.command(&[b"SET", &k, &framed], d)?,
            };
            expect_ok("SET", reply)
        })?;
        self.inner.counters.set();
        Ok(())
    }

    /// Copies an entry of a lower tier up into Redis, only if `key` is absent (`SET ... NX`):
    /// a value a writer stored meanwhile is newer than the copy and stays. The copy expires at
    /// `expires_ns` (unix ns, rounded down to the frame's milliseconds; None = never), the
    /// source's own deadline, so it never outlives it. Returns the stored frame when the copy
    /// was stored, for `withdraw`; None too when the deadline has passed.
    pub fn promote(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u8,
        expires_ns: Option<u64>,
    ) -> Result<Option<Vec<u8>>> {
        let k = self.inner.key(key);
        let signer = self.inner.signer.as_ref().map(|s| (s, &k[..]));
        let (framed, px) = match expires_ns {
            None => (frame::encode(value, flags, 0, signer), None),
            Some(ns) => {
                let at_ms = ns / 1_000_000;
                let Some(left) = at_ms.checked_sub(frame::now_ms()).filter(|&ms| ms > 0) else {
                    return Ok(None);
                };
                // Redis's own expiry only reclaims the key; the frame's is what reads obey.
                (
                    frame::encode(value, flags, at_ms, signer),
                    Some(left.to_string()),
                )
            }
        };
        let stored = self.inner.run(&k, |c, d| {
            let reply = match &px {
                Some(ms) => c.command(&[b"SET", &k, &framed, b"PX", ms.as_bytes(), b"NX"], d)?,
                None => c.command(&[b"SET", &k, &framed, b"NX"], d)?,
            };
            match reply {
                Reply::Nil => Ok(false),
                other => expect_ok("SET NX", other).map(|()| true),
            }
        })?;
        Ok(stored.then_some(framed))
    }

    /// Deletes `key` only if it still holds exactly `frame` (what `promote` stored), in one
    /// server-side step, so a value stored since is kept. True when it was deleted.
    pub fn withdraw(&self, key: &[u8], frame: &[u8]) -> Result<bool> {
        const COMPARE_AND_DELETE: &[u8] = b"if redis.call('GET', KEYS[1]) == ARGV[1] then \
            return redis.call('DEL', KEYS[1]) else return 0 end";
        let k = self.inner.key(key);
        let n = self.inner.run(&k, |c, d| {
            match c.command(&[b"EVAL", COMPARE_AND_DELETE, b"1", &k, frame], d)? {
                Reply::Integer(n) => Ok(n),
                other => Err(unexpected("EVAL", other)),
            }
        })?;
        Ok(n > 0)
    }

    /// One round trip (PING): once it returns, Redis has handled every command that was
    /// already waiting on its sockets when this one arrived (see `coherence::outage`). With a
    /// cluster, on the node of the empty key's slot only: `delete_after_round_trip` orders each
    /// key on its own node.
    pub fn round_trip(&self) -> Result<()> {
        self.inner.run(b"", |c, d| match c.command(&[b"PING"], d)? {
            Reply::Status(_) => Ok(()),
            other => Err(unexpected("PING", other)),
        })
    }

    /// `DEL key` sent only once a PING to the same node has been answered: a write of the key
    /// that timed out earlier and was still waiting there has been handled before the delete.
    pub fn delete_after_round_trip(&self, key: &[u8]) -> Result<()> {
        let k = self.inner.key(key);
        self.inner.run(&k, |c, d| {
            match c.command(&[b"PING"], d)? {
                Reply::Status(_) => {}
                other => return Err(unexpected("PING", other)),
            }
            match c.command(&[b"DEL", &k], d)? {
                Reply::Integer(_) => Ok(()),
                other => Err(unexpected("DEL", other)),
            }
        })
    }

    /// True when the key existed.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        let k = self.inner.key(key);
        let n = self
            .inner
            .run(&k, |c, d| match c.command(&[b"DEL", &k], d)? {
                Reply::Integer(n) => Ok(n),
                other => Err(unexpected("DEL", other)),
            })?;
        self.inner.counters.delete();
        Ok(n > 0)
    }

    /// Deletes every key under the prefix (SCAN + UNLINK in batches); nothing else. A
    /// cluster: on every master in turn.
    pub fn clear(&self) -> Result<()> {
        match &self.inner.target {
            Target::Single(node) => self.clear_node(node, false),
            Target::Cluster(c) => {
                let masters = c.masters();
                if masters.is_empty() || !c.all_up() {
                    c.request_refresh();
                }
                if masters.is_empty() {
                    let err = Error::backend(format!("{}: no slot table yet", c.shown));
                    self.inner.counters.error(&err.to_string());
                    return Err(err);
                }
                // Every master is cleared even after one failed: what can be cleared is.
                let mut first_error = None;
                for node in &masters {
                    if let Err(e) = self.clear_node(node, true) {
                        first_error.get_or_insert(e);
                    }
                }
                first_error.map_or(Ok(()), Err)
            }
        }
    }

    /// SCAN + UNLINK over one node. `by_slot`: a cluster node refuses a multi-key command
    /// across slots (CROSSSLOT), so a batch is unlinked with one UNLINK per slot, pipelined.
    fn clear_node(&self, node: &Node, by_slot: bool) -> Result<()> {
        let mut pattern = glob_escape(&self.inner.prefix);
        pattern.push(b'*');
        let mut cursor = b"0".to_vec();
        loop {
            let (next, keys) = self.inner.run_on(node, |c, d| {
                // COUNT is a hint: a batch can run past it (a bucket is returned whole).
                // A batch past the budget is a protocol error, so the clear fails rather than
                // returning with keys left.
                let key_len = crate::config::MAX_KEY_LEN + self.inner.prefix.len();
                let count = c.expect_keys(SCAN_COUNT, key_len).to_string();
                let reply = c.command(
                    &[
                        b"SCAN",
                        &cursor,
                        b"MATCH",
                        &pattern,
                        b"COUNT",
                        count.as_bytes(),
                    ],
                    d,
                )?;
                match reply {
                    Reply::Array(mut parts) if parts.len() == 2 => {
                        match (parts.pop(), parts.pop()) {
                            (Some(Reply::Array(keys)), Some(Reply::Bulk(next))) => {
                                let keys = keys
                                    .into_iter()
                                    .map(|k| match k {
                                        Reply::Bulk(k) => Ok(k),
                                        other => Err(unexpected("SCAN", other)),
                                    })
                                    .collect::<std::result::Result<Vec<_>, _>>()?;
                                Ok((next, keys))
                            }
                            _ => Err(CallError::Unexpected("SCAN answered a bad array".into())),
                        }
                    }
                    other => Err(unexpected("SCAN", other)),
                }
            })?;
            if !keys.is_empty() {
                let batches = unlink_batches(&keys, by_slot);
                self.inner.run_on(node, |c, d| {
                    for args in &batches {
                        c.append(args)?;
                    }
                    for reply in c.finish(d)? {
                        match reply {
                            Reply::Integer(_) => {}
                            // A key migrated since the SCAN: the SCAN of its new node finds
                            // it, unless that node was cleared already (see docs/scaling.md).
                            Reply::Error(e) if Redirect::parse(&e).is_some() => {}
                            other => return Err(unexpected("UNLINK", other)),
                        }
                    }
                    Ok(())
                })?;
            }
            if next == b"0" {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// `get` for many keys, in their order, not counting PTTL. One node: one MGET (one round
    /// trip). A cluster: the keys grouped by node, one pipeline of GETs per node (one round
    /// trip each); a key its node redirects is asked again where it now lives. The keys of a
    /// node that is down or failed read as misses (the error is counted, not a miss).
    pub fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Hit>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let full: Vec<Vec<u8>> = keys.iter().map(|k| self.inner.key(k)).collect();
        let fetched = match &self.inner.target {
            Target::Single(node) => self.inner.mget(node, &full)?,
            Target::Cluster(c) => self.inner.cluster_get_many(c, &full),
        };
        Ok(keys
            .iter()
            .zip(fetched)
            .map(|(key, f)| f.and_then(|stored| self.inner.unframe(key, stored)))
            .collect())
    }

    /// Pipelined SETs: all written, then all replies read, within one timeout (a cluster:
    /// one pipeline per node, see `get_many`).
    pub fn set_many(&self, items: &[SetItem<'_>]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let prepared: Vec<Prepared> = items
            .iter()
            .map(|(k, v, fl, ttl)| {
                let key = self.inner.key(k);
                let (f, px) = self.inner.framed(&key, v, *fl, *ttl);
                (key, f, px)
            })
            .collect();
        let (stored, failure) = match &self.inner.target {
            Target::Single(node) => {
                let all: Vec<usize> = (0..prepared.len()).collect();
                let outcome = self
                    .inner
                    .run_on(node, |c, d| pipeline_sets(c, d, &prepared, &all))?;
                let refused: Vec<String> = outcome.into_iter().filter_map(|o| o.err()).collect();
                let failure = refused.first().map(|e| (refused.len(), e.clone()));
                (prepared.len() - refused.len(), failure)
            }
            Target::Cluster(c) => self.inner.cluster_set_many(c, &prepared),
        };
        for _ in 0..stored {
            self.inner.counters.set();
        }
        match failure {
            None => Ok(()),
            Some((errors, e)) => {
                let err = Error::backend(format!(
                    "{errors} of {} pipelined SETs refused: {e}",
                    items.len()
                ));
                self.inner.counters.error(&err.to_string());
                Err(err)
            }
        }
    }

    pub fn stats(&self) -> RedisStats {
        let i = &self.inner;
        let nodes: Vec<Arc<Node>> = match &i.target {
            Target::Single(node) => vec![Arc::clone(node)],
            Target::Cluster(c) => c.masters(),
        };
        let any_open = nodes.iter().any(|n| !n.breaker.allows());
        let (all_nodes, up) = match &i.target {
            Target::Single(node) => (vec![Arc::clone(node)], node.breaker.allows()),
            Target::Cluster(c) => (c.nodes(), c.all_up()),
        };
        RedisStats {
            tier: i.counters.snapshot(),
            skipped: i.skipped.load(Relaxed),
            up: up && !i.refusing.load(Relaxed),
            breaker: if any_open {
                BreakerState::Open
            } else {
                BreakerState::Closed
            },
            consecutive_failures: nodes
                .iter()
                .map(|n| n.breaker.consecutive_failures())
                .max()
                .unwrap_or(0),
            times_opened: all_nodes.iter().map(|n| n.breaker.times_opened()).sum(),
            open_connections: all_nodes.iter().map(|n| n.pool.open_connections()).sum(),
            url: i.url_shown.clone(),
            key_prefix: String::from_utf8_lossy(&i.prefix).into_owned(),
            last_probe_error: nodes.iter().find_map(|n| n.probe_error()),
        }
    }
}

impl Drop for RedisTier {
    fn drop(&mut self) {
        // Stops and joins the threads (at most one probe timeout) before the pools close.
        lock(&self.probe).take();
        lock(&self.refresher).take();
        if let Target::Cluster(c) = &self.inner.target {
            c.stop_probes();
        }
    }
}

/// The TLS client settings of a `rediss://` (or `rediss+cluster://`, `rediss+sentinel://`)
/// URL, checked now: a CA file that cannot be read is a config error at open, not a failure on
/// every call.
fn open_tls(wanted: bool, cfg: &Config) -> Result<Option<tls::Tls>> {
    if !wanted {
        return Ok(None);
    }
    tls::Tls::new(&cfg.redis_tls())
        .map(Some)
        .map_err(|why| Error::config(format!("TLS for redis_url: {why}")))
}

/// True for an error reply that says the server is no longer the master (after a failover).
fn says_not_master(msg: &str) -> bool {
    msg.starts_with("READONLY") || msg.contains("master -> replica")
}

/// A SET ready to send: full key, frame, PX argument.
type Prepared = (Vec<u8>, Vec<u8>, Option<String>);

/// Appends the SETs of `items[which]`, reads every reply, and judges each: Ok, or the refusal
/// (an error reply, a redirection included). Every reply is read before judging, so the
/// connection stays in step.
fn pipeline_sets(
    c: &mut Wire<'_>,
    d: Instant,
    items: &[Prepared],
    which: &[usize],
) -> std::result::Result<Vec<std::result::Result<(), String>>, CallError> {
    for &i in which {
        let (k, f, px) = &items[i];
        match px {
            Some(ms) => c.append(&[b"SET", k, f, b"PX", ms.as_bytes()])?,
            None => c.append(&[b"SET", k, f])?,
        }
    }
    finish_pipeline(c, d, which.len(), "SETs")?
        .into_iter()
        .map(|r| match r {
            Reply::Status(s) if s == b"OK" => Ok(Ok(())),
            Reply::Error(e) => Ok(Err(e)),
            other => Err(unexpected("SET", other)),
        })
        .collect()
}

/// Reads the replies of a pipeline of `n` commands (`what`, for the message).
fn finish_pipeline(
    c: &mut Wire<'_>,
    d: Instant,
    n: usize,
    what: &str,
) -> std::result::Result<Vec<Reply>, CallError> {
    let replies = c.finish(d)?;
    if replies.len() != n {
        return Err(CallError::Unexpected(format!(
            "{} replies to {n} pipelined {what}",
            replies.len()
        )));
    }
    Ok(replies)
}

/// UNLINK commands for a SCAN batch: one, or one per hash slot (`by_slot`).
fn unlink_batches(keys: &[Vec<u8>], by_slot: bool) -> Vec<Vec<&[u8]>> {
    let mut batches: Vec<(u16, Vec<&[u8]>)> = Vec::new();
    for k in keys {
        let slot = if by_slot { slots::slot(k) } else { 0 };
        match batches.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, args)) => args.push(k),
            None => batches.push((slot, vec![b"UNLINK", k])),
        }
    }
    batches.into_iter().map(|(_, args)| args).collect()
}

impl Inner {
    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(key);
        k
    }

    /// Runs one exchange about `key` (the full Redis key) under one deadline, on the node
    /// that serves it (a cluster: following redirections), and does the counting.
    fn run<T>(
        &self,
        key: &[u8],
        mut exchange: impl FnMut(&mut Wire<'_>, Instant) -> std::result::Result<T, CallError>,
    ) -> Result<T> {
        match &self.target {
            Target::Single(node) => self.run_on(node, exchange),
            Target::Cluster(c) => self.route(c, key, &mut exchange),
        }
    }

    /// Runs one exchange on `node` under its breaker and pool and one deadline, and does the
    /// counting.
    fn run_on<T>(
        &self,
        node: &Node,
        mut exchange: impl FnMut(&mut Wire<'_>, Instant) -> std::result::Result<T, CallError>,
    ) -> Result<T> {
        self.admit(node)?;
        let deadline = call_timeout::deadline(Instant::now(), self.timeout);
        let result = self.attempt(node, false, deadline, &mut exchange);
        self.settle(node, result)
    }

    /// A cluster call: to the slot's master, then wherever MOVED/ASK say, at most
    /// MAX_REDIRECTS hops, all within one deadline.
    fn route<T>(
        &self,
        cluster: &Cluster,
        key: &[u8],
        exchange: &mut impl FnMut(&mut Wire<'_>, Instant) -> std::result::Result<T, CallError>,
    ) -> Result<T> {
        let slot = slots::slot(key);
        let Some(mut node) = cluster.node_for(slot) else {
            cluster.request_refresh();
            return Err(self.count(format!("{}: no node serves slot {slot}", cluster.shown)));
        };
        let deadline = call_timeout::deadline(Instant::now(), self.timeout);
        let mut asking = false;
        for _ in 0..=MAX_REDIRECTS {
            if let Err(e) = self.admit(&node) {
                // Its replica may have taken over: the next table says.
                cluster.request_refresh();
                return Err(e);
            }
            match self.attempt(&node, asking, deadline, exchange) {
                Err(CallError::Redirect(r)) => {
                    node = match cluster.follow(&node, &r, deadline) {
                        Ok(next) => next,
                        Err(why) => return Err(self.count(why)),
                    };
                    asking = r.ask;
                }
                result => {
                    match &result {
                        Err(CallError::Conn(_) | CallError::Unexpected(_)) => {
                            cluster.request_refresh()
                        }
                        Err(CallError::Reply(e)) if e.contains("CLUSTERDOWN") => {
                            cluster.request_refresh()
                        }
                        _ => {}
                    }
                    return self.settle(&node, result);
                }
            }
        }
        Err(self.count(format!(
            "{}: more than {MAX_REDIRECTS} redirections for slot {slot} (a redirect loop?)",
            cluster.shown
        )))
    }

    /// Err (counted as skipped) while `node`'s breaker is open.
    fn admit(&self, node: &Node) -> Result<()> {
        if node.breaker.allows() {
            return Ok(());
        }
        self.skipped.fetch_add(1, Relaxed);
        Err(Error::backend(format!(
            "circuit open: {} is down, call skipped",
            node.shown
        )))
    }

    /// Counts an error and returns it.
    fn count(&self, message: String) -> Error {
        let err = Error::backend(message);
        self.counters.error(&err.to_string());
        err
    }

    /// One exchange on a pooled connection of `node` (ASKING before each command when
    /// `asking`). An idle pooled socket can be stale (Redis restarted, idle timeout): a call
    /// that finds it closed is retried once on a fresh one, within the same deadline. All our
    /// commands are idempotent, so a repeat is harmless.
    fn attempt<T>(
        &self,
        node: &Node,
        asking: bool,
        deadline: Instant,
        exchange: &mut impl FnMut(&mut Wire<'_>, Instant) -> std::result::Result<T, CallError>,
    ) -> std::result::Result<T, CallError> {
        let mut retried = false;
        loop {
            let (result, reused) = match node.pool.get(deadline) {
                Ok(mut conn) => {
                    let reused = conn.reused;
                    let r = exchange(&mut Wire::new(&mut conn, asking), deadline);
                    if matches!(r, Err(CallError::Unexpected(_))) {
                        conn.mark_broken();
                    }
                    (r, reused)
                }
                Err(e) => (Err(CallError::Conn(e)), false),
            };
            match result {
                Err(CallError::Conn(e))
                    if reused && !retried && e.kind == ConnErrorKind::Closed =>
                {
                    retried = true;
                }
                result => return result,
            }
        }
    }

    /// Counts an exchange's outcome and moves `node`'s breaker.
    fn settle<T>(&self, node: &Node, result: std::result::Result<T, CallError>) -> Result<T> {
        match result {
            Ok(v) => {
                node.breaker.success();
                self.refusing.store(false, Relaxed);
                Ok(v)
            }
            // Contention is not Redis's fault; if Redis is what holds the connections up,
            // their holders time out and trip the breaker themselves.
            Err(CallError::Conn(e)) if e.kind == ConnErrorKind::PoolBusy => {
                Err(self.count(e.message))
            }
            Err(CallError::Reply(msg)) => {
                if says_not_master(&msg) {
                    node.pool.master_moved();
                }
                node.breaker.success();
                self.refusing.store(true, Relaxed);
                Err(self.count(msg))
            }
            // Only a single-node tier gets here with one: the server is a cluster node.
            Err(CallError::Redirect(r)) => {
                node.breaker.success();
                self.refusing.store(true, Relaxed);
                Err(self.count(format!(
                    "{} redirected slot {} to {}: it is a Redis Cluster node, use a \
                     redis+cluster:// URL",
                    node.shown,
                    r.slot,
                    r.addr()
                )))
            }
            Err(CallError::Conn(ConnError { message, .. }))
            | Err(CallError::Unexpected(message)) => {
                let err = self.count(message);
                if node.breaker.failure() {
                    node.pool.reset();
                }
                Err(err)
            }
        }
    }

    /// One MGET on one server: the stored bytes of each key (None: a miss), in order.
    fn mget(&self, node: &Node, full: &[Vec<u8>]) -> Result<Vec<Option<Option<Vec<u8>>>>> {
        let mut args: Vec<&[u8]> = Vec::with_capacity(full.len() + 1);
        args.push(b"MGET");
        args.extend(full.iter().map(Vec::as_slice));
        let values = self.run_on(node, |c, d| {
            c.expect_values(full.len());
            match c.command(&args, d)? {
                Reply::Array(v) if v.len() == full.len() => Ok(v),
                other => Err(unexpected("MGET", other)),
            }
        })?;
        Ok(values
            .into_iter()
            .map(|v| {
                Some(match v {
                    Reply::Bulk(b) => Some(b),
                    Reply::Nil => None,
                    other => {
                        self.count(format!("MGET gave {} for one key", describe(&other)));
                        None
                    }
                })
            })
            .collect())
    }

    /// A cluster's `get_many`: per key Some(stored) (stored None: a miss), or None when its
    /// node could not be read (counted as an error, not a miss).
    fn cluster_get_many(
        &self,
        cluster: &Cluster,
        full: &[Vec<u8>],
    ) -> Vec<Option<Option<Vec<u8>>>> {
        let mut out: Vec<Option<Option<Vec<u8>>>> = vec![None; full.len()];
        let mut again = Vec::new();
        for (node, which) in self.by_node(cluster, full) {
            let replies = self.run_on(&node, |c, d| {
                for &i in &which {
                    c.append(&[b"GET", &full[i]])?;
                }
                finish_pipeline(c, d, which.len(), "GETs")
            });
            let Ok(replies) = replies else { continue };
            for (i, reply) in which.into_iter().zip(replies) {
                match reply {
                    Reply::Bulk(b) => out[i] = Some(Some(b)),
                    Reply::Nil => out[i] = Some(None),
                    Reply::Error(e) if Redirect::parse(&e).is_some() => again.push(i),
                    other => {
                        self.count(format!("GET gave {} for one key", describe(&other)));
                    }
                }
            }
        }
        for i in again {
            out[i] = self
                .run(&full[i], |c, d| {
                    match c.command(&[b"GET", &full[i]], d)? {
                        Reply::Bulk(v) => Ok(Some(v)),
                        Reply::Nil => Ok(None),
                        other => Err(unexpected("GET", other)),
                    }
                })
                .ok();
        }
        out
    }

    /// A cluster's `set_many`: how many were stored, and (count, first reason) of the others.
    fn cluster_set_many(
        &self,
        cluster: &Cluster,
        items: &[Prepared],
    ) -> (usize, Option<(usize, String)>) {
        let keys: Vec<Vec<u8>> = items.iter().map(|(k, ..)| k.clone()).collect();
        let mut stored = 0;
        let mut refused: Vec<String> = Vec::new();
        let mut again = Vec::new();
        for (node, which) in self.by_node(cluster, &keys) {
            match self.run_on(&node, |c, d| pipeline_sets(c, d, items, &which)) {
                Ok(outcomes) => {
                    for (i, o) in which.into_iter().zip(outcomes) {
                        match o {
                            Ok(()) => stored += 1,
                            Err(e) if Redirect::parse(&e).is_some() => again.push(i),
                            Err(e) => refused.push(e),
                        }
                    }
                }
                Err(e) => refused.extend(std::iter::repeat(e.to_string()).take(which.len())),
            }
        }
        for i in again {
            let one = [i];
            match self.run(&items[i].0, |c, d| pipeline_sets(c, d, items, &one)) {
                Ok(mut o) => match o.pop() {
                    Some(Ok(())) => stored += 1,
                    Some(Err(e)) => refused.push(e),
                    None => refused.push("no reply".into()),
                },
                Err(e) => refused.push(e.to_string()),
            }
        }
        let failure = refused.first().map(|e| (refused.len(), e.clone()));
        (stored, failure)
    }

    /// The indices of `full` grouped by the node serving their slot, in first-seen order.
    /// A key whose slot has no node yet is counted as an error and left out.
    fn by_node(&self, cluster: &Cluster, full: &[Vec<u8>]) -> Vec<(Arc<Node>, Vec<usize>)> {
        let mut groups: Vec<(Arc<Node>, Vec<usize>)> = Vec::new();
        for (i, k) in full.iter().enumerate() {
            let slot = slots::slot(k);
            let Some(node) = cluster.node_for(slot) else {
                cluster.request_refresh();
                self.count(format!("{}: no node serves slot {slot}", cluster.shown));
                continue;
            };
            match groups.iter_mut().find(|(n, _)| Arc::ptr_eq(n, &node)) {
                Some((_, which)) => which.push(i),
                None => groups.push((node, vec![i])),
            }
        }
        groups
    }

    /// Frames a value for `redis_key` (the full key), signed when a secret is set, with the
    /// PX argument its TTL needs.
    fn framed(
        &self,
        redis_key: &[u8],
        value: &[u8],
        flags: u8,
        ttl: Option<Duration>,
    ) -> (Vec<u8>, Option<String>) {
        let signer = self.signer.as_ref().map(|s| (s, redis_key));
        match ttl {
            None => (frame::encode(value, flags, 0, signer), None),
            Some(ttl) => {
                let ms = frame::ttl_ms(ttl);
                let at = frame::now_ms().saturating_add(ms);
                (
                    frame::encode(value, flags, at, signer),
                    Some(ms.to_string()),
                )
            }
        }
    }

    /// Unframes (and with a secret, verifies) what is stored under `key`, refusing a payload
    /// over max_value_size.
    /// `now_ms` is the instant a live value's remaining time is counted from.
    fn decode(
        &self,
        key: &[u8],
        stored: Vec<u8>,
        now_ms: u64,
    ) -> std::result::Result<Decoded, Foreign> {
        let signer = self.signer.as_ref();
        let redis_key = signer.map(|_| self.key(key));
        let decoded = frame::decode(stored, now_ms, signer.zip(redis_key.as_deref()))?;
        match decoded {
            Decoded::Live(v, ..) if v.len() > self.max_value_size => {
                Err(Foreign::TooLarge(v.len(), self.max_value_size))
            }
            d => Ok(d),
        }
    }

    /// Counts and unframes what GET/MGET returned for `key`.
    fn unframe(&self, key: &[u8], stored: Option<Vec<u8>>) -> Option<Hit> {
        let Some(stored) = stored else {
            self.counters.miss();
            return None;
        };
        let now_ms = frame::now_ms();
        match self.decode(key, stored, now_ms) {
            Ok(Decoded::Live(value, flags, remaining)) => {
                self.counters.hit();
                Some(live_hit(value, flags, remaining, now_ms))
            }
            Ok(Decoded::Expired) => {
                self.counters.miss();
                None
            }
            Err(why) => {
                self.counters.miss();
                let shown = shown_key(key);
                if let Foreign::Tampered(_) = why {
                    let msg = format!("key '{shown}' in redis {why}");
                    self.counters.tampered(&Error::backend(msg).to_string());
                } else {
                    let msg =
                        format!("key '{shown}' under our prefix holds a foreign value: {why}");
                    self.counters.error(&Error::backend(msg).to_string());
                }
                None
            }
        }
    }
}

/// A live frame's payload as a hit; `remaining` was counted from `now_ms`, so the frame's
/// absolute expiry comes back exactly.
fn live_hit(value: Vec<u8>, flags: u8, remaining: Option<Duration>, now_ms: u64) -> Hit {
    let expires_ms = remaining.map(|r| now_ms + r.as_millis() as u64);
    Hit {
        value,
        flags,
        expires_ns: expires_ms.map(|ms| ms.saturating_mul(1_000_000)),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only whole-value stores happen under these locks: poisoning cannot leave them torn.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn expect_ok(what: &str, reply: Reply) -> std::result::Result<(), CallError> {
    match reply {
        Reply::Status(s) if s == b"OK" => Ok(()),
        other => Err(unexpected(what, other)),
    }
}

/// Error replies become `Reply` (MOVED and ASK: `Redirect`); anything else of the wrong shape is `Unexpected`.
fn unexpected(cmd: &str, reply: Reply) -> CallError {
    match reply {
        Reply::Error(e) => match Redirect::parse(&e) {
            Some(r) => CallError::Redirect(r),
            None => CallError::Reply(format!("{cmd} refused: {e}")),
        },
        other => CallError::Unexpected(format!("{cmd} answered {}", describe(&other))),
    }
}

/// A short description of a reply for messages (never the whole payload).
fn describe(r: &Reply) -> String {
    match r {
        Reply::Nil => "nil".into(),
        Reply::Status(s) => format!(
            "status '{}'",
            String::from_utf8_lossy(&s[..s.len().min(32)])
        ),
        Reply::Error(e) => format!("error '{e}'"),
        Reply::Integer(n) => format!("integer {n}"),
        Reply::Bulk(b) => format!("a string of {} bytes", b.len()),
        Reply::Array(a) => format!("an array of {}", a.len()),
    }
}

/// Escapes Redis glob metacharacters so the prefix matches only itself.
fn glob_escape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 4);
    for &b in s {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    #[test]
    fn prefix_derives_from_disk_path_alone() {
        let a = PathBuf::from("/var/cache/app/");
        assert_eq!(
            derived_prefix(&a),
            derived_prefix(Path::new("/var/cache/app"))
        );
        assert_ne!(
            derived_prefix(&a),
            derived_prefix(Path::new("/var/cache/other"))
        );
    }

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(glob_escape(b"a*b?[c]\\"), b"a\\*b\\?\\[c\\]\\\\".to_vec());
        assert_eq!(glob_escape(b"sc:/tmp/x:"), b"sc:/tmp/x:".to_vec());
    }

    #[test]
    fn cluster_urls_are_accepted_where_redis_url_is_set() {
        let mut cfg = Config::default();
        cfg.set(
            "redis_url",
            "redis+cluster://127.0.0.1:7000,127.0.0.1:7001/",
        )
        .unwrap();
        assert_eq!(
            cfg.redis_url,
            "redis+cluster://127.0.0.1:7000,127.0.0.1:7001/"
        );
        let e = cfg.set("redis_url", "redis+cluster://h:1/5").unwrap_err();
        assert_eq!(e.code(), crate::error::status::SZ_ERR_CONFIG);
        assert!(e.to_string().contains("redis_url"), "{e}");
    }

    #[test]
    fn bad_url_is_a_config_error_at_open() {
        let cfg = Config {
            redis_url: "redis://h:notaport/0".into(),
            ..Config::default()
        };
        let e = RedisTier::open(&cfg).err().expect("must fail");
        assert_eq!(e.code(), crate::error::status::SZ_ERR_CONFIG);
        assert!(e.to_string().contains("redis_url"), "{e}");
    }
}
