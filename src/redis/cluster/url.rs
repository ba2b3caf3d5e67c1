//! Parses a cluster `redis_url`: `redis+cluster://[[user]:password@]host:port[,host:port...][/][?...]`,
//! or `rediss+cluster://...`: the same over TLS to every node (see [`crate::redis::tls`]).
//!
//! The hosts are seeds: any one that answers `CLUSTER SLOTS` tells where every slot lives.
//! Query parameters: `user`, `password` (percent-encoded, as an alternative to the userinfo).
//! The database is always 0 (Redis Cluster has no other), so a path other than `/` or `/0` is
//! refused. Errors are config errors naming `redis_url`, with the password redacted.

use crate::error::{Error, Result};
use crate::redis::conn::Endpoint;
use crate::redis::url::{decode, parse_db, parse_host_port, redact, RedisUrl};
use std::fmt;

/// The scheme of a cluster URL.
pub const SCHEME: &str = "redis+cluster://";
/// The scheme of a cluster URL over TLS.
pub const TLS_SCHEME: &str = "rediss+cluster://";

/// Most seeds a URL may list.
const MAX_SEEDS: usize = 64;

/// A parsed cluster URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    /// host, port of each seed, in the order given.
    pub seeds: Vec<(String, u16)>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// `rediss+cluster://`: TLS to every node.
    pub tls: bool,
}

impl fmt::Debug for ClusterUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterUrl({self})")
    }
}

/// The URL with the password replaced by `***`.
impl fmt::Display for ClusterUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.tls { TLS_SCHEME } else { SCHEME })?;
        match (&self.user, &self.password) {
            (Some(u), Some(_)) => write!(f, "{u}:***@")?,
            (None, Some(_)) => f.write_str(":***@")?,
            _ => {}
        }
        for (i, (host, port)) in self.seeds.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{}", host_port(host, *port))?;
        }
        f.write_str("/")
    }
}

/// `host:port`, with brackets around an IPv6 address: the form nodes are named by.
pub fn host_port(host: &str, port: u16) -> String {
    Endpoint::Tcp {
        host: host.to_string(),
        port,
    }
    .to_string()
}

impl ClusterUrl {
    /// True when `url` is meant as a cluster URL (its scheme).
    pub fn is_cluster(url: &str) -> bool {
        let url = url.trim();
        url.starts_with(SCHEME) || url.starts_with(TLS_SCHEME)
    }

    pub fn parse(url: &str) -> Result<ClusterUrl> {
        let url = url.trim();
        let parsed = match url.strip_prefix(TLS_SCHEME) {
            Some(rest) => parse_cluster(rest).map(|u| ClusterUrl { tls: true, ..u }),
            None => parse_cluster(url.strip_prefix(SCHEME).unwrap_or(url)),
        };
        parsed.map_err(|why| {
            Error::config(format!(
                "bad value '{}' for option 'redis_url': {why}",
                crate::config::shortened(&redact(url))
            ))
        })
    }

    /// The URL of one node of this cluster: same login, database 0.
    pub fn node(&self, host: &str, port: u16) -> RedisUrl {
        RedisUrl {
            endpoint: Endpoint::Tcp {
                host: host.to_string(),
                port,
            },
            db: 0,
            user: self.user.clone(),
            password: self.password.clone(),
            tls: self.tls,
            sentinel: None,
        }
    }
}

