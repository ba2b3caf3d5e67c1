"""redis_invalidation across "hosts": separate processes, each with its own memory tier and disk
path, sharing one key prefix on the private test Redis. A delete, set or clear in one reaches
the others' memory tiers; while a host's invalidation connection is down (CLIENT KILL TYPE
pubsub) its memory keeps nothing another host could replace unseen, and once the connection
is back it caches again."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, List
from urllib.parse import urlparse

import pytest

from smartcache import SmartCacheConfig

from .conftest import redis_url_or_fail

# The documented bound is one message's delivery (sub-millisecond on loopback); generous here
# for a loaded CI machine.
DELIVERY_S = 0.5

HOST = r"""
import json, sys
from smartcache import SmartCache, SmartCacheConfig
url, prefix, disk = sys.argv[1:4]
cache = SmartCache(SmartCacheConfig(redis_enabled=True, redis_url=url, redis_key_prefix=prefix,
                                    redis_invalidation=True, disk_enabled=True, disk_path=disk,
                                    auto_expire_interval=0))
MISSING = object()
def listening():
    return cache.get_stats().tier_stats["redis"]["invalidation"]["listening"]
for line in sys.stdin:
    op, *args = json.loads(line)
    if op == "set":
        out = cache.set(args[0], args[1])
    elif op == "delete":
        out = cache.delete(args[0])
    elif op == "clear":
        out = cache.clear()
    elif op == "get":
        out = cache.get(args[0])
    elif op == "memory":
        v = cache._get_memory(args[0], MISSING)
        out = None if v is MISSING else v
    elif op == "listening":
        out = listening()
    print(json.dumps(out), flush=True)
"""


class Host:
    """One host: a process with a cache of its own, driven over its stdin/stdout."""

    def __init__(self, url: str, prefix: str, disk: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOST, url, prefix, str(disk)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __call__(self, *op: Any) -> Any:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(op) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"host exited with {self.proc.wait()}"
        return json.loads(line)

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        assert self.proc.wait(10) == 0


def wait_until(what: str, cond: Callable[[], bool], limit: float = DELIVERY_S) -> None:
    end = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < end, f"{what}: not within {limit} s"
        time.sleep(0.001)


def cached(host: Host, key: str, want: str) -> None:
    """Reads `key` until it sits in the host's memory (its own write is dropped from memory
    when Redis reports it back, so the copy may need a second read)."""
    def in_memory() -> bool:
        assert host("get", key) == want
        return bool(host("memory", key) == want)
    wait_until(f"{key} cached", in_memory)


def redis_command(url: str, *args: str) -> bytes:
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), 5) as s:
        s.sendall(f"*{len(args)}\r\n".encode()
                  + b"".join(f"${len(a)}\r\n{a}\r\n".encode() for a in args))
        return s.recv(4096)


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[List[Host]]:
    url = redis_url_or_fail()
    prefix = f"pyinval-{uuid.uuid4().hex[:8]}:"
    started = [Host(url, prefix, tmp_path / f"host{i}") for i in range(3)]
    yield started
    for h in started:
        h.close()


def test_delete_set_and_clear_on_one_host_reach_the_others_memory(hosts: List[Host]) -> None:
    a, b, c = hosts
    for h in hosts:
        assert h("listening") is True
    a("set", "k", "v1")
    cached(b, "k", "v1")
    cached(c, "k", "v1")
    a("delete", "k")
    for other in (b, c):
        wait_until("delete reaches memory", lambda: other("memory", "k") is None)
        assert other("get", "k") is None
    a("set", "k", "v2")
    cached(b, "k", "v2")
    a("set", "k", "v3")
    wait_until("set reaches memory", lambda: b("memory", "k") is None)
    assert b("get", "k") == "v3"
    for i in range(10):
        a("set", f"m{i}", i)
        cached(c, f"m{i}", i)  # type: ignore[arg-type]
    a("clear")
    wait_until("clear reaches memory",
               lambda: all(c("memory", f"m{i}") is None for i in range(10)))


def test_a_killed_subscriber_connection_keeps_memory_empty_until_it_is_back(
        hosts: List[Host]) -> None:
    a, b, _ = hosts
    a("set", "k", "old")
    cached(b, "k", "old")  # in memory: b is listening
    reply = redis_command(redis_url_or_fail(), "CLIENT", "KILL", "TYPE", "pubsub")
    assert int(reply[1:].strip()) >= 1  # b's listener among them
    wait_until("memory emptied", lambda: b("memory", "k") is None)
    a("set", "k", "new")
    assert b("get", "k") == "new"
    wait_until("listening again", lambda: b("listening") is True, limit=5)
    cached(b, "k", "new")


def test_config_field_defaults_off_and_round_trips() -> None:
    assert SmartCacheConfig().redis_invalidation is False
    cfg = SmartCacheConfig(redis_enabled=True, redis_invalidation=True)
    assert cfg.to_dict()["redis_invalidation"] is True
    with pytest.raises(TypeError, match="redis_invalidation"):
        SmartCacheConfig(redis_invalidation="yes")  # type: ignore[arg-type]
