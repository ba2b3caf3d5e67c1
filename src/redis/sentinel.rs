//! Finding the master through Redis Sentinel (`redis+sentinel://` URLs).
//!
//! The pool asks [`Locator::master`] where to dial. The answer is cached until something says
//! it is wrong: a dial that fails, a server whose `ROLE` is not `master` (checked on every new
//! connection, see `Pool::dial`), a `READONLY` reply, or the breaker opening (`Pool::reset`).
//! Then the next dial asks the Sentinels again, in turn, each within a share of the call's
//! deadline (`SENTINEL get-master-addr-by-name`); the one that answered goes first next time.
//! After a failover the Sentinels kill the clients of the demoted master, so pooled
//! connections to it fail, are dropped, and their replacements go to the new master.

use super::conn::{Conn, ConnError, ConnErrorKind, Endpoint, Reply};
use super::resolve::Resolver;
use super::tls::{Tls, TlsTarget};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What a Sentinel URL says: where the Sentinels are and which master to ask for.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelSpec {
    pub sentinels: Vec<(String, u16)>,
    pub master: String,
    /// AUTH for the Sentinels themselves (`sentinel_user`, `sentinel_password`).
    pub user: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for SentinelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SentinelSpec({}/{})", self.hosts_shown(), self.master)
    }
}

