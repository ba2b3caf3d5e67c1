//! Parses `redis_url` into where to connect and how to log in.
//!
//! Accepted forms (see docs/guide.md, "L2 — Redis"):
//! - `redis://host[:port][/db]` — port defaults to 6379, db to 0; `host` may be `[::1]`;
//! - `redis://:password@host[:port][/db]` — `AUTH password`;
//! - `redis://user:password@host[:port][/db]` — `AUTH user password` (Redis 6 ACL users);
//! - `unix:///path/to.sock[?db=N][&password=P][&user=U]`;
//! - `rediss://...` — as `redis://`, over TLS (see [`super::tls`] for the options);
//! - `redis+sentinel://[[user]:password@]host:port[,host:port...]/master-name[/db]
//!   [?sentinel_user=U&sentinel_password=P]` — the master that these Sentinels name (see
//!   [`super::sentinel`]); `rediss+sentinel://` speaks TLS to the Sentinels and the master.
//!
//! User and password may be percent-encoded (`%40` for `@`). Anything else — another scheme,
//! a user without a password, a bad port or db, an unknown query parameter — is a config
//! error naming `redis_url`, with the password redacted.

use super::conn::Endpoint;
use super::sentinel::SentinelSpec;
use crate::error::{Error, Result};
use std::fmt;
use std::path::PathBuf;

/// A parsed `redis_url`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub endpoint: Endpoint,
    pub db: u32,
    /// ACL user; `None` with a password = the `default` user (`AUTH password`).
    pub user: Option<String>,
    pub password: Option<String>,
    /// `rediss://`: TLS to the server (and to the Sentinels).
    pub tls: bool,
    /// `redis+sentinel://`: the master is found through these Sentinels; `endpoint` is the
    /// first of them.
    pub sentinel: Option<SentinelSpec>,
}

// Debug must not print the password either: a config dump ends up in logs.
impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// The URL with the password replaced by `***`, for stats, health and error messages.
impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.endpoint {
            Endpoint::Tcp { .. } if self.sentinel.is_some() => self.fmt_sentinel(f),
            Endpoint::Tcp { host, port } => {
                write!(f, "{}://", if self.tls { "rediss" } else { "redis" })?;
                match (&self.user, &self.password) {
                    (Some(u), Some(_)) => write!(f, "{u}:***@")?,
                    (None, Some(_)) => write!(f, ":***@")?,
                    _ => {}
                }
                if host.contains(':') {
                    write!(f, "[{host}]:{port}/{}", self.db)
                } else {
                    write!(f, "{host}:{port}/{}", self.db)
                }
            }
            Endpoint::Unix { path } => {
                write!(f, "unix://{}?db={}", path.display(), self.db)?;
                if let Some(u) = &self.user {
                    write!(f, "&user={u}")?;
                }
                if self.password.is_some() {
                    write!(f, "&password=***")?;
                }
                Ok(())
            }
        }
    }
}

impl RedisUrl {
    fn fmt_sentinel(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(s) = &self.sentinel else {
            return Ok(());
        };
        write!(
            f,
            "{}://",
            if self.tls {
                "rediss+sentinel"
            } else {
                "redis+sentinel"
            }
        )?;
        match (&self.user, &self.password) {
            (Some(u), Some(_)) => write!(f, "{u}:***@")?,
            (None, Some(_)) => write!(f, ":***@")?,
            _ => {}
        }
        write!(f, "{}/{}/{}", s.hosts_shown(), s.master, self.db)?;
        if s.password.is_some() {
            write!(f, "?sentinel_password=***")?;
        }
        Ok(())
    }

