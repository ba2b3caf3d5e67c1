"""SmartCacheConfig: defaults equal the library's, bad values named at construction."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smartcache import (ConfigError, SmartCache, SmartCacheConfig,
                        library_defaults)


def test_defaults_equal_library_defaults() -> None:
    ours = dict(SmartCacheConfig().options())
    assert ours == library_defaults()


@pytest.mark.parametrize("env", [
    {"XDG_CACHE_HOME": "/xdg/cache", "HOME": "/home/u"},
    {"XDG_CACHE_HOME": "relative/ignored", "HOME": "/home/u/"},
    {"HOME": "/home/u"},
    {"XDG_CACHE_HOME": "", "HOME": ""},
    {},
])
def test_default_disk_path_is_per_user_and_the_library_s(env: dict) -> None:
    # A fresh interpreter per environment: both sides read the variables when asked.
    code = ("import json; from smartcache import SmartCacheConfig, library_defaults; "
            "print(json.dumps([SmartCacheConfig().disk_path, library_defaults()['disk_path']]))")
    base = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "HOME")}
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, check=True,
                         capture_output=True, text=True).stdout
    ours, library = json.loads(out)
    assert ours == library
    if env.get("XDG_CACHE_HOME", "").startswith("/"):
        assert ours == env["XDG_CACHE_HOME"] + "/smartcache"
    elif env.get("HOME", "").startswith("/"):
        assert ours == env["HOME"].rstrip("/") + "/.cache/smartcache"
    else:
        assert ours == f"/tmp/smartcache-{os.geteuid()}"


def test_guide_fields_exist_with_guide_types() -> None:
    c = SmartCacheConfig()
    for name, typ in [("memory_capacity", int), ("memory_ttl", int),
                      ("compression_enabled", bool), ("jemalloc_enabled", bool),
                      ("redis_enabled", bool), ("redis_url", str), ("redis_ttl", int),
                      ("disk_enabled", bool), ("disk_path", str), ("disk_ttl", int),
                      ("enable_stats", bool), ("auto_expire_interval", int)]:
        assert isinstance(getattr(c, name), typ), name
    extra = {"memory_max_bytes", "compression_min_size", "redis_timeout_ms", "redis_pool_size",
             "redis_key_prefix", "disk_max_size", "max_value_size"}
    assert extra <= {f.name for f in dataclasses.fields(c)}


@pytest.mark.parametrize("field,value", [
    ("memory_capacity", "1000"), ("memory_ttl", "5m"), ("compression_enabled", 1),
    ("redis_url", 6379), ("disk_path", 3), ("max_value_size", 1.5),
    ("redis_key_prefix", b"x"), ("memory_capacity", True),
])
def test_wrong_types_are_type_errors_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(TypeError, match=field):
        SmartCacheConfig(**{field: value})


@pytest.mark.parametrize("field,value,fragment", [
    ("memory_capacity", 0, "1..=4294967296 items"),
    ("memory_capacity", 2**64 - 1, "1..=4294967296 items"),
    ("memory_max_bytes", 100, "0 \\(no byte bound\\) or 4096"),
    ("memory_ttl", -1, "negative"),
    ("memory_ttl", 1.5, "whole number"),
    ("redis_url", "http://x", "redis://"),
    ("redis_pool_size", 100000, "1024"),
    ("disk_path", "", "directory"),
    ("disk_max_size", "12X", "K, M or G"),
    ("redis_timeout_ms", 0, "1..=600000"),
    ("redis_timeout_ms", 2**64 - 1, "1..=600000"),
    ("disk_max_size", 1 << 40, "65536..="),
    ("disk_path", "/" + "x" * (1 << 20), "4095 bytes"),
])
def test_bad_values_are_config_errors_naming_the_field(field: str, value: object,
                                                       fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        SmartCacheConfig(**{field: value})
    assert info.value.field == field
    assert field in str(info.value)
    assert isinstance(info.value, ValueError)


def test_sizes_take_suffixes_and_paths_take_pathlike(tmp_path: Path) -> None:
    c = SmartCacheConfig(disk_max_size="64M", memory_max_bytes="8K", disk_path=tmp_path,
                         memory_ttl=10.0)
    opts = dict(c.options())
    assert opts["disk_max_size"] == "64M" and opts["disk_path"] == str(tmp_path)
    assert opts["memory_ttl"] == "10"
    with SmartCache(c) as cache:
        cache.set("k", 1)
        assert cache.get("k") == 1
        assert cache.get_stats().memory_max_bytes == 8192


def test_mutation_after_construction_is_checked_at_open() -> None:
    c = SmartCacheConfig()
    c.memory_capacity = -5
    with pytest.raises(ConfigError, match="memory_capacity"):
        SmartCache(c)


def test_status_codes_map_to_exception_classes() -> None:
    from smartcache import errors as e
    assert isinstance(e.error_for(-6, "config: disk_enabled: the disk tier (L3) is not "
                                      "available in this build"), e.TierUnavailableError)
    assert type(e.error_for(-6, "bad value")) is e.ConfigError
    assert type(e.error_for(-2, "too large: key of 70000 bytes")) is e.KeyTooLargeError
    assert type(e.error_for(-2, "too large: value of 9 bytes")) is e.ValueTooLargeError
    assert isinstance(e.error_for(-4, "x"), OSError)
    assert isinstance(e.error_for(-3, "x"), MemoryError)
    assert type(e.error_for(-5, "x")) is e.BackendError
    assert type(e.error_for(-99, "x")) is e.InternalError
    err = e.error_for(-1, "key is empty")
    assert isinstance(err, e.InvalidArgumentError) and err.code == -1
    assert str(err) == "key is empty [SZ_ERR_INVALID]"


def test_cache_exposes_its_config() -> None:
    cfg = SmartCacheConfig(memory_capacity=123, jemalloc_enabled=False)
    with SmartCache(cfg) as cache:
        assert cache.config is cfg
        assert cache.get_stats().capacity == 123
        assert cache.get_stats().allocator == "system"
    with SmartCache() as cache:
        assert cache.config == SmartCacheConfig()
        assert cache.get_stats().allocator == "jemalloc"
