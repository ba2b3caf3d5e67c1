"""Worker processes of one host sharing a disk_path, as a pre-fork web server runs them: each
has its own memory tier, and a set, delete or clear in one is seen by the next get in every
other, never the value it replaced (the guide's "Pattern 3: cache invalidation")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from smartcache import SmartCache, SmartCacheConfig

# A worker: opens its own cache on the directory given, then answers one JSON command per
# line of stdin: ["get", key] -> the value; ["stats"] -> memory and disk hit counts.
WORKER = r"""
import json, sys
from smartcache import SmartCache, SmartCacheConfig
cache = SmartCache(SmartCacheConfig(disk_enabled=True, disk_path=sys.argv[1]))
print(json.dumps("ready"), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd[0] == "get":
        out = cache.get(cmd[1])
    else:
        s = cache.get_stats()
        t = s.tier_stats
        out = {"memory_hits": t["memory"]["hits"], "disk_hits": t["disk"]["hits"],
               "invalidations": t["memory"]["invalidations"]}
    print(json.dumps(out), flush=True)
"""


class Worker:
    def __init__(self, disk_path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, str(disk_path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.ask() == "ready"

    def ask(self, *cmd: Any) -> Any:
        assert self.proc.stdin and self.proc.stdout
        if cmd:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"worker exited with {self.proc.wait()}"
        return json.loads(line)

    def get(self, key: str) -> Any:
        return self.ask("get", key)

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    w = Worker(tmp_path)
    yield w
    w.close()


@pytest.fixture
def here(tmp_path: Path) -> Iterator[SmartCache]:
    c = SmartCache(SmartCacheConfig(disk_enabled=True, disk_path=str(tmp_path)))
    yield c
    c.close()


def test_another_workers_set_delete_and_clear_reach_this_workers_memory(
        worker: Worker, here: SmartCache) -> None:
    here.set("user:1", {"name": "alice"})
    assert worker.get("user:1") == {"name": "alice"}
    before = worker.ask("stats")
    assert worker.get("user:1") == {"name": "alice"}
    after = worker.ask("stats")
    assert after["memory_hits"] == before["memory_hits"] + 1, "kept in the worker's memory"

    here.set("user:1", {"name": "alicia"})
    assert worker.get("user:1") == {"name": "alicia"}
    assert worker.ask("stats")["invalidations"] == 1, "the worker's copy was dropped"

    here.delete("user:1")
    assert worker.get("user:1") is None

    here.set("a", 1)
    here.set("b", 2)
    assert (worker.get("a"), worker.get("b")) == (1, 2)
    here.clear()
    assert (worker.get("a"), worker.get("b")) == (None, None)


def test_two_workers_each_see_the_others_writes(tmp_path: Path) -> None:
    first, second = Worker(tmp_path), Worker(tmp_path)
    try:
        writer = SmartCache(SmartCacheConfig(disk_enabled=True, disk_path=str(tmp_path)))
        for version in range(1, 51):
            writer.set("counter", version)
            # Read by both right after the write returned: never an older version.
            assert first.get("counter") == version
            assert second.get("counter") == version
        writer.close()
    finally:
        first.close()
        second.close()
