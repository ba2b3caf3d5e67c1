//! A throwaway Redis Cluster for one test: `masters` masters with one replica each, every
//! node a `RedisServer` (own temp dir, free loopback port, killed on drop), joined with
//! `redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`.
//!
//! redis-cli is found on PATH or at $REDIS_CLI. `cluster-node-timeout` is 1000 ms so a killed
//! master's replica is promoted within a few seconds.

use super::redis_server::{RedisServer, Resp};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..masters * 2)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "1000",
                    // A replica with a stale offset may still be promoted (the test kills
                    // masters on purpose).
                    "--cluster-replica-validity-factor",
                    "0",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        Self::join(nodes, &addrs, &[], 1)
    }

    /// Joins started `nodes` (cluster-enabled) into a cluster through `addrs` (one per node,
    /// the ports redis-cli reaches them on), `cli_args` going to redis-cli first (e.g. its
    /// `--tls` options), with `replicas` replicas per master; waits until it is ok.
    pub fn join(
        nodes: Vec<RedisServer>,
        addrs: &[String],
        cli_args: &[String],
        replicas: usize,
    ) -> RedisCluster {
        let cli = std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".into());
        let mut cmd = Command::new(&cli);
        cmd.args(cli_args)
            .arg("--cluster")
            .arg("create")
            .args(addrs);
        let out = cmd
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cli} (needed for cluster tests): {e}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let c = RedisCluster { nodes };
        c.wait_until_ok(Duration::from_secs(30));
        c
    }

    /// The seeds URL naming the first `n` nodes.
    pub fn url(&self, n: usize) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .take(n)
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        format!("redis+cluster://{}/", hosts.join(","))
    }

    /// Nodes that are up (not killed by the test).
    pub fn alive(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|n| n.is_running())
    }

    /// Waits until every live node reports `cluster_state:ok` and agrees on every slot.
    pub fn wait_until_ok(&self, within: Duration) {
        let t = Instant::now();
        loop {
            let ok = self.alive().all(|n| {
                let info = text(&n.cmd_str(&["CLUSTER", "INFO"]));
                info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
            });
            if ok {
                return;
            }
            assert!(t.elapsed() < within, "the cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The live master serving `slot`, by index into `nodes`.
    pub fn owner_of(&self, slot: u16) -> usize {
        let port = self.owner_port(slot);
        self.nodes.iter().position(|n| n.port() == port).unwrap()
    }

    fn owner_port(&self, slot: u16) -> u16 {
        let n = self.alive().next().expect("a live node");
        let Resp::Array(Some(ranges)) = n.cmd_str(&["CLUSTER", "SLOTS"]) else {
            panic!("CLUSTER SLOTS")
        };
        for r in ranges {
            let Resp::Array(Some(parts)) = r else {
                continue;
            };
            let (start, end) = (parts[0].int(), parts[1].int());
            if (start..=end).contains(&i64::from(slot)) {
                let Resp::Array(Some(master)) = &parts[2] else {
                    panic!("master")
                };
                return master[1].int() as u16;
            }
        }
        panic!("slot {slot} has no owner")
    }

    /// Indices of the live masters.
    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].is_running()
                    && text(&self.nodes[i].cmd_str(&["ROLE"])).starts_with("master")
            })
            .collect()
    }

    /// The node id of `nodes[i]`.
    pub fn id(&self, i: usize) -> String {
        text(&self.nodes[i].cmd_str(&["CLUSTER", "MYID"]))
    }

    /// `CLUSTER KEYSLOT key`, asked of a live node.
    pub fn keyslot(&self, key: &[u8]) -> u16 {
        let n = self.alive().next().expect("a live node");
        n.cmd(&[b"CLUSTER", b"KEYSLOT", key]).int() as u16
    }

    /// Moves `slot` from its master to `nodes[to]` as `redis-cli --cluster reshard` does:
    /// IMPORTING/MIGRATING, MIGRATE of its keys in batches (`pause` between batches, so
    /// clients see the slot half moved), then SETSLOT NODE on every master.
    pub fn migrate_slot(&self, slot: u16, to: usize, pause: Duration) {
        let from = self.owner_of(slot);
        assert_ne!(from, to, "slot {slot} is already on node {to}");
        let (from_id, to_id) = (self.id(from), self.id(to));
        let s = slot.to_string();
        self.nodes[to]
            .cmd_str(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id])
            .assert_ok();
        self.nodes[from]
            .cmd_str(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id])
            .assert_ok();
        let to_port = self.nodes[to].port().to_string();
        loop {
            let Resp::Array(Some(keys)) =
                self.nodes[from].cmd_str(&["CLUSTER", "GETKEYSINSLOT", &s, "10"])
            else {
                panic!("GETKEYSINSLOT")
            };
            if keys.is_empty() {
                break;
            }
            let mut args: Vec<Vec<u8>> =
                ["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"]
                    .iter()
                    .map(|a| a.as_bytes().to_vec())
                    .collect();
            args.extend(keys.iter().map(|k| k.bulk().unwrap()));
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let r = self.nodes[from].cmd(&refs);
            assert!(matches!(r, Resp::Simple(_)), "MIGRATE answered {r:?}");
            std::thread::sleep(pause);
        }
        for m in self.masters() {
            self.nodes[m]
                .cmd_str(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id])
                .assert_ok();
        }
    }
}

/// A bulk or status reply as text.
pub fn text(r: &Resp) -> String {
    match r {
        Resp::Simple(s) => s.clone(),
        Resp::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
        Resp::Array(Some(items)) => items.first().map(text).unwrap_or_default(),
        other => format!("{other:?}"),
    }
}
