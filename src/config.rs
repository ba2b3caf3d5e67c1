//! Configuration: every option of the guide's `SmartCacheConfig` plus what a deployment needs.
//!
//! Options are set by name from strings (the C ABI and the bindings all go through
//! [`Config::set`]), so one parser serves every language. TTLs are seconds, as in the guide;
//! a TTL of 0 means "no expiry" for that tier.

use crate::error::{Error, Result};
use crate::sign::Secret;
use std::path::PathBuf;

/// Longest key accepted by every tier (the disk record stores the key length in 16 bits).
pub const MAX_KEY_LEN: usize = 65_535;

/// The range every option is checked against at [`Config::set`] (docs/guide.md lists them, as
/// does the comment of `sz_config_set`). Each bound is what the library can honour without
/// aborting, overflowing or silently giving up a tier, with room to spare for real use.
pub mod bounds {
    use crate::tier::MAX_TTL;

    /// memory_capacity: the ghost queue takes 4 bytes per item of capacity at open, so 2^32
    /// items asks for 16 GiB up front (an allocation that fails is SZ_ERR_NOMEM, not an abort).
    pub const MEMORY_CAPACITY_MAX: u64 = 1 << 32;
    /// memory_max_bytes: 0 (no byte bound) or within these.
    pub const MEMORY_MAX_BYTES_MIN: u64 = 4096;
    pub const MEMORY_MAX_BYTES_MAX: u64 = 1 << 48;
    /// Every TTL option, seconds: a century, what every tier can hold as a deadline.
    pub const TTL_MAX_SECS: u64 = MAX_TTL.as_secs();
    /// compression_min_size: LZ4 takes inputs of up to ~2 GiB; larger values are never tried.
    pub const COMPRESSION_MIN_SIZE_MAX: u64 = u32::MAX as u64;
    /// redis_timeout_ms: ten minutes is already far past what a cache call should wait.
    pub const REDIS_TIMEOUT_MS_MAX: u64 = 600_000;
    pub const REDIS_POOL_SIZE_MAX: u64 = 1024;
    /// Longest redis_url and disk_path, bytes (PATH_MAX including its NUL is 4096).
    pub const TEXT_MAX: usize = 4095;
    /// Longest redis_key_prefix, bytes: it is repeated in every key sent to Redis.
    pub const KEY_PREFIX_MAX: usize = 1024;
    /// disk_max_size: the format's smallest layout, and the largest whose segments (1/64 of
    /// the file each) still fit the 32-bit segment offsets of the format.
    pub const DISK_MAX_SIZE_MIN: u64 = crate::disk::format::MIN_FILE_SIZE;
    pub const DISK_MAX_SIZE_MAX: u64 = 1 << 38;
    /// auto_expire_interval, seconds (0 = off): at least one pass a day.
    pub const AUTO_EXPIRE_INTERVAL_MAX: u64 = 86_400;
    /// max_value_size: 2 GiB, so a value and its record or frame header fit 32-bit lengths.
    pub const MAX_VALUE_SIZE_MAX: u64 = 1 << 31;
    /// value_secret, value_secret_previous: empty (off) or this many bytes. 16 bytes is the
    /// least that is not guessable by brute force offline; 4 KiB is more than any key file.
    pub const SECRET_MIN: usize = crate::sign::MIN_SECRET_LEN;
    pub const SECRET_MAX: usize = crate::sign::MAX_SECRET_LEN;
}

/// What values an option accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A whole number in `min..=max` of `unit`; `zero`, when set, also accepts 0 with that
    /// meaning.
    Count {
        min: u64,
        max: u64,
        unit: &'static str,
        zero: Option<&'static str>,
    },
    /// A byte size (optional K/M/G suffix) in `min..=max`; `zero` as for `Count`.
    Bytes {
        min: u64,
        max: u64,
        zero: Option<&'static str>,
    },
    /// Text of `min..=max` bytes, describing `what`.
    Text {
        min: usize,
        max: usize,
        what: &'static str,
    },
    /// true/false, 1/0, yes/no, on/off.
    Boolean,
    /// Empty (off) or `min..=max` bytes taken verbatim (not trimmed); never quoted back.
    Secret { min: usize, max: usize },
}