    pub fn parse(url: &str) -> Result<RedisUrl> {
        let url = url.trim();
        let parsed = if let Some(rest) = url.strip_prefix("redis://") {
            parse_tcp(rest)
        } else if let Some(rest) = url.strip_prefix("rediss://") {
            parse_tcp(rest).map(|u| RedisUrl { tls: true, ..u })
        } else if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            parse_sentinel(rest, false)
        } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
            parse_sentinel(rest, true)
        } else if let Some(rest) = url.strip_prefix("unix://") {
            parse_unix(rest)
        } else {
            Err(
                "expected redis://[[user]:password@]host[:port][/db], rediss://... (TLS), \
                 redis+sentinel://host:port[,host:port]/master-name[/db], \
                 rediss+sentinel://... or unix:///path?db=N"
                    .into(),
            )
        };
        parsed.map_err(|why: String| {
            Error::config(format!(
                "bad value '{}' for option 'redis_url': {why}",
                crate::config::shortened(&redact(url))
            ))
        })
    }
}

fn parse_tcp(rest: &str) -> std::result::Result<RedisUrl, String> {
    if rest.contains('?') || rest.contains('#') {
        return Err("query parameters are only accepted on unix:// URLs".into());
    }
    let (user, password, hostpart) = split_userinfo(rest)?;
    let (hostport, db) = match hostpart.split_once('/') {
        None => (hostpart, 0),
        Some((hp, "")) => (hp, 0),
        Some((hp, db)) => (hp, parse_db(db)?),
    };
    let (host, port) = parse_host_port(hostport)?;
    Ok(RedisUrl {
        endpoint: Endpoint::Tcp { host, port },
        db,
        user,
        password,
        tls: false,
        sentinel: None,
    })
}

/// `[[user]:password@]rest` -> (user, password, rest).
type UserInfo<'a> = (Option<String>, Option<String>, &'a str);

fn split_userinfo(rest: &str) -> std::result::Result<UserInfo<'_>, String> {
    // Userinfo ends at the last '@' so an unencoded '@' in a password still parses.
    let (userinfo, hostpart) = match rest.rfind('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (u, p) = info
                .split_once(':')
                .ok_or("a user needs a password (user:password@host)")?;
            let p = decode(p)?;
            if p.is_empty() {
                return Err("empty password".into());
            }
            let u = decode(u)?;
            ((!u.is_empty()).then_some(u), Some(p))
        }
    };
    Ok((user, password, hostpart))
}

/// `host[:port]` or `[v6]:port`; the port defaults to 6379.
pub(crate) fn parse_host_port(hostport: &str) -> std::result::Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed '[' in host")?;
        match after {
            "" => (h, 6379),
            p => (
                h,
                parse_port(p.strip_prefix(':').ok_or("expected ':port' after ']'")?)?,
            ),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, parse_port(p)?),
            None => (hostport, 6379),
        }
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    if host.contains(['/', ' ', '@', ',', '?', '#']) || host.chars().any(char::is_control) {
        return Err(format!("bad host '{host}'"));
    }
    Ok((host.to_string(), port))
}

