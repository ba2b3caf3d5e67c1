"""Values of many sizes in sequence through one thread's receive buffers (bytes, str, pickled,
None and empty; from memory and from the disk tier): get returns exactly the value set, never a
longer or shorter one."""

from __future__ import annotations

from typing import Any, Dict

import pytest

from smartcache import SmartCache, SmartCacheConfig

from .conftest import MIB, SIZES, payload


# Up, down, and up again, so the receive buffer grows and shrinks while in use.
SIZE_SEQUENCE = [3 * MIB, 0, 1, MIB, 4097, 4095, 4096, 3 * MIB, 1, MIB, 0, 4097, 3 * MIB, 4095]


def text_payload(n: int, seed: int) -> str:
    """A str of n characters, with non-ASCII ones (so its UTF-8 is longer than n)."""
    alphabet = "abcdefghij\u00e9\u4e2d\U0001F600"
    r = seed % len(alphabet)
    unit = alphabet[r:] + alphabet[:r] + str(seed)
    return (unit * (n // len(unit) + 1))[:n]


@pytest.mark.parametrize("compressible", [False, True])
def test_bytes_of_many_sizes_in_sequence(cache: SmartCache, compressible: bool) -> None:
    values = {n: payload(n, n + 1, compressible) for n in SIZES}
    for n, v in values.items():
        cache.set(f"b{n}", v)
    for _ in range(2):
        for n in SIZE_SEQUENCE:
            got = cache.get(f"b{n}")
            assert type(got) is bytes
            assert len(got) == n, (n, len(got))
            assert got == values[n], n


def test_str_of_many_sizes_in_sequence(cache: SmartCache) -> None:
    values = {n: text_payload(n, n) for n in SIZES}
    for n, v in values.items():
        cache.set(f"s{n}", v)
    for n in SIZE_SEQUENCE:
        got = cache.get(f"s{n}")
        assert type(got) is str
        assert len(got) == n, (n, len(got))
        assert got == values[n], n
    # A str that ends in NUL characters is returned with them (the zeroed tail is not the value).
    cache.set("nul", "abc\x00\x00")
    cache.get("s4097")
    assert cache.get("nul") == "abc\x00\x00"
    cache.set("bnul", b"\x00" * 10)
    cache.get("b3145728")
    assert cache.get("bnul") == b"\x00" * 10


def test_pickled_values_of_many_sizes_in_sequence(cache: SmartCache) -> None:
    values: Dict[int, Any] = {}
    for n in SIZES:
        values[n] = {"n": n, "blob": payload(n, n + 7), "list": list(range(n % 50))}
        cache.set(f"p{n}", values[n])
    # pickles of exactly 0/1/4095/4096/4097 stored bytes are not reachable with a dict; use
    # tuples of bytes too, whose pickles span those sizes around the boundary.
    for n in (4080, 4085, 4090, 4095, 4100):
        values[-n] = (payload(n, n),)
        cache.set(f"p{-n}", values[-n])
    order = SIZE_SEQUENCE + [-4080, 3 * MIB, -4085, 0, -4090, -4095, MIB, -4100, 1]
    for n in order:
        assert cache.get(f"p{n}") == values[n], n


def test_none_and_empty_values(cache: SmartCache) -> None:
    cache.set("none", None)
    cache.set("empty-bytes", b"")
    cache.set("empty-str", "")
    cache.set("big", payload(MIB, 3))
    for _ in range(3):
        assert cache.get("big") == payload(MIB, 3)
        assert cache.get("none", default="missing") is None  # stored None, not a miss
        assert cache.get("empty-bytes", default="missing") == b""
        assert type(cache.get("empty-bytes")) is bytes
        assert cache.get("empty-str", default="missing") == ""
        assert type(cache.get("empty-str")) is str
        assert cache.get("absent", default="missing") == "missing"
        assert cache.get("absent") is None


def test_many_sizes_from_disk_tier(tmp_path: Any) -> None:
    """The same sequence answered by the disk tier (a get that leaves the memory tier and
    releases the GIL), then by memory after promotion."""
    cfg = SmartCacheConfig(disk_enabled=True, disk_path=str(tmp_path / "d"),
                           disk_max_size="64M", memory_capacity=10_000)
    values = {n: payload(n, n + 11) for n in SIZES}
    with SmartCache(cfg) as c:
        for n, v in values.items():
            c.set(f"d{n}", v)
            c.set(f"t{n}", text_payload(n, n))
    with SmartCache(cfg) as c:
        for n in SIZE_SEQUENCE:
            assert c.get(f"d{n}") == values[n], n
            assert c.get(f"t{n}") == text_payload(n, n), n
        assert c.raw_stats().disk_hits >= len(SIZES)
        for n in reversed(SIZE_SEQUENCE):
            assert c.get(f"d{n}") == values[n], n