/// The values option `name` accepts: the one table `set` checks against and the tests probe.
/// None for an unknown name. (A secret's bounds are listed here but checked by its own parser,
/// which never quotes the value.)
pub fn limit_of(name: &str) -> Option<Limit> {
    use bounds::*;
    let seconds = |zero| Limit::Count {
        min: 1,
        max: TTL_MAX_SECS,
        unit: "seconds",
        zero: Some(zero),
    };
    Some(match name {
        "memory_capacity" => Limit::Count {
            min: 1,
            max: MEMORY_CAPACITY_MAX,
            unit: "items",
            zero: None,
        },
        "memory_max_bytes" => Limit::Bytes {
            min: MEMORY_MAX_BYTES_MIN,
            max: MEMORY_MAX_BYTES_MAX,
            zero: Some("no byte bound"),
        },
        "memory_ttl" | "redis_ttl" | "disk_ttl" => seconds("no expiry"),
        "compression_min_size" => Limit::Bytes {
            min: 0,
            max: COMPRESSION_MIN_SIZE_MAX,
            zero: None,
        },
        "redis_timeout_ms" => Limit::Count {
            min: 1,
            max: REDIS_TIMEOUT_MS_MAX,
            unit: "milliseconds",
            zero: None,
        },
        "redis_pool_size" => Limit::Count {
            min: 1,
            max: REDIS_POOL_SIZE_MAX,
            unit: "connections",
            zero: None,
        },
        "redis_url" => Limit::Text {
            min: 1,
            max: TEXT_MAX,
            what: "a redis://, rediss://, redis+cluster://, rediss+cluster://, redis+sentinel://, rediss+sentinel:// or unix:// URL",
        },
        "disk_path" => Limit::Text {
            min: 1,
            max: TEXT_MAX,
            what: "a directory path",
        },
        "redis_tls_ca_file" | "redis_tls_cert_file" | "redis_tls_key_file" => Limit::Text {
            min: 0,
            max: TEXT_MAX,
            what: "a PEM file path (empty = unset)",
        },
        "redis_tls_server_name" => Limit::Text {
            min: 0,
            max: 253,
            what: "a DNS name or IP address (empty = the URL's host)",
        },
        "redis_key_prefix" => Limit::Text {
            min: 0,
            max: KEY_PREFIX_MAX,
            what: "a key prefix",
        },
        "disk_max_size" => Limit::Bytes {
            min: DISK_MAX_SIZE_MIN,
            max: DISK_MAX_SIZE_MAX,
            zero: None,
        },
        "auto_expire_interval" => Limit::Count {
            min: 1,
            max: AUTO_EXPIRE_INTERVAL_MAX,
            unit: "seconds",
            zero: Some("off"),
        },
        "max_value_size" => Limit::Bytes {
            min: 1,
            max: MAX_VALUE_SIZE_MAX,
            zero: None,
        },
        "compression_enabled"
        | "jemalloc_enabled"
        | "redis_enabled"
        | "redis_invalidation"
        | "disk_enabled"
        | "enable_stats" => Limit::Boolean,
        "value_secret" | "value_secret_previous" => Limit::Secret {
            min: SECRET_MIN,
            max: SECRET_MAX,
        },
        _ => return None,
    })
}

