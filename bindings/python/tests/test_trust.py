"""The trust model: values read from Redis or disk are untrusted input. A pickle someone else
stores there runs code on get() unless value_secret is set, in which case unsigned and forged
values are misses counted as tampered. Opening a pickle cache over Redis without a secret warns.

Against the real thing: the private redis-server of `make test-python` and a raw socket client
that stores a forged frame under the cache's prefix; a real disk file.
"""

from __future__ import annotations

import os
import pickle
import socket
import tempfile
import uuid
import warnings
from typing import List, Tuple
from urllib.parse import urlparse

import pytest

from smartcache import ConfigError, SecurityWarning, SmartCache, SmartCacheConfig

from .conftest import redis_url_for_config, redis_url_or_fail

SECRET = "python-fleet-secret-0001"


class PlantsADirectory:
    """Unpickling this creates a directory: a stand-in for whatever code an attacker runs."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Tuple[object, Tuple[str]]:
        return (os.mkdir, (self.path,))


def raw_command(url: str, *args: bytes) -> bytes:
    """One RESP command over a plain socket, as a second client that can write to Redis."""
    u = urlparse(url)
    with socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=5) as s:
        out = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
        s.sendall(out)
        reply = s.recv(65536)
    return reply


def unsigned_frame(payload: bytes) -> bytes:
    """A Redis frame as a writer without a secret stores it (docs/architecture.md)."""
    return b"\xffSC\x01\x00" + bytes(8) + payload


def redis_config(prefix: str, **kw: object) -> SmartCacheConfig:
    return SmartCacheConfig(redis_enabled=True, redis_url=redis_url_or_fail(),
                            redis_key_prefix=prefix, **kw)  # type: ignore[arg-type]


def security_warnings(record: List[warnings.WarningMessage]) -> List[warnings.WarningMessage]:
    return [w for w in record if issubclass(w.category, SecurityWarning)]


def test_pickle_over_redis_without_a_secret_warns_once_naming_risk_and_fix() -> None:
    assert issubclass(SecurityWarning, UserWarning)
    url = redis_url_for_config()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        SmartCache(SmartCacheConfig(redis_enabled=True, redis_url=url)).close()
    found = security_warnings(record)
    assert len(found) == 1, [str(w.message) for w in record]
    text = str(found[0].message)
    assert "runs code" in text and "Redis" in text
    assert "value_secret" in text and "json" in text
    assert found[0].filename == __file__, "points at the caller's line"

    quiet = [
        (SmartCacheConfig(redis_enabled=True, redis_url=url, value_secret=SECRET), "pickle"),
        (SmartCacheConfig(redis_enabled=True, redis_url=url), "json"),
        (SmartCacheConfig(), "pickle"),
    ]
    for config, serializer in quiet:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            SmartCache(config, serializer=serializer).close()
        assert security_warnings(record) == [], (config, serializer)


def test_a_forged_pickle_in_redis_runs_code_only_without_a_secret(tmp_path: object) -> None:
    prefix = f"trust-{uuid.uuid4().hex}:"
    marker = os.path.join(str(tmp_path), "planted")
    forged = unsigned_frame(pickle.dumps(PlantsADirectory(marker), protocol=5))
    assert raw_command(redis_url_or_fail(), b"SET", f"{prefix}session".encode(), forged) == b"+OK\r\n"

    with SmartCache(redis_config(prefix, value_secret=SECRET)) as signed:
        assert signed.get("session", "miss") == "miss"
        assert not os.path.exists(marker), "the forged pickle was never unpickled"
        redis = signed.get_stats().tier_stats["redis"]
        assert redis["tampered"] == 1 and redis["hits"] == 0
        assert "tampered" in signed.health_check()["tiers"]["redis"]["last_error"]
        # The cache's own values are signed and read back.
        signed.set("own", {"a": 1})
        assert signed.get("own") == {"a": 1}

    # The same frame is a working exploit for a cache without a secret: the test above would
    # have caught a real attack, not a malformed frame.
    with pytest.warns(SecurityWarning):
        trusting = SmartCache(redis_config(prefix))
    with trusting:
        trusting.get("session")
    assert os.path.isdir(marker)


def test_a_pickle_planted_in_the_disk_file_is_refused_with_a_secret() -> None:
    with tempfile.TemporaryDirectory() as d:
        marker = os.path.join(d, "planted")
        disk = dict(disk_enabled=True, disk_path=os.path.join(d, "cache"), disk_max_size="1M")
        # Someone who can write the directory, without the secret, stores a record there.
        with SmartCache(SmartCacheConfig(**disk)) as planter:  # type: ignore[arg-type]
            planter.set("session", PlantsADirectory(marker))
        with SmartCache(SmartCacheConfig(value_secret=SECRET, **disk)) as signed:  # type: ignore[arg-type]
            assert signed.get("session", "miss") == "miss"
            assert not os.path.exists(marker)
            assert signed.get_stats().tier_stats["disk"]["tampered"] == 1
            signed.set("own", [1, 2, 3])
        # Rotation: the new secret with the old one as previous still reads what it wrote.
        rotated = SmartCacheConfig(value_secret="python-fleet-secret-0002",
                                   value_secret_previous=SECRET, **disk)  # type: ignore[arg-type]
        with SmartCache(rotated) as reader:
            assert reader.get("own") == [1, 2, 3]
            assert reader.get_stats().tier_stats["disk"]["tampered"] == 0


def test_secrets_are_bounded_and_never_shown() -> None:
    for bad in ("short", "x" * 15, "y" * 4097):
        with pytest.raises(ConfigError) as e:
            SmartCacheConfig(value_secret=bad)
        assert e.value.field == "value_secret"
        assert "16 to 4096 bytes" in str(e.value)
        assert bad not in str(e.value)
    with pytest.raises(TypeError):
        SmartCacheConfig(value_secret=b"bytes-are-not-text-here")  # type: ignore[arg-type]
    config = SmartCacheConfig(value_secret=SECRET, value_secret_previous="z" * 4096)
    assert SECRET not in repr(config)
    assert config.to_dict()["value_secret"] == "***"
    assert config.to_dict()["value_secret_previous"] == "***"
    with SmartCache(config) as cache:
        assert SECRET not in repr(cache)
        assert SECRET not in str(cache.get_stats().to_dict())
        assert SECRET not in str(cache.health_check())
    # The previous secret alone cannot sign anything: refused at open.
    with pytest.raises(ConfigError, match="value_secret_previous"):
        SmartCache(SmartCacheConfig(value_secret_previous=SECRET))
