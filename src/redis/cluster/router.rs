//! The cluster as the tier sees it: which node serves each slot, one [`Node`] (pool, breaker,
//! probe) per node, redirections followed and the table kept fresh.
//!
//! The table is refreshed (`CLUSTER SLOTS`, asked of a master that is up, else of a seed) at
//! open, every [`REFRESH_INTERVAL`], and soon after something suggests it moved: a `MOVED`
//! (whose slot is also re-pointed at once), a node failing or its breaker open (a failover
//! promotes its replica), a slot without an owner. Refreshes run on the cluster's own
//! thread, at most one per [`MIN_REFRESH_GAP`]; a caller never waits for one, except after a
//! redirection to a node the table does not name yet (a node just added), and then only
//! within its own deadline.

use super::redirect::Redirect;
use super::slots::SLOTS;
use super::topology::{parse_cluster_slots, SlotTable, MAX_NODES};
use super::url::{host_port, ClusterUrl};
use crate::redis::breaker::ProbeThread;
use crate::redis::conn::ConnErrorKind;
use crate::redis::node::{lock, Node};
use crate::redis::tls::Tls;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Periodic refresh of the slot table.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// Least time between two refreshes, however often one is asked for.
pub const MIN_REFRESH_GAP: Duration = Duration::from_millis(100);

/// Where every slot is served, as of the latest table.
struct Routes {
    slots: Vec<Option<Arc<Node>>>,
    /// Every slot has a master.
    complete: bool,
    masters: Vec<Arc<Node>>,
    announced: HashSet<String>,
}

struct NodeEntry {
    node: Arc<Node>,
    probe: Option<ProbeThread>,
}

/// Asks the refresh thread for a refresh, or to stop.
#[derive(Default)]
struct Signal {
    state: Mutex<SignalState>,
    wake: Condvar,
}

#[derive(Default)]
struct SignalState {
    wanted: bool,
    stop: bool,
}

pub struct Cluster {
    url: ClusterUrl,
    /// The URL with the password hidden.
    pub shown: String,
    timeout: Duration,
    pool_size: usize,
    max_value_size: usize,
    /// `rediss+cluster://`: every node is dialled over TLS with these settings.
    tls: Option<Tls>,
    nodes: Mutex<HashMap<String, NodeEntry>>,
    routes: RwLock<Arc<Routes>>,
    /// When the latest refresh started (rate limit), held while one runs.
    refreshing: Mutex<Option<Instant>>,
    signal: Arc<Signal>,
}

impl Cluster {
    pub fn new(
        url: ClusterUrl,
        tls: Option<Tls>,
        timeout: Duration,
        pool_size: usize,
        max_value_size: usize,
    ) -> Cluster {
        Cluster {
            shown: url.to_string(),
            url,
            timeout,
            pool_size,
            max_value_size,
            tls,
            nodes: Mutex::new(HashMap::new()),
            routes: RwLock::new(Arc::new(Routes {
                slots: vec![None; SLOTS],
                complete: false,
                masters: Vec::new(),
                announced: HashSet::new(),
            })),
            refreshing: Mutex::new(None),
            signal: Arc::default(),
        }
    }