/// The default disk_path, private to the effective user: `$XDG_CACHE_HOME/smartcache`, else
/// `$HOME/.cache/smartcache`, else `/tmp/smartcache-<euid>`. Relative or empty variables are
/// ignored (as the XDG spec asks). A fixed name in world-writable /tmp could be pre-created by
/// another user; the disk tier refuses a directory it does not own (see `disk::file`), so the
/// default must be one that only this user would create.
pub fn default_disk_path() -> PathBuf {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(xdg) = absolute("XDG_CACHE_HOME") {
        return xdg.join("smartcache");
    }
    if let Some(home) = absolute("HOME") {
        return home.join(".cache").join("smartcache");
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    PathBuf::from(format!("/tmp/smartcache-{euid}"))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// L1 bound in items.
    pub memory_capacity: usize,
    /// L1 bound in bytes of key + value (0 = bounded by items only).
    pub memory_max_bytes: usize,
    /// L1 default TTL, seconds (0 = none).
    pub memory_ttl: u64,
    pub compression_enabled: bool,
    /// Values this long or longer are tried with LZ4.
    pub compression_min_size: usize,
    /// L1 storage comes from a dedicated jemalloc arena.
    pub jemalloc_enabled: bool,

    pub redis_enabled: bool,
    pub redis_url: String,
    pub redis_ttl: u64,
    pub redis_timeout_ms: u64,
    pub redis_pool_size: usize,
    /// None = derived (see the Redis tier), so two caches do not share keys unless told to.
    pub redis_key_prefix: Option<String>,
    /// `rediss://` settings (see `redis::tls`); None = unset.
    pub redis_tls_ca_file: Option<String>,
    pub redis_tls_cert_file: Option<String>,
    pub redis_tls_key_file: Option<String>,
    pub redis_tls_server_name: Option<String>,
    /// Keep the memory tier coherent with other hosts' writes through Redis's invalidation
    /// messages (`CLIENT TRACKING ... BCAST`, see `redis::invalidation`).
    pub redis_invalidation: bool,

    pub disk_enabled: bool,
    /// A directory; the tier keeps one file in it.
    pub disk_path: PathBuf,
    pub disk_max_size: u64,
    pub disk_ttl: u64,

    pub enable_stats: bool,
    /// Seconds between background expiry passes (0 = off).
    pub auto_expire_interval: u64,
    pub max_value_size: usize,

    /// Signs every record written to Redis and disk (see `sign`); empty = unsigned.
    pub value_secret: Secret,
    /// Also accepted when verifying (never used to sign), for rotating `value_secret`.
    pub value_secret_previous: Secret,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            memory_capacity: 1000,
            memory_max_bytes: 0,
            memory_ttl: 300,
            compression_enabled: true,
            compression_min_size: 1024,
            jemalloc_enabled: true,
            redis_enabled: false,
            redis_url: "redis://localhost:6379/0".into(),
            redis_ttl: 1800,
            redis_timeout_ms: 100,
            redis_pool_size: 4,
            redis_key_prefix: None,
            redis_tls_ca_file: None,
            redis_tls_cert_file: None,
            redis_tls_key_file: None,
            redis_tls_server_name: None,
            redis_invalidation: false,
            disk_enabled: false,
            disk_path: default_disk_path(),
            disk_max_size: 256 << 20,
            disk_ttl: 3600,
            enable_stats: true,
            auto_expire_interval: 60,
            max_value_size: 16 << 20,
            value_secret: Secret::default(),
            value_secret_previous: Secret::default(),
        }
    }
}

fn unset_if_empty(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_string())
}

impl Config {
    /// The TLS options for a `rediss://` URL.
    pub fn redis_tls(&self) -> crate::redis::tls::TlsOptions {
        crate::redis::tls::TlsOptions {
            ca_file: self.redis_tls_ca_file.clone(),
            cert_file: self.redis_tls_cert_file.clone(),
            key_file: self.redis_tls_key_file.clone(),
            server_name: self.redis_tls_server_name.clone(),
        }
    }
}

/// Every option name, in the order `sz_config_set` documents them.
pub const OPTION_NAMES: &[&str] = &[
    "memory_capacity",
    "memory_max_bytes",
    "memory_ttl",
    "compression_enabled",
    "compression_min_size",
    "jemalloc_enabled",
    "redis_enabled",
    "redis_url",
    "redis_ttl",
    "redis_timeout_ms",
    "redis_pool_size",
    "redis_key_prefix",
    "redis_tls_ca_file",
    "redis_tls_cert_file",
    "redis_tls_key_file",
    "redis_tls_server_name",
    "redis_invalidation",
    "disk_enabled",
    "disk_path",
    "disk_max_size",
    "disk_ttl",
    "enable_stats",
    "auto_expire_interval",
    "max_value_size",
    "value_secret",
    "value_secret_previous",
];