/// `host:port[,host:port...]/master-name[/db][?sentinel_user=U&sentinel_password=P]`.
fn parse_sentinel(rest: &str, tls: bool) -> std::result::Result<RedisUrl, String> {
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (user, password, hostpart) = split_userinfo(rest)?;
    let (hosts, path) = hostpart
        .split_once('/')
        .ok_or("a Sentinel URL needs the master's name: host:port,.../master-name")?;
    let (master, db) = match path.split_once('/') {
        None | Some((_, "")) => (path.trim_end_matches('/'), 0),
        Some((m, db)) => (m, parse_db(db)?),
    };
    let master = decode(master)?;
    if master.is_empty() {
        return Err("empty master name".into());
    }
    let sentinels = hosts
        .split(',')
        .map(|hp| parse_host_port(hp.trim()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut spec = SentinelSpec {
        sentinels,
        master,
        user: None,
        password: None,
    };
    for pair in query_pairs(query) {
        let (k, v) = pair?;
        match k {
            "sentinel_user" => spec.user = Some(decode(v)?),
            "sentinel_password" => spec.password = Some(decode(v)?),
            _ => {
                return Err(format!(
                    "unknown parameter '{k}' (sentinel_user, sentinel_password)"
                ))
            }
        }
    }
    if spec.user.is_some() && spec.password.is_none() {
        return Err("sentinel_user needs sentinel_password".into());
    }
    let (host, port) = spec.sentinels[0].clone();
    Ok(RedisUrl {
        endpoint: Endpoint::Tcp { host, port },
        db,
        user,
        password,
        tls,
        sentinel: Some(spec),
    })
}

fn parse_unix(rest: &str) -> std::result::Result<RedisUrl, String> {
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if !path.starts_with('/') {
        return Err("the socket path must be absolute (unix:///path/to.sock)".into());
    }
    let mut url = RedisUrl {
        endpoint: Endpoint::Unix {
            path: PathBuf::from(decode(path)?),
        },
        db: 0,
        user: None,
        password: None,
        tls: false,
        sentinel: None,
    };
    for pair in query_pairs(query) {
        let (k, v) = pair?;
        match k {
            "db" => url.db = parse_db(v)?,
            "password" => url.password = Some(decode(v)?),
            "user" => url.user = Some(decode(v)?),
            _ => return Err(format!("unknown parameter '{k}' (db, password, user)")),
        }
    }
    if url.user.is_some() && url.password.is_none() {
        return Err("a user needs a password".into());
    }
    Ok(url)
}

/// The `name=value` pairs of a query string (`None`: no query).
fn query_pairs(
    query: Option<&str>,
) -> impl Iterator<Item = std::result::Result<(&str, &str), String>> {
    query.into_iter().flat_map(|q| q.split('&')).map(|pair| {
        pair.split_once('=')
            .ok_or_else(|| format!("expected name=value, got '{pair}'"))
    })
}

fn parse_port(p: &str) -> std::result::Result<u16, String> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("bad port '{p}'")),
    }
}

pub(crate) fn parse_db(db: &str) -> std::result::Result<u32, String> {
    db.parse::<u32>()
        .map_err(|_| format!("bad database number '{db}'"))
}

/// Percent-decoding of userinfo and query values.
pub(crate) fn decode(s: &str) -> std::result::Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad %-escape")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "escaped text is not UTF-8".into())
}

