#!/usr/bin/env python3
"""Checks docs/scaling.md's sizing model against a measured run.

Starts a private redis-server on a free loopback port, preloads KEYS keys, then runs HOSTS
processes ("hosts": each its own cache, memory tier and Redis connections, one key prefix), each
doing RATE operations per second for SECONDS seconds: gets of uniformly random keys, and a
WRITE_FRACTION of sets. Each host reports its gets, sets and memory hits (the tier hit ratios);
the model turns those into Redis commands per second and bytes per second in each direction,
which are compared with what Redis itself counted (INFO commandstats, total_net_input_bytes,
total_net_output_bytes) over the same window. Prints a Markdown table.

    PYTHONPATH=bindings/python SMARTCACHE_LIB=build/lib/libsmartcache.so \\
        build/venv/bin/python scripts/scaling-check.py \\
        --hosts 4 --rate 500 --seconds 20 --invalidation
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import multiprocessing.synchronize
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

PREFIX = "scale:"
REDIS_TTL_S = 1800
HEADER_LEN = 13  # the value frame's header (src/redis/frame.rs), unsigned values


# --- the model (docs/scaling.md, "Sizing model") -------------------------------------------
def digits(n: int) -> int:
    return len(str(n))


def bulk(n: int) -> int:
    """Bytes of a RESP bulk string of n bytes: $<n>\\r\\n<bytes>\\r\\n."""
    return 1 + digits(n) + 2 + n + 2


def array(n: int) -> int:
    return 1 + digits(n) + 2


def model(hosts: int, gets: float, sets: float, memory_hits: float, key_len: int,
          value_len: int, invalidation: bool) -> Dict[str, float]:
    """Redis commands and bytes per second for `hosts` hosts, each doing `gets` gets/s with
    memory hit ratio `memory_hits` and `sets` sets/s (every Redis read a hit here)."""
    k = len(PREFIX) + key_len
    f = HEADER_LEN + value_len
    px = str(REDIS_TTL_S * 1000)
    reads = hosts * gets * (1 - memory_hits)         # memory misses: one GET + PTTL each
    writes = hosts * sets
    get_in = array(2) + bulk(3) + bulk(k)
    pttl_in = array(2) + bulk(4) + bulk(k)
    get_out = bulk(f)
    pttl_out = 1 + digits(REDIS_TTL_S * 1000) + 2  # ":<ms>\r\n", at most this long
    set_in = array(5) + bulk(3) + bulk(k) + bulk(f) + bulk(2) + bulk(len(px))
    set_out = len("+OK\r\n")
    message = array(3) + bulk(7) + bulk(20) + array(1) + bulk(k)  # to every subscriber
    return {
        "get": reads,
        "pttl": reads,
        "set": writes,
        "in": reads * (get_in + pttl_in) + writes * set_in,
        "out": reads * (get_out + pttl_out) + writes * set_out
               + (writes * hosts * message if invalidation else 0),
        "messages": writes * hosts if invalidation else 0,
    }


# --- the measured run ------------------------------------------------------------------------
def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


def redis(port: int, *args: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(f"*{len(args)}\r\n".encode()
                  + b"".join(f"${len(a)}\r\n{a}\r\n".encode() for a in args))
        out = b""
        while b"\r\n" not in out:
            out += s.recv(1 << 20)
        if out.startswith(b"$"):  # a bulk reply: its announced length, then CRLF
            want = out.index(b"\r\n") + 2 + int(out[1:out.index(b"\r\n")]) + 2
            while len(out) < want:
                out += s.recv(1 << 20)
        return out


INFO_REQUEST = ("INFO", "all")


def info(port: int) -> Tuple[Dict[str, int], Dict[str, int]]:
    """(calls per command, byte counters) from INFO; "reply" is the length of INFO's own reply
    (counted in the next snapshot's output bytes, so taken out of the window's)."""
    raw = redis(port, *INFO_REQUEST)
    text = raw.decode()
    calls: Dict[str, int] = {}
    net: Dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[len("cmdstat_"):].split(":", 1)
            calls[name] = int(rest.split(",")[0].split("=")[1])
        for field in ("total_net_input_bytes", "total_net_output_bytes", "used_memory"):
            if line.startswith(field + ":"):
                net[field] = int(line.split(":")[1])
    net["reply"] = len(raw)
    return calls, net


def config(url: str, capacity: int, invalidation: bool) -> object:
    from smartcache import SmartCacheConfig
    return SmartCacheConfig(redis_enabled=True, redis_url=url, redis_key_prefix=PREFIX,
                            redis_invalidation=invalidation, memory_capacity=capacity,
                            redis_ttl=REDIS_TTL_S, redis_timeout_ms=1000,
                            compression_enabled=False, auto_expire_interval=0)


def key(i: int) -> str:
    return f"key:{i:08d}"


def host(n: int, url: str, a: argparse.Namespace, warmed: "mp.synchronize.Barrier",
         go: "mp.synchronize.Barrier", out: "mp.Queue[str]") -> None:
    from smartcache import SmartCache
    rnd = random.Random(n)
    value = b"v" * a.value_size
    with SmartCache(config(url, a.capacity, a.invalidation), serializer="raw") as c:
        # Warm memory before the window: reads only (no Redis writes, so no invalidations).
        for i in range(a.keys):
            c.get(key(i))
        warmed.wait()  # every host warm: the parent reads Redis's counters...
        go.wait()      # ...then the window starts
        before = c.raw_stats()
        gets = sets = 0
        t0 = time.monotonic()
        total = int(a.rate * a.seconds)
        for i in range(total):
            due = t0 + i / a.rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            k = key(rnd.randrange(a.keys))
            if rnd.random() < a.write_fraction:
                c.set(k, value)
                sets += 1
            else:
                c.get(k)
                gets += 1
        elapsed = time.monotonic() - t0
        after = c.raw_stats()
        out.put(json.dumps({
            "gets": gets, "sets": sets, "elapsed": elapsed,
            "memory_hits": after.memory_hits - before.memory_hits,
            "redis_hits": after.redis_hits - before.redis_hits,
            "redis_misses": after.redis_misses - before.redis_misses,
            "memory_bytes": after.memory_bytes, "size": after.size,
        }))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--hosts", type=int, default=4)
    p.add_argument("--rate", type=float, default=500, help="operations per second per host")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--keys", type=int, default=5000)
    p.add_argument("--capacity", type=int, default=2500, help="memory_capacity per host")
    p.add_argument("--value-size", type=int, default=200)
    p.add_argument("--write-fraction", type=float, default=0.02)
    p.add_argument("--invalidation", action="store_true")
    a = p.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not on PATH")

    port = free_port()
    workdir = tempfile.mkdtemp(prefix="sc-scaling-")
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", workdir],
                              stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                redis(port, "PING")
                break
            except OSError:
                time.sleep(0.05)
        url = f"redis://127.0.0.1:{port}/0"
        from smartcache import SmartCache
        empty_memory = info(port)[1]["used_memory"]
        with SmartCache(config(url, 10, False), serializer="raw") as loader:
            value = b"v" * a.value_size
            for i in range(a.keys):
                loader.set(key(i), value)
        redis_bytes_per_key = (info(port)[1]["used_memory"] - empty_memory) / a.keys

        out: "mp.Queue[str]" = mp.Queue()
        warmed, go = mp.Barrier(a.hosts + 1), mp.Barrier(a.hosts + 1)
        procs = [mp.Process(target=host, args=(n, url, a, warmed, go, out))
                 for n in range(a.hosts)]
        for pr in procs:
            pr.start()
        warmed.wait(timeout=600)
        calls0, net0 = info(port)
        go.wait(timeout=60)
        reports = [json.loads(out.get(timeout=a.seconds * 3 + 60)) for _ in procs]
        calls1, net1 = info(port)
        for pr in procs:
            pr.join()
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)

    window = max(r["elapsed"] for r in reports)
    gets = sum(r["gets"] for r in reports) / a.hosts / window
    sets = sum(r["sets"] for r in reports) / a.hosts / window
    hit = sum(r["memory_hits"] for r in reports) / max(1, sum(r["gets"] for r in reports))
    predicted = model(a.hosts, gets, sets, hit, len(key(0)), a.value_size, a.invalidation)

    def measured(cmd: str) -> float:
        return (calls1.get(cmd, 0) - calls0.get(cmd, 0)) / window

    rows: List[Tuple[str, float, float]] = [
        ("GET commands/s", predicted["get"], measured("get")),
        ("PTTL commands/s", predicted["pttl"], measured("pttl")),
        ("SET commands/s", predicted["set"], measured("set")),
        # The window's counters include the second INFO request and the first INFO reply.
        ("bytes/s into Redis", predicted["in"],
         (net1["total_net_input_bytes"] - net0["total_net_input_bytes"]
          - (array(2) + sum(bulk(len(a)) for a in INFO_REQUEST))) / window),
        ("bytes/s out of Redis", predicted["out"],
         (net1["total_net_output_bytes"] - net0["total_net_output_bytes"] - net0["reply"])
         / window),
    ]
    print(f"hosts={a.hosts} rate={a.rate:g}/s/host seconds={a.seconds:g} keys={a.keys} "
          f"capacity={a.capacity} value={a.value_size} B write_fraction={a.write_fraction} "
          f"invalidation={a.invalidation}")
    print(f"measured per host: {gets:.1f} gets/s, {sets:.1f} sets/s, memory hit ratio "
          f"{hit:.3f}; window {window:.1f} s")
    print(f"Redis memory per key: {redis_bytes_per_key:.0f} B; memory tier per host: "
          f"{reports[0]['memory_bytes'] / max(1, reports[0]['size']):.0f} B per entry "
          f"({reports[0]['size']} entries)")
    other = {c: measured(c) for c in set(calls1) - {"get", "pttl", "set", "info"}
             if measured(c) > 0}
    print(f"other commands/s: {json.dumps({c: round(v, 2) for c, v in sorted(other.items())})}")
    print()
    print("| quantity | model | measured | measured / model |")
    print("|---|---:|---:|---:|")
    for name, pred, meas in rows:
        ratio = meas / pred if pred else float("nan")
        print(f"| {name} | {pred:,.0f} | {meas:,.0f} | {ratio:.3f} |")


if __name__ == "__main__":
    # A TERM (e.g. from `timeout`) unwinds like an exception, so the redis-server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