impl Config {
    /// Sets one option from its text form, checked against its bound (see [`limit_of`]). The
    /// error names the option, the bad value (shortened when long) and the accepted range.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let v = value.trim();
        // An option without an entry in `limit_of` checks its value in its own arm below.
        if let Some(Limit::Text { min, max, what }) = limit_of(name) {
            if !(min..=max).contains(&v.len()) {
                return Err(bad(
                    name,
                    v,
                    &format!("expected {what} of {min}..={max} bytes"),
                ));
            }
        }
        match name {
            "memory_capacity" => self.memory_capacity = number(name, v)? as usize,
            "memory_max_bytes" => self.memory_max_bytes = number(name, v)? as usize,
            "memory_ttl" => self.memory_ttl = number(name, v)?,
            "compression_enabled" => self.compression_enabled = boolean(name, v)?,
            "compression_min_size" => self.compression_min_size = number(name, v)? as usize,
            "jemalloc_enabled" => self.jemalloc_enabled = boolean(name, v)?,
            "redis_enabled" => self.redis_enabled = boolean(name, v)?,
            "redis_url" => {
                // Parsed now, so a bad URL is refused where it is set, not later at open.
                crate::redis::check_url(v)?;
                self.redis_url = v.to_string()
            }
            "redis_ttl" => self.redis_ttl = number(name, v)?,
            "redis_timeout_ms" => self.redis_timeout_ms = number(name, v)?,
            "redis_pool_size" => self.redis_pool_size = number(name, v)? as usize,
            "redis_key_prefix" => {
                self.redis_key_prefix = if v.is_empty() {
                    None
                } else {
                    Some(v.to_string())
                }
            }
            "redis_tls_ca_file" => self.redis_tls_ca_file = unset_if_empty(v),
            "redis_tls_cert_file" => self.redis_tls_cert_file = unset_if_empty(v),
            "redis_tls_key_file" => self.redis_tls_key_file = unset_if_empty(v),
            "redis_tls_server_name" => self.redis_tls_server_name = unset_if_empty(v),
            "redis_invalidation" => self.redis_invalidation = boolean(name, v)?,
            "disk_enabled" => self.disk_enabled = boolean(name, v)?,
            "disk_path" => self.disk_path = PathBuf::from(v),
            "disk_max_size" => self.disk_max_size = number(name, v)?,
            "disk_ttl" => self.disk_ttl = number(name, v)?,
            "enable_stats" => self.enable_stats = boolean(name, v)?,
            "auto_expire_interval" => self.auto_expire_interval = number(name, v)?,
            "max_value_size" => self.max_value_size = number(name, v)? as usize,
            // Taken as given, untrimmed: every byte is part of the secret.
            "value_secret" => self.value_secret = Secret::parse(name, value)?,
            "value_secret_previous" => self.value_secret_previous = Secret::parse(name, value)?,
            _ => {
                return Err(Error::config(format!(
                    "unknown option '{}'",
                    shortened(name)
                )))
            }
        }
        Ok(())
    }

    /// Reads one option back in the text form `set` accepts.
    pub fn get(&self, name: &str) -> Result<String> {
        Ok(match name {
            "memory_capacity" => self.memory_capacity.to_string(),
            "memory_max_bytes" => self.memory_max_bytes.to_string(),
            "memory_ttl" => self.memory_ttl.to_string(),
            "compression_enabled" => self.compression_enabled.to_string(),
            "compression_min_size" => self.compression_min_size.to_string(),
            "jemalloc_enabled" => self.jemalloc_enabled.to_string(),
            "redis_enabled" => self.redis_enabled.to_string(),
            "redis_url" => self.redis_url.clone(),
            "redis_ttl" => self.redis_ttl.to_string(),
            "redis_timeout_ms" => self.redis_timeout_ms.to_string(),
            "redis_pool_size" => self.redis_pool_size.to_string(),
            "redis_key_prefix" => self.redis_key_prefix.clone().unwrap_or_default(),
            "redis_tls_ca_file" => self.redis_tls_ca_file.clone().unwrap_or_default(),
            "redis_tls_cert_file" => self.redis_tls_cert_file.clone().unwrap_or_default(),
            "redis_tls_key_file" => self.redis_tls_key_file.clone().unwrap_or_default(),
            "redis_tls_server_name" => self.redis_tls_server_name.clone().unwrap_or_default(),
            "redis_invalidation" => self.redis_invalidation.to_string(),
            "disk_enabled" => self.disk_enabled.to_string(),
            "disk_path" => self.disk_path.display().to_string(),
            "disk_max_size" => self.disk_max_size.to_string(),
            "disk_ttl" => self.disk_ttl.to_string(),
            "enable_stats" => self.enable_stats.to_string(),
            "auto_expire_interval" => self.auto_expire_interval.to_string(),
            "max_value_size" => self.max_value_size.to_string(),
            "value_secret" => self.value_secret.shown(),
            "value_secret_previous" => self.value_secret_previous.shown(),
            _ => {
                return Err(Error::config(format!(
                    "unknown option '{}'",
                    shortened(name)
                )))
            }
        })
    }

    /// Checks the options against each other; called by open.
    pub fn validate(&self) -> Result<()> {
        // Each option was checked against its own bound by `set`; a Config built in Rust may
        // bypass `set`, so the numeric bounds that protect open are checked again here (text
        // options are only read back redacted or lossily, and their bounds guard no
        // allocation).
        for name in OPTION_NAMES {
            if let Some(Limit::Count { .. } | Limit::Bytes { .. }) = limit_of(name) {
                number(name, &self.get(name)?)?;
            }
        }
        if self.redis_invalidation && !self.redis_enabled {
            return Err(Error::config(
                "redis_invalidation is set without redis_enabled: the invalidations come from \
                 Redis (turn redis_enabled on too)",
            ));
        }
        if self.redis_invalidation
            && crate::redis::cluster::url::ClusterUrl::is_cluster(&self.redis_url)
        {
            return Err(Error::config(
                "redis_invalidation is not available with a redis+cluster:// URL: Redis tracks \
                 keys per node, so one subscription cannot hear every master's writes (turn \
                 redis_invalidation off, or point redis_url at a single server)",
            ));
        }
        if self.value_secret_previous.is_set() && !self.value_secret.is_set() {
            return Err(Error::config(
                "value_secret_previous is set without value_secret: set the new secret too \
                 (the previous one only verifies)",
            ));
        }
        Ok(())
    }
}

