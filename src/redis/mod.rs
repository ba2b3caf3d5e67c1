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
pub mod conn;
pub mod frame;
pub mod invalidation;
pub mod pool;
pub mod prefix;
pub mod resolve;
pub mod sentinel;
pub mod tls;
pub mod transport;
pub mod url;

use crate::clock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::sign::Signer;
use crate::tier::{shown_key, ttl_from_secs, Hit, TierCounters, TierSnapshot};
use breaker::{Breaker, BreakerState, ProbeThread, FAILURE_THRESHOLD, PROBE_INTERVAL};
use conn::{Conn, ConnError, ConnErrorKind, Reply};
use frame::{Decoded, Foreign};
use pool::Pool;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
pub use url::RedisUrl;

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
    // Declared after `inner` only for readability: Drop below stops the probe explicitly.
    // Behind a mutex only so a forked child can replace it (`restart_probe`).
    probe: Mutex<Option<ProbeThread>>,
}

struct Inner {
    pool: Pool,
    breaker: Arc<Breaker>,
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
    /// Why the latest probe failed (None once one succeeded).
    probe_error: Mutex<Option<String>>,
}

/// How one exchange failed.
enum CallError {
    /// Transport failure: counts toward the breaker.
    Conn(ConnError),
    /// Redis answered with an error reply: it is alive; counted, breaker untouched.
    Reply(String),
    /// A reply of the wrong shape: the server does not speak Redis as we expect. Treated like a
    /// transport failure, and the connection is dropped.
    Unexpected(String),
}

impl From<ConnError> for CallError {
    fn from(e: ConnError) -> Self {
        CallError::Conn(e)
    }
}

pub use prefix::derived_prefix;

/// Most keys asked for per SCAN of `clear` (fewer when max_value_size is small and the
/// longest keys of a batch would not fit its reply budget, see `Conn::expect_keys`).
const SCAN_COUNT: usize = 500;

impl RedisTier {
    /// Bad URL -> `Err(Error::Config)` naming redis_url. Redis down at open is not an error:
    /// the tier starts down (breaker open, error counted) and the probe brings it up later.
    pub fn open(cfg: &Config) -> Result<RedisTier> {
        let url = RedisUrl::parse(&cfg.redis_url)?;
        let url_shown = url.to_string();
        let prefix = cfg
            .redis_key_prefix
            .clone()
            .unwrap_or_else(|| derived_prefix(&cfg.disk_path));
        let timeout = Duration::from_millis(cfg.redis_timeout_ms.max(1));
        let tls = open_tls(&url, cfg)?;
        let mut pool =
            Pool::new(url, timeout, cfg.redis_pool_size).with_max_value_size(cfg.max_value_size);
        if let Some(tls) = tls {
            pool = pool.with_tls(tls);
        }
        let inner = Arc::new(Inner {
            pool,
            breaker: Arc::new(Breaker::new(FAILURE_THRESHOLD)),
            refusing: AtomicBool::new(false),
            counters: TierCounters::default(),
            skipped: AtomicU64::new(0),
            prefix: prefix.into_bytes(),
            timeout,
            url_shown,
            default_ttl: ttl_from_secs(cfg.redis_ttl),
            signer: Signer::from_config(cfg),
            max_value_size: cfg.max_value_size,
            probe_error: Mutex::new(None),
        });

        // Warm one connection so the first call does not pay the dial; failing here only
        // means the tier starts down.
        match inner.pool.get(Instant::now() + timeout) {
            Ok(conn) => drop(conn),
            Err(e) => {
                inner.counters.error(&Error::backend(e.message).to_string());
                inner.breaker.trip();
            }
        }

        let probe = spawn_probe(&inner)?;
        Ok(RedisTier {
            inner,
            probe: Mutex::new(Some(probe)),
        })
    }

