//! The slot table a node reports (`CLUSTER SLOTS`), checked: it comes from the network.
//!
//! Refused as a whole (the previous table stays in use): a reply of the wrong shape, a range
//! outside 0..16383 or reversed, a slot claimed twice, a port of 0, a host that is not a
//! plain name or address, more than [`MAX_NODES`] nodes. Slots no range covers have no owner:
//! calls for them fail with a clear error until a later table covers them.

use super::slots::SLOTS;
use super::url::host_port;
use crate::redis::conn::Reply;
use crate::redis::url::parse_host_port;
use std::collections::HashSet;

/// Most distinct nodes (masters and replicas) a table may name.
pub const MAX_NODES: usize = 1000;

/// Where each slot is served, by master address (`host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotTable {
    /// (host, port) of each master, in the order first seen.
    pub masters: Vec<(String, u16)>,
    /// Per slot, the index of its master in `masters`.
    pub owner: Vec<Option<u16>>,
    /// Every node the table names, replicas included: the addresses a redirection may
    /// point at.
    pub announced: HashSet<String>,
}

/// Parses a `CLUSTER SLOTS` reply got from `asked_host` (which an empty IP stands for).
pub fn parse_cluster_slots(reply: Reply, asked_host: &str) -> Result<SlotTable, String> {
    let Reply::Array(ranges) = reply else {
        return Err(format!("CLUSTER SLOTS answered {}", shape(&reply)));
    };
    let mut table = SlotTable {
        masters: Vec::new(),
        owner: vec![None; SLOTS],
        announced: HashSet::new(),
    };
    for range in ranges {
        let Reply::Array(parts) = range else {
            return Err(format!("a CLUSTER SLOTS range is {}", shape(&range)));
        };
        let mut parts = parts.into_iter();
        let start = slot_number(parts.next())?;
        let end = slot_number(parts.next())?;
        if start > end {
            return Err(format!("CLUSTER SLOTS range {start}-{end} is reversed"));
        }
        let Some(master) = parts.next() else {
            return Err(format!("CLUSTER SLOTS range {start}-{end} has no master"));
        };
        let master = node_address(master, asked_host)?;
        for replica in parts {
            if let Some((h, p)) = node_address(replica, asked_host)? {
                table.announced.insert(host_port(&h, p));
            }
        }
        // "?": the master's address is not known yet (a node joining); its slots stay
        // without an owner.
        let Some((host, port)) = master else { continue };
        let addr = host_port(&host, port);
        table.announced.insert(addr.clone());
        let index = match table
            .masters
            .iter()
            .position(|(h, p)| (h, *p) == (&host, port))
        {
            Some(i) => i,
            None => {
                table.masters.push((host, port));
                table.masters.len() - 1
            }
        };
        if table.announced.len() > MAX_NODES {
            return Err(format!("CLUSTER SLOTS names more than {MAX_NODES} nodes"));
        }
        for slot in start..=end {
            let cell = &mut table.owner[usize::from(slot)];
            if cell.is_some() {
                return Err(format!("CLUSTER SLOTS gives slot {slot} two masters"));
            }
            *cell = Some(index as u16);
        }
    }
    Ok(table)
}

fn slot_number(r: Option<Reply>) -> Result<u16, String> {
    match r {
        Some(Reply::Integer(n)) if (0..SLOTS as i64).contains(&n) => Ok(n as u16),
        Some(Reply::Integer(n)) => Err(format!("CLUSTER SLOTS names slot {n}, past 16383")),
        Some(other) => Err(format!("a CLUSTER SLOTS slot is {}", shape(&other))),
        None => Err("a CLUSTER SLOTS range is cut short".into()),
    }
}