/// At most this much of a rejected name or value is quoted back in a message.
const QUOTE_MAX: usize = 64;

/// `s`, or its first QUOTE_MAX bytes (on a char boundary) and how long it was.
pub(crate) fn shortened(s: &str) -> String {
    if s.len() <= QUOTE_MAX {
        return s.to_string();
    }
    let mut end = QUOTE_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}

fn bad(name: &str, value: &str, why: &str) -> Error {
    Error::config(format!(
        "bad value '{}' for option '{name}': {why}",
        shortened(value)
    ))
}

fn boolean(name: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(bad(name, v, "expected true or false")),
    }
}

/// A numeric option's value, parsed as its [`Limit`] says and checked against its range.
fn number(name: &str, v: &str) -> Result<u64> {
    let (n, min, max, unit, zero_allowed) = match limit_of(name) {
        Some(Limit::Count {
            min,
            max,
            unit,
            zero,
        }) => {
            let n = v.parse::<u64>().map_err(|_| {
                bad(
                    name,
                    v,
                    &format!("expected a whole number, {min}..={max} {unit}"),
                )
            })?;
            (n, min, max, unit, zero)
        }
        Some(Limit::Bytes { min, max, zero }) => (size(name, v)?, min, max, "bytes", zero),
        _ => return Err(Error::Internal(format!("option '{name}' is not a number"))),
    };
    if (min..=max).contains(&n) || (n == 0 && zero_allowed.is_some()) {
        return Ok(n);
    }
    let why = match zero_allowed {
        Some(meaning) => format!("expected 0 ({meaning}) or {min}..={max} {unit}"),
        None => format!("expected {min}..={max} {unit}"),
    };
    Err(bad(name, v, &why))
}

