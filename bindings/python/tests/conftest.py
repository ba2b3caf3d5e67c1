"""Shared fixtures. The library is found as in production (SMARTCACHE_LIB, set by `make
test-python`, or the repository's build/lib)."""

from __future__ import annotations

import os
import random
import uuid
from typing import Iterator

import pytest

from smartcache import (ConfigError, SmartCache, SmartCacheConfig, TierUnavailableError,
                        set_default_cache)
from smartcache._native import SZ_ERR_CONFIG

TIER_UNAVAILABLE = "not available in this build"

# Sizes around the receive buffer's steps (4 KiB) and beyond it (MiBs).
KIB = 1024
MIB = 1024 * 1024
SIZES = [0, 1, 4095, 4096, 4097, MIB, 3 * MIB]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "checkout: checks files of the repository (the C header, the generated "
        "declarations, the examples) rather than the package; `make test-wheel`, which runs "
        "this suite outside the repository against an installed wheel, leaves these out")


def open_or_skip(config: SmartCacheConfig, **kwargs: object) -> SmartCache:
    """Opens a cache; skips the test only when the library says a tier it needs is not in
    this build (SZ_ERR_CONFIG, "not available in this build"). Any other failure fails."""
    try:
        return SmartCache(config, **kwargs)  # type: ignore[arg-type]
    except ConfigError as e:
        if e.code == SZ_ERR_CONFIG and TIER_UNAVAILABLE in e.message:
            assert isinstance(e, TierUnavailableError)
            pytest.skip(f"tier not in this build: {e.message}")
        raise


def redis_url_or_fail() -> str:
    url = os.environ.get("SMARTCACHE_TEST_REDIS_URL")
    if not url:
        pytest.fail("SMARTCACHE_TEST_REDIS_URL is not set: run through `make test-python` "
                    "(scripts/with-redis.sh starts a private redis-server)")
    return url


def redis_url_for_config() -> str:
    """The private test Redis if there is one; else an address that is never a real server
    (port 1), so an absent variable cannot make a test talk to someone's Redis on 6379."""
    return os.environ.get("SMARTCACHE_TEST_REDIS_URL") or "redis://127.0.0.1:1/0"


@pytest.fixture
def cache() -> Iterator[SmartCache]:
    c = SmartCache(SmartCacheConfig(memory_capacity=10_000))
    yield c
    c.close()


@pytest.fixture
def default_cache() -> Iterator[SmartCache]:
    """A fresh default cache for @cached, restored afterwards."""
    c = SmartCache(SmartCacheConfig(memory_capacity=10_000))
    previous = set_default_cache(c)
    yield c
    set_default_cache(previous)
    c.close()


@pytest.fixture
def unique_prefix() -> str:
    return f"sctest-{uuid.uuid4().hex[:12]}:"


def payload(n: int, seed: int, compressible: bool = False) -> bytes:
    """n bytes, different per seed; compressible or not (LZ4 runs on values >= 1 KiB)."""
    if compressible:
        unit = f"<{seed}>".encode()
        return (unit * (n // len(unit) + 1))[:n]
    rnd = random.Random(seed)
    return rnd.randbytes(n)


def keyed_payload(key_id: int, n: int) -> bytes:
    """Bytes that are a function of (key id, length): any writer's value verifies."""
    return random.Random(key_id * 1_000_003 + n).randbytes(n)