/// `[ip, port, id, ...]`: Some((host, port)), or None for an address not known ("?").
fn node_address(r: Reply, asked_host: &str) -> Result<Option<(String, u16)>, String> {
    let Reply::Array(fields) = r else {
        return Err(format!("a CLUSTER SLOTS node is {}", shape(&r)));
    };
    let mut fields = fields.into_iter();
    let host = match fields.next() {
        Some(Reply::Bulk(h)) => {
            String::from_utf8(h).map_err(|_| "a CLUSTER SLOTS host is not UTF-8".to_string())?
        }
        Some(other) => return Err(format!("a CLUSTER SLOTS host is {}", shape(&other))),
        None => return Err("a CLUSTER SLOTS node has no host".into()),
    };
    let port = match fields.next() {
        Some(Reply::Integer(p)) if (1..=65535).contains(&p) => p as u16,
        Some(Reply::Integer(p)) => return Err(format!("CLUSTER SLOTS names port {p}")),
        Some(other) => return Err(format!("a CLUSTER SLOTS port is {}", shape(&other))),
        None => return Err("a CLUSTER SLOTS node has no port".into()),
    };
    let host = match host.as_str() {
        "?" => return Ok(None),
        // An empty IP: the node we asked, which does not know its own address.
        "" => asked_host.to_string(),
        h => h.to_string(),
    };
    if host.len() > 255 {
        return Err("a CLUSTER SLOTS host is longer than 255 bytes".into());
    }
    // The same rules as a host in redis_url.
    let (host, _) = parse_host_port(&host_port(&host, port))
        .map_err(|why| format!("CLUSTER SLOTS names a {why}"))?;
    Ok(Some((host, port)))
}

fn shape(r: &Reply) -> &'static str {
    match r {
        Reply::Nil => "nil",
        Reply::Status(_) => "a status",
        Reply::Error(_) => "an error",
        Reply::Integer(_) => "an integer",
        Reply::Bulk(_) => "a string",
        Reply::Array(_) => "an array of the wrong shape",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: i64) -> Reply {
        Reply::Array(vec![
            Reply::Bulk(host.as_bytes().to_vec()),
            Reply::Integer(port),
            Reply::Bulk(b"0123abcd".to_vec()),
        ])
    }

    fn range(start: i64, end: i64, nodes: Vec<Reply>) -> Reply {
        let mut v = vec![Reply::Integer(start), Reply::Integer(end)];
        v.extend(nodes);
        Reply::Array(v)
    }

    #[test]
    fn a_three_master_table_maps_every_slot() {
        let reply = Reply::Array(vec![
            range(
                0,
                5460,
                vec![node("127.0.0.1", 7000), node("127.0.0.1", 7003)],
            ),
            range(5461, 10922, vec![node("", 7001), node("127.0.0.1", 7004)]),
            range(10923, 16383, vec![node("127.0.0.1", 7002)]),
        ]);
        let t = parse_cluster_slots(reply, "10.1.1.1").unwrap();
        assert_eq!(t.masters.len(), 3);
        assert_eq!(t.masters[1], ("10.1.1.1".to_string(), 7001));
        assert_eq!(t.owner[0], Some(0));
        assert_eq!(t.owner[5461], Some(1));
        assert_eq!(t.owner[16383], Some(2));
        assert!(t.announced.contains("127.0.0.1:7004"));
        assert_eq!(t.announced.len(), 5);
    }

    #[test]
    fn hostile_tables_are_refused() {
        let bad = [
            Reply::Integer(1),
            Reply::Array(vec![Reply::Integer(1)]),
            Reply::Array(vec![range(0, 16384, vec![node("h", 1)])]),
            Reply::Array(vec![range(10, 5, vec![node("h", 1)])]),
            Reply::Array(vec![range(-1, 5, vec![node("h", 1)])]),
            Reply::Array(vec![range(0, 5, vec![])]),
            Reply::Array(vec![range(0, 5, vec![node("h", 0)])]),
            Reply::Array(vec![range(0, 5, vec![node("h", 70000)])]),
            Reply::Array(vec![range(0, 5, vec![node("bad host", 1)])]),
            Reply::Array(vec![range(0, 5, vec![node("h/x", 1)])]),
            Reply::Array(vec![range(0, 5, vec![Reply::Nil])]),
            Reply::Array(vec![
                range(0, 5, vec![node("a", 1)]),
                range(5, 9, vec![node("b", 1)]),
            ]),
        ];
        for reply in bad {
            let shown = format!("{reply:?}");
            assert!(parse_cluster_slots(reply, "h").is_err(), "{shown}");
        }
        let many: Vec<Reply> = (0..=MAX_NODES as i64)
            .map(|i| range(i, i, vec![node("127.0.0.1", 1000 + i)]))
            .collect();
        assert!(parse_cluster_slots(Reply::Array(many), "h").is_err());
    }

    #[test]
    fn unknown_masters_leave_their_slots_unowned() {
        let reply = Reply::Array(vec![range(0, 99, vec![node("?", 7000)])]);
        let t = parse_cluster_slots(reply, "h").unwrap();
        assert!(t.masters.is_empty());
        assert_eq!(t.owner[50], None);
    }
}