/// A byte size: a whole number with an optional K, M or G suffix (powers of 1024).
fn size(name: &str, v: &str) -> Result<u64> {
    let upper = v.to_ascii_uppercase();
    let digits = upper.trim_end_matches(['B', 'I']);
    let (num, shift) = match digits.chars().last() {
        Some('K') => (&digits[..digits.len() - 1], 10),
        Some('M') => (&digits[..digits.len() - 1], 20),
        Some('G') => (&digits[..digits.len() - 1], 30),
        _ if digits.len() == upper.len() => (digits, 0),
        _ => return Err(bad(name, v, "expected bytes, optionally with K, M or G")),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| bad(name, v, "expected bytes, optionally with K, M or G"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| bad(name, v, "too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_round_trips_through_get() {
        let mut c = Config::default();
        for name in OPTION_NAMES {
            let v = c.get(name).unwrap();
            c.set(name, &v)
                .unwrap_or_else(|e| panic!("{name}={v}: {e}"));
        }
        assert_eq!(c, Config::default());
    }

    #[test]
    fn open_refuses_a_config_built_past_the_bounds_without_set() {
        for broken in [
            Config {
                redis_timeout_ms: u64::MAX,
                ..Config::default()
            },
            Config {
                memory_capacity: usize::MAX,
                ..Config::default()
            },
            Config {
                memory_max_bytes: 100,
                ..Config::default()
            },
        ] {
            let e = broken.validate().unwrap_err();
            assert_eq!(e.code(), -6, "{e}");
        }
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_name_is_named() {
        let e = Config::default().set("memry_ttl", "1").unwrap_err();
        assert_eq!(e.code(), -6);
        assert!(e.to_string().contains("'memry_ttl'"));
    }

    #[test]
    fn bad_values_name_option_and_value() {
        let mut c = Config::default();
        for (n, v) in [
            ("memory_capacity", "0"),
            ("memory_capacity", "-3"),
            ("memory_ttl", "soon"),
            ("jemalloc_enabled", "maybe"),
            ("disk_max_size", "12X"),
            ("redis_url", "http://x"),
            ("redis_url", "redis://127.0.0.1:99999/0"),
            ("redis_pool_size", "100000"),
            ("disk_path", ""),
        ] {
            let e = c.set(n, v).unwrap_err().to_string();
            assert!(e.contains(n) && e.contains(v), "{e}");
        }
        assert_eq!(c, Config::default(), "a failed set changes nothing");
    }

    #[test]
    fn sizes_take_suffixes() {
        let mut c = Config::default();
        c.set("disk_max_size", "64M").unwrap();
        assert_eq!(c.disk_max_size, 64 << 20);
        c.set("memory_max_bytes", "8KiB").unwrap();
        assert_eq!(c.memory_max_bytes, 8192);
        c.set("memory_max_bytes", "10g").unwrap();
        assert_eq!(c.memory_max_bytes, 10 << 30);
        c.set("compression_min_size", "512").unwrap();
        c.set("max_value_size", "1M").unwrap();
        assert_eq!(c.max_value_size, 1 << 20);
        assert!(c.set("max_value_size", "0").is_err());
        assert_eq!(c.compression_min_size, 512);
    }

    #[test]
    fn booleans_accept_common_spellings() {
        let mut c = Config::default();
        for (v, want) in [("TRUE", true), ("0", false), ("on", true), ("no", false)] {
            c.set("disk_enabled", v).unwrap();
            assert_eq!(c.disk_enabled, want);
        }
    }
}