    fn routes(&self) -> Arc<Routes> {
        Arc::clone(&self.routes.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The node serving `slot`, if the table names one.
    pub fn node_for(&self, slot: u16) -> Option<Arc<Node>> {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        routes.slots[usize::from(slot)].clone()
    }

    /// The masters of the latest table.
    pub fn masters(&self) -> Vec<Arc<Node>> {
        self.routes().masters.clone()
    }

    /// The node at `host:port`, created (with its probe thread) on first use; at most
    /// MAX_NODES exist at once (nodes a new table does not name are let go of).
    fn node(&self, host: &str, port: u16) -> Result<Arc<Node>, String> {
        let addr = host_port(host, port);
        let mut nodes = lock(&self.nodes);
        if let Some(e) = nodes.get(&addr) {
            return Ok(Arc::clone(&e.node));
        }
        if nodes.len() >= MAX_NODES {
            return Err(format!(
                "{}: {MAX_NODES} nodes known already, {addr} refused",
                self.shown
            ));
        }
        let node = Arc::new(Node::new(
            self.url.node(host, port),
            self.tls.clone(),
            self.timeout,
            self.pool_size,
            self.max_value_size,
        ));
        // Without a probe thread an opened breaker would stay open: the node is then used
        // without one only if the thread cannot start (counted by the caller's errors).
        let probe = node.spawn_probe().ok();
        nodes.insert(
            addr,
            NodeEntry {
                node: Arc::clone(&node),
                probe,
            },
        );
        Ok(node)
    }

    /// Follows a redirection: the node to ask next. A `MOVED` also re-points its slot and
    /// asks for a refresh. A target the table does not name is accepted after a refresh names
    /// it, or when it is a loopback address (this host); anything else is refused, so a
    /// node cannot send the cache to an arbitrary address.
    pub fn follow(
        &self,
        from: &Node,
        r: &Redirect,
        deadline: Instant,
    ) -> Result<Arc<Node>, String> {
        let addr = r.addr();
        if !self.routes().announced.contains(&addr) {
            self.refresh_within(deadline);
            let loopback =
                r.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) || r.host == "localhost";
            if !self.routes().announced.contains(&addr) && !loopback {
                return Err(format!(
                    "{} redirected slot {} to {addr}, a node the cluster does not announce",
                    from.shown, r.slot
                ));
            }
        }
        let node = self.node(&r.host, r.port)?;
        if !r.ask {
            self.point(r.slot, &node);
            self.request_refresh();
        }
        Ok(node)
    }

    /// Re-points one slot (after a MOVED), until the next table.
    fn point(&self, slot: u16, node: &Arc<Node>) {
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        if routes.slots[usize::from(slot)]
            .as_ref()
            .is_some_and(|n| Arc::ptr_eq(n, node))
        {
            return;
        }
        let mut next = Routes {
            complete: routes.complete,
            slots: routes.slots.clone(),
            masters: routes.masters.clone(),
            announced: routes.announced.clone(),
        };
        next.slots[usize::from(slot)] = Some(Arc::clone(node));
        next.complete = next.complete || next.slots.iter().all(Option::is_some);
        if !next.masters.iter().any(|m| Arc::ptr_eq(m, node)) {
            next.masters.push(Arc::clone(node));
        }
        *routes = Arc::new(next);
    }

    /// Asks the refresh thread for a refresh soon.
    pub fn request_refresh(&self) {
        let mut s = lock(&self.signal.state);
        if !s.wanted {
            s.wanted = true;
            self.signal.wake.notify_all();
        }
    }

    /// Refreshes now in the caller's thread if no refresh ran within MIN_REFRESH_GAP,
    /// giving up at `deadline`.
    fn refresh_within(&self, deadline: Instant) {
        let _ = self.refresh(deadline);
    }

    /// Asks the nodes for the slot table until one answers with a good one or `deadline`
    /// passes: the masters that are up first, then the seeds, then the rest. Err says why
    /// none did (or that a refresh ran too recently).
    pub fn refresh(&self, deadline: Instant) -> Result<(), String> {
        let Ok(mut last) = self.refreshing.try_lock() else {
            return Err("a refresh is already running".into());
        };
        if last.is_some_and(|t| t.elapsed() < MIN_REFRESH_GAP) {
            return Err("refreshed moments ago".into());
        }
        *last = Some(Instant::now());
        let mut tried = HashSet::new();
        let mut why = String::from("no node to ask");
        for (host, port) in self.candidates() {
            if !tried.insert(host_port(&host, port)) {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let node = match self.node(&host, port) {
                Ok(node) => node,
                Err(e) => {
                    why = e;
                    continue;
                }
            };
            match ask_slots(&node, &host, (now + self.timeout).min(deadline)) {
                Ok(table) => return self.install(table),
                Err(e) => why = e,
            }
        }
        Err(format!(
            "cannot read the slot table of {}: {why}",
            self.shown
        ))
    }

    /// Who to ask for the table, best first: masters whose breaker is closed, the seeds,
    /// then every other known node.
    fn candidates(&self) -> Vec<(String, u16)> {
        let routes = self.routes();
        let mut up = Vec::new();
        let mut down = Vec::new();
        for m in &routes.masters {
            if let Some(hp) = m.host_port() {
                if m.breaker.allows() {
                    up.push(hp);
                } else {
                    down.push(hp);
                }
            }
        }
        up.extend(self.url.seeds.iter().cloned());
        up.extend(down);
        let known: Vec<(String, u16)> = lock(&self.nodes)
            .values()
            .filter_map(|e| e.node.host_port())
            .collect();
        up.extend(known);
        up
    }

    /// Makes `table` the routes; nodes it no longer names (and no seed) are let go of.
    fn install(&self, table: SlotTable) -> Result<(), String> {
        let mut keep = table.announced.clone();
        keep.extend(self.url.seeds.iter().map(|(h, p)| host_port(h, *p)));
        // Nodes the table does not name go first, so its own always fit under MAX_NODES.
        let gone: Vec<NodeEntry> = {
            let mut nodes = lock(&self.nodes);
            let names: Vec<String> = nodes
                .keys()
                .filter(|k| !keep.contains(*k))
                .cloned()
                .collect();
            names.iter().filter_map(|k| nodes.remove(k)).collect()
        };
        // Joining their probe threads outside the lock.
        drop(gone);
        let masters = table
            .masters
            .iter()
            .map(|(h, p)| self.node(h, *p))
            .collect::<Result<Vec<Arc<Node>>, String>>()?;
        let slots: Vec<Option<Arc<Node>>> = table
            .owner
            .iter()
            .map(|o| o.map(|i| Arc::clone(&masters[usize::from(i)])))
            .collect();
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Routes {
            complete: slots.iter().all(Option::is_some),
            slots,
            masters,
            announced: table.announced,
        });
        Ok(())
    }

    /// True when every slot has a master whose breaker is closed.
    pub fn all_up(&self) -> bool {
        let routes = self.routes();
        routes.complete && routes.masters.iter().all(|m| m.breaker.allows())
    }

    /// Every node known, for stats and fork handling.
    pub fn nodes(&self) -> Vec<Arc<Node>> {
        lock(&self.nodes)
            .values()
            .map(|e| Arc::clone(&e.node))
            .collect()
    }

    /// Starts the refresh thread; it holds the cluster until the returned handle is dropped.
    pub fn spawn_refresher(self: &Arc<Self>) -> std::io::Result<RefreshThread> {
        let cluster = Arc::clone(self);
        let signal = Arc::clone(&self.signal);
        lock(&signal.state).stop = false;
        let handle = std::thread::Builder::new()
            .name("smartcache-redis-slots".into())
            .spawn(move || cluster.refresh_loop())?;
        Ok(RefreshThread {
            signal,
            handle: Some(handle),
        })
    }

    fn refresh_loop(&self) {
        let mut last = Instant::now();
        loop {
            {
                let mut s = lock(&self.signal.state);
                loop {
                    if s.stop {
                        return;
                    }
                    let left = REFRESH_INTERVAL.saturating_sub(last.elapsed());
                    if s.wanted || left.is_zero() {
                        break;
                    }
                    s = self
                        .signal
                        .wake
                        .wait_timeout(s, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                s.wanted = false;
            }
            let since = lock(&self.refreshing).map_or(MIN_REFRESH_GAP, |t| t.elapsed());
            if since < MIN_REFRESH_GAP {
                let mut s = lock(&self.signal.state);
                if !s.stop {
                    s = self
                        .signal
                        .wake
                        .wait_timeout(s, MIN_REFRESH_GAP - since)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                if s.stop {
                    return;
                }
            }
            last = Instant::now();
            // A failure is retried at the next request or interval; the callers count
            // their own errors meanwhile.
            if self.refresh(last + 4 * self.timeout).is_err() {
                self.request_soon();
            }
        }
    }

    /// After a failed refresh: try again after the gap rather than at the next interval.
    fn request_soon(&self) {
        lock(&self.signal.state).wanted = true;
    }

    /// Takes the cluster's locks for `crate::fork`.
    pub fn hold_for_fork<'a>(&'a self, held: &mut Vec<Box<dyn crate::fork::Held + 'a>>) {
        held.push(Box::new(lock(&self.refreshing)));
        held.push(Box::new(lock(&self.signal.state)));
        held.push(Box::new(
            self.routes.write().unwrap_or_else(|p| p.into_inner()),
        ));
        let nodes = lock(&self.nodes);
        let alive: Vec<Arc<Node>> = nodes.values().map(|e| Arc::clone(&e.node)).collect();
        let list: Vec<&'a Node> = alive
            .iter()
            // SAFETY: `alive` keeps every Node alive and is pushed onto `held` before the
            // nodes' guards below; the fork code releases `held` in reverse order, so each
            // guard (and this borrow) is gone before `alive` drops its Arcs.
            .map(|n| unsafe { &*Arc::as_ptr(n) })
            .collect();
        held.push(Box::new(nodes));
        held.push(Box::new(alive));
        for n in list {
            n.hold_for_fork(held);
        }
    }

    /// In a forked child: the parent's sockets are let go of.
    pub fn after_fork(&self) {
        for e in lock(&self.nodes).values() {
            e.node.pool.after_fork();
        }
    }

    /// In a forked child: lets go of the parent's probe threads, which do not exist here.
    pub fn abandon_probes(&self) {
        for e in lock(&self.nodes).values_mut() {
            if let Some(p) = e.probe.take() {
                p.abandon();
            }
        }
    }

    /// In a forked child, after `abandon_probes`: probe threads of this process's own.
    pub fn restart_probes(&self) {
        let mut nodes = lock(&self.nodes);
        for e in nodes.values_mut() {
            if e.probe.is_none() {
                e.probe = e.node.spawn_probe().ok();
            }
        }
    }

    /// Stops every probe thread (before the tier goes away).
    pub fn stop_probes(&self) {
        let probes: Vec<ProbeThread> = lock(&self.nodes)
            .values_mut()
            .filter_map(|e| e.probe.take())
            .collect();
        drop(probes);
    }
}

/// Owns the refresh thread: dropping it stops and joins the thread.
pub struct RefreshThread {
    signal: Arc<Signal>,
    handle: Option<JoinHandle<()>>,
}

impl RefreshThread {
    /// In a forked child, where the thread does not exist: lets go of it.
    pub fn abandon(mut self) {
        if let Some(h) = self.handle.take() {
            crate::fork::abandon(h);
        }
    }
}

impl Drop for RefreshThread {
    fn drop(&mut self) {
        let Some(h) = self.handle.take() else { return };
        {
            let mut s = lock(&self.signal.state);
            s.stop = true;
            self.signal.wake.notify_all();
        }
        let _ = h.join();
    }
}

/// One `CLUSTER SLOTS` exchange with `node`, within `deadline`.
fn ask_slots(node: &Node, host: &str, deadline: Instant) -> Result<SlotTable, String> {
    let mut conn = node.pool.get(deadline).map_err(|e| {
        if e.kind != ConnErrorKind::PoolBusy {
            node.breaker.failure();
        }
        e.message
    })?;
    match conn.command(&[b"CLUSTER", b"SLOTS"], deadline) {
        Ok(reply) => {
            node.breaker.success();
            parse_cluster_slots(reply, host).map_err(|e| {
                conn.mark_broken();
                format!("{}: {e}", node.shown)
            })
        }
        Err(e) => {
            node.breaker.failure();
            Err(e.message)
        }
    }
}
