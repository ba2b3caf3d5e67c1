"""The raw serializer: bytes stored exactly as given, read back exactly as stored, so values
cross to and from the C and Go APIs unchanged (docs/value-format.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartcache import SerializationError, SmartCache, SmartCacheConfig


@pytest.fixture
def raw_cache():
    c = SmartCache(SmartCacheConfig(memory_capacity=1000), serializer="raw")
    yield c
    c.close()


def test_raw_stores_the_bytes_with_nothing_added(raw_cache: SmartCache) -> None:
    raw_cache.set("k", b"Braw-bytes")
    assert raw_cache.get("k") == b"Braw-bytes"
    raw_cache.set("empty", b"")
    assert raw_cache.get("empty") == b""
    big = bytes(range(256)) * 4096
    raw_cache.set("big", big)
    assert raw_cache.get("big") == big


def test_raw_accepts_bytes_like_values_and_returns_bytes(raw_cache: SmartCache) -> None:
    raw_cache.set("ba", bytearray(b"\x00\x01"))
    raw_cache.set("mv", memoryview(b"view"))
    assert raw_cache.get("ba") == b"\x00\x01" and type(raw_cache.get("ba")) is bytes
    assert raw_cache.get("mv") == b"view"
    raw_cache.set_many({"m1": b"one", "m2": b"two"})
    assert raw_cache.get_many(["m1", "m2", "m3"]) == {"m1": b"one", "m2": b"two"}


@pytest.mark.parametrize("value", ["text", 1, None, {"a": 1}, [b"x"]])
def test_raw_refuses_anything_but_bytes(raw_cache: SmartCache, value: object) -> None:
    with pytest.raises(SerializationError, match="raw serializer stores bytes only"):
        raw_cache.set("k", value)
    with pytest.raises(SerializationError, match="raw serializer stores bytes only"):
        raw_cache.set_many({"k": value})
    assert raw_cache.get("k") is None


def test_raw_reads_what_a_tagging_cache_wrote_as_its_stored_bytes(tmp_path: Path) -> None:
    cfg = SmartCacheConfig(memory_capacity=100, disk_enabled=True, disk_path=str(tmp_path),
                           disk_max_size="8M")
    with SmartCache(cfg, serializer="json") as tagged:
        tagged.set("j", {"a": 1})
        tagged.set("b", b"xyz")
    with SmartCache(cfg, serializer="raw") as raw:
        assert raw.get("j") == b'J{"a":1}'
        assert raw.get("b") == b"Bxyz"