impl SentinelSpec {
    /// `host:port,host:port` as in the URL, IPv6 hosts in brackets.
    pub fn hosts_shown(&self) -> String {
        self.sentinels
            .iter()
            .map(|(h, p)| {
                Endpoint::Tcp {
                    host: h.clone(),
                    port: *p,
                }
                .to_string()
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// How often the tier asks the Sentinels where the master is while all is well: bounds how
/// long after a failover writes can still reach the demoted master (which the Sentinels
/// reconfigure only some seconds later) and so be lost.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

pub struct Locator {
    spec: SentinelSpec,
    tls: Option<Tls>,
    timeout: Duration,
    state: Mutex<State>,
}

struct State {
    /// The master's address as last reported (None: ask).
    master: Option<SocketAddr>,
    /// Index into `spec.sentinels` of the Sentinel to ask first.
    first: usize,
}

impl Locator {
    pub fn new(spec: SentinelSpec, tls: Option<Tls>, timeout: Duration) -> Locator {
        Locator {
            spec,
            tls,
            timeout,
            state: Mutex::new(State {
                master: None,
                first: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is one field store: a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The master's name, for messages.
    pub fn master_name(&self) -> &str {
        &self.spec.master
    }

    /// Where the master is: the cached answer, or the Sentinels' (asked before `deadline`);
    /// true when just asked.
    pub fn master(&self, deadline: Instant) -> Result<(SocketAddr, bool), ConnError> {
        if let Some(addr) = self.lock().master {
            return Ok((addr, false));
        }
        let addr = self.ask(deadline)?;
        self.lock().master = Some(addr);
        Ok((addr, true))
    }

    /// Asks the Sentinels again (in the background: each gets a whole timeout); true when the
    /// master they name is not the cached one (none cached counts: connections may still be
    /// open to the old master), which is then replaced. A failed ask keeps the cache.
    pub fn refresh(&self) -> bool {
        let each = u32::try_from(self.spec.sentinels.len()).unwrap_or(u32::MAX);
        let Ok(addr) = self.ask(Instant::now() + self.timeout.saturating_mul(each)) else {
            return false;
        };
        let mut st = self.lock();
        let moved = st.master != Some(addr);
        st.master = Some(addr);
        moved
    }

    /// The cached address is suspect (failover, dead master): the next dial asks again.
    pub fn forget(&self) {
        self.lock().master = None;
    }

    /// Asks each Sentinel in turn until one names the master.
    fn ask(&self, deadline: Instant) -> Result<SocketAddr, ConnError> {
        let n = self.spec.sentinels.len();
        let first = self.lock().first;
        let mut failures = Vec::new();
        for i in 0..n {
            let idx = (first + i) % n;
            let now = Instant::now();
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() {
                break;
            }
            // Never 0: n > i. An unanswering Sentinel must leave time for the others.
            let share = left / u32::try_from(n - i).unwrap_or(u32::MAX);
            match self.ask_one(idx, now + share) {
                Ok(addr) => {
                    self.lock().first = idx;
                    return Ok(addr);
                }
                Err(e) => failures.push(e.message),
            }
        }
        Err(ConnError {
            kind: ConnErrorKind::Connect,
            message: format!(
                "no Sentinel of {} named master '{}': {}",
                self.spec.hosts_shown(),
                self.spec.master,
                if failures.is_empty() {
                    "the time ran out".to_string()
                } else {
                    failures.join("; ")
                }
            ),
        })
    }

    fn ask_one(&self, idx: usize, deadline: Instant) -> Result<SocketAddr, ConnError> {
        let (host, port) = &self.spec.sentinels[idx];
        let named = Endpoint::Tcp {
            host: host.clone(),
            port: *port,
        };
        let peer = format!("sentinel {named}");
        let ip = match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => Resolver::new(host, *port).resolve(deadline)?[0].ip(),
        };
        let ep = Endpoint::Tcp {
            host: ip.to_string(),
            port: *port,
        };
        let target = self.target(host)?;
        let mut conn = Conn::connect_tls(&ep, peer, self.timeout, deadline, target.as_ref())?;
        if let Some(password) = &self.spec.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &self.spec.user {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            match conn.command(&args, deadline)? {
                Reply::Status(s) if s == b"OK" => {}
                other => return Err(refused(&conn, "AUTH", &other)),
            }
        }
        let reply = conn.command(
            &[
                b"SENTINEL",
                b"get-master-addr-by-name",
                self.spec.master.as_bytes(),
            ],
            deadline,
        )?;
        parse_master_addr(&reply)
            .ok_or_else(|| refused(&conn, "SENTINEL get-master-addr-by-name", &reply))
    }

    /// TLS for a server reached as `host` (the Sentinels and the master alike).
    pub fn target(&self, host: &str) -> Result<Option<TlsTarget>, ConnError> {
        self.tls
            .as_ref()
            .map(|tls| {
                tls.target(host).map_err(|why| ConnError {
                    kind: ConnErrorKind::Connect,
                    message: format!("cannot connect to {host}: {why}"),
                })
            })
            .transpose()
    }
}

fn refused(conn: &Conn, what: &str, reply: &Reply) -> ConnError {
    let shown = match reply {
        Reply::Nil => "nil (it does not know this master)".to_string(),
        Reply::Error(e) => e.clone(),
        other => format!("{other:?}").chars().take(200).collect(),
    };
    ConnError {
        kind: ConnErrorKind::Connect,
        message: format!("{what} on {} answered {shown}", conn.peer()),
    }
}

/// `[ip, port]` as SENTINEL get-master-addr-by-name answers; None for anything else.
fn parse_master_addr(reply: &Reply) -> Option<SocketAddr> {
    let Reply::Array(parts) = reply else {
        return None;
    };
    match parts.as_slice() {
        [Reply::Bulk(ip), Reply::Bulk(port)] => {
            let ip = std::str::from_utf8(ip).ok()?.parse::<IpAddr>().ok()?;
            let port = std::str::from_utf8(port).ok()?.parse::<u16>().ok()?;
            (port != 0).then(|| SocketAddr::new(ip, port))
        }
        _ => None,
    }
}

/// True when `role` (a ROLE reply) says the server is a master.
pub fn is_master(role: &Reply) -> bool {
    matches!(role, Reply::Array(parts) if matches!(parts.first(), Some(Reply::Bulk(r)) if r == b"master"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_addr_replies() {
        let ok = Reply::Array(vec![
            Reply::Bulk(b"127.0.0.1".to_vec()),
            Reply::Bulk(b"6380".to_vec()),
        ]);
        assert_eq!(
            parse_master_addr(&ok),
            Some("127.0.0.1:6380".parse().unwrap())
        );
        for bad in [
            Reply::Nil,
            Reply::Array(vec![]),
            Reply::Array(vec![
                Reply::Bulk(b"host.name".to_vec()),
                Reply::Bulk(b"1".to_vec()),
            ]),
            Reply::Array(vec![
                Reply::Bulk(b"::1".to_vec()),
                Reply::Bulk(b"0".to_vec()),
            ]),
            Reply::Array(vec![Reply::Bulk(b"::1".to_vec()), Reply::Integer(1)]),
        ] {
            assert_eq!(parse_master_addr(&bad), None, "{bad:?}");
        }
        assert!(is_master(&Reply::Array(vec![
            Reply::Bulk(b"master".to_vec()),
            Reply::Integer(0),
            Reply::Array(vec![])
        ])));
        assert!(!is_master(&Reply::Array(vec![Reply::Bulk(
            b"slave".to_vec()
        )])));
    }
}