fn parse_cluster(rest: &str) -> std::result::Result<ClusterUrl, String> {
    const FORM: &str = "expected redis+cluster://[[user]:password@]host:port[,host:port...]/";
    if rest.contains('#') {
        return Err("a '#' fragment is not accepted".into());
    }
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (userinfo, hostpart) = match rest.rfind('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let (mut user, mut password) = (None, None);
    if let Some(info) = userinfo {
        let (u, p) = info
            .split_once(':')
            .ok_or("a user needs a password (user:password@host)")?;
        let u = decode(u)?;
        user = (!u.is_empty()).then_some(u);
        password = Some(decode(p)?);
    }
    let hosts = match hostpart.split_once('/') {
        None => hostpart,
        Some((h, "")) => h,
        Some((h, db)) => match parse_db(db)? {
            0 => h,
            n => return Err(format!("database {n}: Redis Cluster has only database 0")),
        },
    };
    if hosts.is_empty() {
        return Err(format!("no host given; {FORM}"));
    }
    let seeds = hosts
        .split(',')
        .map(|hp| {
            if hp.is_empty() {
                Err(format!("an empty host in the list; {FORM}"))
            } else {
                parse_host_port(hp)
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if seeds.len() > MAX_SEEDS {
        return Err(format!("{} hosts, at most {MAX_SEEDS}", seeds.len()));
    }
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("expected name=value, got '{pair}'"))?;
        match k {
            "password" => password = Some(decode(v)?),
            "user" => user = Some(decode(v)?),
            _ => return Err(format!("unknown parameter '{k}' (user, password)")),
        }
    }
    if password.as_deref() == Some("") {
        return Err("empty password".into());
    }
    if user.is_some() && password.is_none() {
        return Err("a user needs a password".into());
    }
    Ok(ClusterUrl {
        seeds,
        user,
        password,
        tls: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_forms() {
        let u = ClusterUrl::parse("redis+cluster://127.0.0.1:7000,127.0.0.1:7001/").unwrap();
        assert_eq!(
            u.seeds,
            vec![("127.0.0.1".into(), 7000), ("127.0.0.1".into(), 7001)]
        );
        assert_eq!((u.user, u.password), (None, None));

        let u = ClusterUrl::parse("redis+cluster://app:p%40w@[::1]:7000,h2?").unwrap();
        assert_eq!(u.seeds, vec![("::1".into(), 7000), ("h2".into(), 6379)]);
        assert_eq!(u.user.as_deref(), Some("app"));
        assert_eq!(u.password.as_deref(), Some("p@w"));
        assert_eq!(u.to_string(), "redis+cluster://app:***@[::1]:7000,h2:6379/");

        let u = ClusterUrl::parse("redis+cluster://h:1/0?password=pw&user=bob").unwrap();
        assert_eq!(
            (u.user.as_deref(), u.password.as_deref()),
            (Some("bob"), Some("pw"))
        );
        assert!(!format!("{u} {u:?}").contains("pw"));
        let node = u.node("10.0.0.2", 7002);
        assert_eq!(node.db, 0);
        assert_eq!(node.password.as_deref(), Some("pw"));
        assert!(ClusterUrl::is_cluster(" redis+cluster://h:1"));
        assert!(!ClusterUrl::is_cluster("redis://h:1"));
        assert!(ClusterUrl::is_cluster("rediss+cluster://h:1"));
    }

    #[test]
    fn tls_cluster_form_gives_every_node_tls() {
        let u = ClusterUrl::parse("rediss+cluster://:pw@h1:7000,h2:7001/").unwrap();
        assert!(u.tls);
        assert_eq!(u.seeds, vec![("h1".into(), 7000), ("h2".into(), 7001)]);
        assert_eq!(u.to_string(), "rediss+cluster://:***@h1:7000,h2:7001/");
        let node = u.node("10.0.0.2", 7002);
        assert!(node.tls && node.sentinel.is_none());
        assert!(!ClusterUrl::parse("redis+cluster://h:1/").unwrap().tls);
        let e = ClusterUrl::parse("rediss+cluster://h:1/3").unwrap_err();
        assert!(e.to_string().contains("redis_url"), "{e}");
    }

    #[test]
    fn bad_cluster_urls_name_the_option_and_hide_the_password() {
        for bad in [
            "redis+cluster://",
            "redis+cluster:///",
            "redis+cluster://h:1,,h:2/",
            "redis+cluster://h:1,/",
            "redis+cluster://h:0/",
            "redis+cluster://h:1/2",
            "redis+cluster://h:1/x",
            "redis+cluster://h:1/?db=1",
            "redis+cluster://h:1/?password=",
            "redis+cluster://user@h:1/",
            "redis+cluster://h:1/?user=u",
            "redis+cluster://h:1/#frag",
            "redis+cluster://[::1:7000/",
        ] {
            let e = ClusterUrl::parse(bad).unwrap_err();
            assert_eq!(e.code(), crate::error::status::SZ_ERR_CONFIG, "{bad}");
            assert!(e.to_string().contains("redis_url"), "{e}");
        }
        let many = vec!["h:1"; MAX_SEEDS + 1].join(",");
        assert!(ClusterUrl::parse(&format!("redis+cluster://{many}/")).is_err());
        let e = ClusterUrl::parse("redis+cluster://u:topsecret@h:bad/").unwrap_err();
        assert!(!e.to_string().contains("topsecret"), "{e}");
        let e = ClusterUrl::parse("redis+cluster://h:1/?password=topsecret&db=z").unwrap_err();
        assert!(!e.to_string().contains("topsecret"), "{e}");
    }
}