    /// Takes this tier's locks for `crate::fork`.
    pub fn hold_for_fork<'a>(&'a self, held: &mut Vec<Box<dyn crate::fork::Held + 'a>>) {
        let i = &*self.inner;
        i.pool.hold_for_fork(held);
        held.push(Box::new(i.breaker.hold_for_fork()));
        held.push(Box::new(lock(&i.probe_error)));
        held.push(Box::new(lock(&self.probe)));
        held.push(Box::new(i.counters.hold_for_fork()));
    }

    /// In a forked child, single threaded: the parent's sockets are let go of (see
    /// `Pool::after_fork`). The probe thread is restarted later by `restart_probe`: threads
    /// must not be started inside the fork handler.
    pub fn after_fork(&self) {
        self.inner.pool.after_fork();
    }

    /// In a forked child: lets go of the parent's probe thread, which does not exist here.
    pub fn abandon_probe(&self) {
        if let Some(old) = lock(&self.probe).take() {
            old.abandon();
        }
    }

    /// In a forked child, after `abandon_probe`: a probe thread of this process's own.
    pub fn restart_probe(&self) -> Result<()> {
        let probe = spawn_probe(&self.inner)?;
        *lock(&self.probe) = Some(probe);
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

    /// A logged-in connection outside the pool, for the invalidation listener.
    pub fn dial_dedicated(&self, deadline: Instant) -> std::result::Result<Conn, ConnError> {
        self.inner.pool.dial_dedicated(deadline)
    }

    pub fn is_up(&self) -> bool {
        self.inner.breaker.allows()
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
        let (stored, pttl) = self.inner.run(|c, d| {
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
        self.inner.run(|c, d| match c.command(&[b"GET", &k], d)? {
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
        self.inner.run(|c, d| {
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
        let stored = self.inner.run(|c, d| {
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
        let n = self.inner.run(|c, d| {
            match c.command(&[b"EVAL", COMPARE_AND_DELETE, b"1", &k, frame], d)? {
                Reply::Integer(n) => Ok(n),
                other => Err(unexpected("EVAL", other)),
            }
        })?;
        Ok(n > 0)
    }

    /// True when the key existed.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        let k = self.inner.key(key);
        let n = self.inner.run(|c, d| match c.command(&[b"DEL", &k], d)? {
            Reply::Integer(n) => Ok(n),
            other => Err(unexpected("DEL", other)),
        })?;
        self.inner.counters.delete();
        Ok(n > 0)
    }

    /// Deletes every key under the prefix (SCAN + UNLINK in batches); nothing else.
    pub fn clear(&self) -> Result<()> {
        let mut pattern = glob_escape(&self.inner.prefix);
        pattern.push(b'*');
        let mut cursor = b"0".to_vec();
        loop {
            let (next, keys) = self.inner.run(|c, d| {
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
                let mut args: Vec<&[u8]> = Vec::with_capacity(keys.len() + 1);
                args.push(b"UNLINK");
                args.extend(keys.iter().map(Vec::as_slice));
                self.inner.run(|c, d| match c.command(&args, d)? {
                    Reply::Integer(_) => Ok(()),
                    other => Err(unexpected("UNLINK", other)),
                })?;
            }
            if next == b"0" {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// One MGET (one round trip); results in the order of `keys`.
    pub fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Hit>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let full: Vec<Vec<u8>> = keys.iter().map(|k| self.inner.key(k)).collect();
        let mut args: Vec<&[u8]> = Vec::with_capacity(keys.len() + 1);
        args.push(b"MGET");
        args.extend(full.iter().map(Vec::as_slice));
        let values = self.inner.run(|c, d| {
            c.expect_values(keys.len());
            match c.command(&args, d)? {
                Reply::Array(v) if v.len() == keys.len() => Ok(v),
                other => Err(unexpected("MGET", other)),
            }
        })?;
        let mut out = Vec::with_capacity(keys.len());
        for (key, v) in keys.iter().zip(values) {
            let stored = match v {
                Reply::Bulk(b) => Some(b),
                Reply::Nil => None,
                other => {
                    let msg = format!("MGET gave {} for one key", describe(&other));
                    self.inner.counters.error(&Error::backend(msg).to_string());
                    None
                }
            };
            out.push(self.inner.unframe(key, stored));
        }
        Ok(out)
    }

    /// Pipelined SETs: all written, then all replies read, within one timeout.
    pub fn set_many(&self, items: &[SetItem<'_>]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let prepared: Vec<(Vec<u8>, Vec<u8>, Option<String>)> = items
            .iter()
            .map(|(k, v, fl, ttl)| {
                let key = self.inner.key(k);
                let (f, px) = self.inner.framed(&key, v, *fl, *ttl);
                (key, f, px)
            })
            .collect();
        let failed = self.inner.run(|c, d| {
            for (k, f, px) in &prepared {
                match px {
                    Some(ms) => c.append(&[b"SET", k, f, b"PX", ms.as_bytes()])?,
                    None => c.append(&[b"SET", k, f])?,
                }
            }
            let replies = c.finish(d)?;
            // Every reply is read before judging, so the connection stays in step.
            let mut first_error = None;
            let mut errors = 0usize;
            for r in replies {
                match r {
                    Reply::Status(s) if s == b"OK" => {}
                    Reply::Error(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                    other => return Err(unexpected("SET", other)),
                }
            }
            Ok(first_error.map(|e| (errors, e)))
        })?;
        match failed {
            None => {
                for _ in items {
                    self.inner.counters.set();
                }
                Ok(())
            }
            Some((errors, e)) => {
                for _ in 0..items.len() - errors {
                    self.inner.counters.set();
                }
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
        RedisStats {
            tier: i.counters.snapshot(),
            skipped: i.skipped.load(Relaxed),
            up: i.breaker.allows() && !i.refusing.load(Relaxed),
            breaker: i.breaker.state(),
            consecutive_failures: i.breaker.consecutive_failures(),
            times_opened: i.breaker.times_opened(),
            open_connections: i.pool.open_connections(),
            url: i.url_shown.clone(),
            key_prefix: String::from_utf8_lossy(&i.prefix).into_owned(),
            last_probe_error: lock(&i.probe_error).clone(),
        }
    }
}

impl Drop for RedisTier {
    fn drop(&mut self) {
        // Stops and joins the probe thread (at most one probe timeout) before the pool closes.
        lock(&self.probe).take();
    }
}

/// The TLS client settings of a `rediss://` URL, checked now: a CA file that cannot be read
/// is a config error at open, not a failure on every call.
fn open_tls(url: &RedisUrl, cfg: &Config) -> Result<Option<tls::Tls>> {
    if !url.tls {
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

/// Starts the breaker's probe thread for the tier.
fn spawn_probe(inner: &Arc<Inner>) -> Result<ProbeThread> {
    let probing = Arc::clone(inner);
    let closing = Arc::clone(inner);
    inner
        .breaker
        .spawn_probe_watching(
            PROBE_INTERVAL,
            move || match probing.pool.probe() {
                Ok(()) => true,
                Err(e) => {
                    // Kept apart from `errors` so a long outage does not inflate the
                    // count by one per probe; health shows why Redis is still down.
                    *lock(&probing.probe_error) = Some(Error::backend(e.message).to_string());
                    false
                }
            },
            // Sockets opened before the outage point at a dead or restarted server.
            move || {
                closing.pool.reset();
                *lock(&closing.probe_error) = None;
            },
            inner.pool.is_sentinel().then(|| {
                let watching = Arc::clone(inner);
                let check: Box<dyn FnMut() + Send> = Box::new(move || watching.pool.check_master());
                (sentinel::WATCH_INTERVAL, check)
            }),
        )
        .map_err(|e| Error::Internal(format!("cannot start the redis probe thread: {e}")))
}

impl Inner {
    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(key);
        k
    }

    /// Runs one exchange under the breaker, the pool and one deadline, and does the counting.
    fn run<T>(
        &self,
        mut exchange: impl FnMut(&mut Conn, Instant) -> std::result::Result<T, CallError>,
    ) -> Result<T> {
        if !self.breaker.allows() {
            self.skipped.fetch_add(1, Relaxed);
            return Err(Error::backend(format!(
                "circuit open: {} is down, call skipped",
                self.url_shown
            )));
        }
        let deadline = call_timeout::deadline(Instant::now(), self.timeout);
        let mut retried = false;
        loop {
            let (result, reused) = match self.pool.get(deadline) {
                Ok(mut conn) => {
                    let reused = conn.reused;
                    let r = exchange(&mut conn, deadline);
                    if matches!(r, Err(CallError::Unexpected(_))) {
                        conn.mark_broken();
                    }
                    (r, reused)
                }
                Err(e) => (Err(CallError::Conn(e)), false),
            };
            match result {
                Ok(v) => {
                    self.breaker.success();
                    self.refusing.store(false, Relaxed);
                    return Ok(v);
                }
                // An idle pooled socket can be stale (Redis restarted, idle timeout): retry
                // once on a fresh one, within the same deadline. All our commands are
                // idempotent, so a repeat is harmless.
                Err(CallError::Conn(e))
                    if reused && !retried && e.kind == ConnErrorKind::Closed =>
                {
                    retried = true;
                }
                // Contention is not Redis's fault; if Redis is what holds the connections up,
                // their holders time out and trip the breaker themselves.
                Err(CallError::Conn(e)) if e.kind == ConnErrorKind::PoolBusy => {
                    let err = Error::backend(e.message);
                    self.counters.error(&err.to_string());
                    return Err(err);
                }
                Err(CallError::Reply(msg)) => {
                    if says_not_master(&msg) {
                        self.pool.master_moved();
                    }
                    self.breaker.success();
                    self.refusing.store(true, Relaxed);
                    let err = Error::backend(msg);
                    self.counters.error(&err.to_string());
                    return Err(err);
                }
                Err(CallError::Conn(ConnError { message, .. }))
                | Err(CallError::Unexpected(message)) => {
                    let err = Error::backend(message);
                    self.counters.error(&err.to_string());
                    if self.breaker.failure() {
                        self.pool.reset();
                    }
                    return Err(err);
                }
            }
        }
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

/// Error replies become `Reply`; anything else of the wrong shape is `Unexpected`.
fn unexpected(cmd: &str, reply: Reply) -> CallError {
    match reply {
        Reply::Error(e) => CallError::Reply(format!("{cmd} refused: {e}")),
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