/// Best-effort redaction of a URL that may not parse: hides what sits between the scheme's
/// `//` and the last `@`, and any `password=` value.
pub(crate) fn redact(url: &str) -> String {
    let mut s = url.to_string();
    if let (Some(start), Some(at)) = (s.find("//"), s.rfind('@')) {
        if at > start + 2 {
            let info = &s[start + 2..at];
            let shown = match info.split_once(':') {
                Some((u, _)) => format!("{u}:***"),
                None => "***".to_string(),
            };
            s.replace_range(start + 2..at, &shown);
        }
    }
    if let Some(i) = s.find("password=") {
        let end = s[i..].find('&').map_or(s.len(), |e| i + e);
        s.replace_range(i + "password=".len()..end, "***");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Endpoint {
        Endpoint::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn tcp_forms() {
        let u = RedisUrl::parse("redis://localhost:6380/2").unwrap();
        assert_eq!(u.endpoint, tcp("localhost", 6380));
        assert_eq!((u.db, u.user, u.password), (2, None, None));

        let u = RedisUrl::parse("redis://example.com").unwrap();
        assert_eq!((u.endpoint, u.db), (tcp("example.com", 6379), 0));

        let u = RedisUrl::parse("redis://:s3cr%40t@10.0.0.1:7000/1").unwrap();
        assert_eq!(u.password.as_deref(), Some("s3cr@t"));
        assert_eq!(u.user, None);
        assert_eq!(u.to_string(), "redis://:***@10.0.0.1:7000/1");

        let u = RedisUrl::parse("redis://app:pw@h:1/").unwrap();
        assert_eq!(
            (u.user.as_deref(), u.password.as_deref(), u.db),
            (Some("app"), Some("pw"), 0)
        );
        assert_eq!(u.to_string(), "redis://app:***@h:1/0");

        let u = RedisUrl::parse("redis://[::1]:6390/3").unwrap();
        assert_eq!((u.endpoint.clone(), u.db), (tcp("::1", 6390), 3));
        assert_eq!(u.to_string(), "redis://[::1]:6390/3");
    }

    #[test]
    fn tls_and_sentinel_forms() {
        let u = RedisUrl::parse("rediss://:pw@redis.example:6380/1").unwrap();
        assert!(u.tls && u.sentinel.is_none());
        assert_eq!((u.endpoint.clone(), u.db), (tcp("redis.example", 6380), 1));
        assert_eq!(u.to_string(), "rediss://:***@redis.example:6380/1");

        let u = RedisUrl::parse(
            "redis+sentinel://:pw@10.0.0.1:26379,[::1]:26380,s3/my%20master/2\
             ?sentinel_user=mon&sentinel_password=sp",
        )
        .unwrap();
        assert!(!u.tls);
        let s = u.sentinel.as_ref().unwrap();
        assert_eq!(s.master, "my master");
        assert_eq!(
            s.sentinels,
            vec![
                ("10.0.0.1".to_string(), 26379),
                ("::1".to_string(), 26380),
                ("s3".to_string(), 6379)
            ]
        );
        assert_eq!(
            (s.user.as_deref(), s.password.as_deref()),
            (Some("mon"), Some("sp"))
        );
        assert_eq!((u.db, u.password.as_deref()), (2, Some("pw")));
        let shown = u.to_string();
        assert!(!shown.contains("pw") && !shown.contains("sp"), "{shown}");
        assert!(
            shown.starts_with("redis+sentinel://:***@10.0.0.1:26379,[::1]:26380"),
            "{shown}"
        );

        let u = RedisUrl::parse("rediss+sentinel://127.0.0.1:26379/mymaster").unwrap();
        assert!(u.tls);
        assert_eq!(u.db, 0);
        assert_eq!(u.sentinel.unwrap().master, "mymaster");
    }

    #[test]
    fn unix_forms() {
        let u = RedisUrl::parse("unix:///run/redis.sock?db=4&password=pw&user=bob").unwrap();
        assert_eq!(
            u.endpoint,
            Endpoint::Unix {
                path: "/run/redis.sock".into()
            }
        );
        assert_eq!(u.db, 4);
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(u.user.as_deref(), Some("bob"));
        assert!(!format!("{u} {u:?}").contains("pw&"));
        let u = RedisUrl::parse("unix:///tmp/r.sock").unwrap();
        assert_eq!(u.db, 0);
    }

    #[test]
    fn bad_urls_name_the_option_and_hide_the_password() {
        for bad in [
            "http://localhost",
            "rediss://h:1/0?x=1",
            "redis+sentinel://h:1",
            "redis+sentinel://h:1,h:x/m",
            "redis+sentinel://h:1/",
            "redis+sentinel://h:1/m/x",
            "redis+sentinel://h:1/m?color=red",
            "redis+sentinel://h:1/m?sentinel_user=u",
            "redis://",
            "redis://:6379/0",
            "redis://h:0/0",
            "redis://h:99999/0",
            "redis://h:port/0",
            "redis://h:1/x",
            "redis://user@h:1/0",
            "redis://h:1/0?db=2",
            "unix://relative.sock",
            "unix:///s.sock?db=x",
            "unix:///s.sock?color=red",
            "unix:///s.sock?user=u",
        ] {
            let e = RedisUrl::parse(bad).unwrap_err();
            assert_eq!(e.code(), crate::error::status::SZ_ERR_CONFIG, "{bad}");
            assert!(e.to_string().contains("redis_url"), "{e}");
        }
        let e = RedisUrl::parse("redis://u:topsecret@h:bad/0").unwrap_err();
        assert!(!e.to_string().contains("topsecret"), "{e}");
        let e = RedisUrl::parse("unix:///s?password=topsecret&db=z").unwrap_err();
        assert!(!e.to_string().contains("topsecret"), "{e}");
    }
}
