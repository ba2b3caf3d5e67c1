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
            disk_enabled: false,
            disk_path: PathBuf::from("/tmp/smartcache"),
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
    /// Sets one option from its text form. The error names the option and the bad value.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let v = value.trim();
        match name {
            "memory_capacity" => self.memory_capacity = positive(name, v)?,
            "memory_max_bytes" => self.memory_max_bytes = size(name, v)?,
            "memory_ttl" => self.memory_ttl = seconds(name, v)?,
            "compression_enabled" => self.compression_enabled = boolean(name, v)?,
            "compression_min_size" => self.compression_min_size = size(name, v)?,
            "jemalloc_enabled" => self.jemalloc_enabled = boolean(name, v)?,
            "redis_enabled" => self.redis_enabled = boolean(name, v)?,
            "redis_url" => {
                // Parsed now, so a bad URL is refused where it is set, not later at open.
                crate::redis::url::RedisUrl::parse(v)?;
                self.redis_url = v.to_string()
            }
            "redis_ttl" => self.redis_ttl = seconds(name, v)?,
            "redis_timeout_ms" => self.redis_timeout_ms = positive::<u64>(name, v)?,
            "redis_pool_size" => {
                let n: usize = positive(name, v)?;
                if n > 1024 {
                    return Err(bad(name, value, "at most 1024 connections"));
                }
                self.redis_pool_size = n
            }
            "redis_key_prefix" => {
                self.redis_key_prefix = if v.is_empty() {
                    None
                } else {
                    Some(v.to_string())
                }
            }
            "disk_enabled" => self.disk_enabled = boolean(name, v)?,
            "disk_path" => {
                if v.is_empty() {
                    return Err(bad(name, value, "expected a directory path"));
                }
                self.disk_path = PathBuf::from(v)
            }
            "disk_max_size" => self.disk_max_size = size(name, v)? as u64,
            "disk_ttl" => self.disk_ttl = seconds(name, v)?,
            "enable_stats" => self.enable_stats = boolean(name, v)?,
            "auto_expire_interval" => self.auto_expire_interval = seconds(name, v)?,
            "max_value_size" => {
                self.max_value_size = match size(name, v)? {
                    0 => return Err(bad(name, value, "expected a size above 0")),
                    n => n,
                }
            }
            // Taken as given, untrimmed: every byte is part of the secret.
            "value_secret" => self.value_secret = Secret::parse(name, value)?,
            "value_secret_previous" => self.value_secret_previous = Secret::parse(name, value)?,
            _ => return Err(Error::config(format!("unknown option '{name}'"))),
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
            "disk_enabled" => self.disk_enabled.to_string(),
            "disk_path" => self.disk_path.display().to_string(),
            "disk_max_size" => self.disk_max_size.to_string(),
            "disk_ttl" => self.disk_ttl.to_string(),
            "enable_stats" => self.enable_stats.to_string(),
            "auto_expire_interval" => self.auto_expire_interval.to_string(),
            "max_value_size" => self.max_value_size.to_string(),
            "value_secret" => self.value_secret.shown(),
            "value_secret_previous" => self.value_secret_previous.shown(),
            _ => return Err(Error::config(format!("unknown option '{name}'"))),
        })
    }

    /// Checks the options against each other; called by open.
    pub fn validate(&self) -> Result<()> {
        if self.max_value_size > u32::MAX as usize {
            return Err(Error::config("max_value_size must be below 4 GiB"));
        }
        if self.memory_max_bytes != 0 && self.memory_max_bytes < 4096 {
            return Err(Error::config(
                "memory_max_bytes must be 0 (no byte bound) or at least 4096",
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

fn bad(name: &str, value: &str, why: &str) -> Error {
    Error::config(format!("bad value '{value}' for option '{name}': {why}"))
}

fn boolean(name: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(bad(name, v, "expected true or false")),
    }
}

fn seconds(name: &str, v: &str) -> Result<u64> {
    v.parse::<u64>().map_err(|_| {
        bad(
            name,
            v,
            "expected a whole number of seconds (0 = no expiry)",
        )
    })
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(name: &str, v: &str) -> Result<T> {
    match v.parse::<T>() {
        Ok(n) if n > T::default() => Ok(n),
        _ => Err(bad(name, v, "expected a whole number above 0")),
    }
}

/// A byte size: a whole number with an optional K, M or G suffix (powers of 1024).
fn size(name: &str, v: &str) -> Result<usize> {
    let upper = v.to_ascii_uppercase();
    let digits = upper.trim_end_matches(['B', 'I']);
    let (num, shift) = match digits.chars().last() {
        Some('K') => (&digits[..digits.len() - 1], 10),
        Some('M') => (&digits[..digits.len() - 1], 20),
        Some('G') => (&digits[..digits.len() - 1], 30),
        _ if digits.len() == upper.len() => (digits, 0),
        _ => return Err(bad(name, v, "expected bytes, optionally with K, M or G")),
    };
    let n: usize = num
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
        c.set("memory_max_bytes", "2KiB").unwrap();
        assert_eq!(c.memory_max_bytes, 2048);
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
