#!/usr/bin/env python3
"""Instructions per memory-tier get on each backend (cffi, ctypes) beside the baseline, counted
by valgrind's callgrind: counts repeat exactly from run to run, whatever else the machine does,
where timings on a shared machine drift by tens of percent.

Each case runs in its own interpreter twice, once doing only the set-up and once doing the
set-up plus 3 passes of 1000 gets of the guide's value; the difference over 3000 is the cost
of one get. The baseline is ``pickle.loads(d[key.encode()])``, as in bench.py.

Run from the repository root after ``make lib`` and an editable install (``make test-python``
does one, which builds the cffi module):

    SMARTCACHE_LIB=build/lib/libsmartcache.so build/venv/bin/python \\
        bindings/python/bench/bench_backends.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from typing import Dict, List

PASSES = 3
KEYS = 1000

CASE = r"""
import pickle, sys
from smartcache import SmartCache, SmartCacheConfig, backend
mode, passes = sys.argv[1], int(sys.argv[2])
value = {"benchmark": "data", "value": list(range(100))}
keys = ["key:%d" % i for i in range(KEYS)]
cache = SmartCache(SmartCacheConfig(disk_enabled=False))
stored = {}
for k in keys:
    cache.set(k, value)
    stored[k.encode()] = pickle.dumps(value)
loads, get = pickle.loads, cache.get
def baseline():
    for k in keys:
        loads(stored[k.encode()])
def smartcache_get():
    for k in keys:
        get(k)
run = baseline if mode == "baseline" else smartcache_get
for _ in range(passes):
    run()
assert mode == "baseline" or backend() == mode, (mode, backend())
""".replace("KEYS", str(KEYS))


def instructions(mode: str, passes: int) -> int:
    env = dict(os.environ, PYTHONHASHSEED="0")  # dict layouts, so counts, repeat exactly
    if mode in ("cffi", "ctypes"):
        env["SMARTCACHE_BACKEND"] = mode
    with tempfile.NamedTemporaryFile("w", suffix=".py") as script:
        script.write(CASE)
        script.flush()
        r = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                            sys.executable, script.name, mode, str(passes)],
                           capture_output=True, text=True, env=env, check=True)
    m = re.search(r"refs:\s+([\d,]+)", r.stderr)
    if not m:
        raise RuntimeError(f"no instruction count from callgrind:\n{r.stderr}")
    return int(m.group(1).replace(",", ""))


def per_get(mode: str) -> int:
    return (instructions(mode, PASSES) - instructions(mode, 0)) // (PASSES * KEYS)


def table() -> List[str]:
    """The counts as Markdown table rows."""
    counts: Dict[str, int] = {m: per_get(m) for m in ("baseline", "cffi", "ctypes")}
    base = counts["baseline"]
    names = {"baseline": "baseline: dict + pickle.loads", "cffi": "SmartCache.get, cffi backend",
             "ctypes": "SmartCache.get, ctypes backend"}
    rows = ["| get (memory hit, guide value) | instructions | vs baseline |", "|---|---:|---:|"]
    rows += [f"| {names[m]} | {n:,} | {n / base:.2f}x |" for m, n in counts.items()]
    return rows


def main() -> int:
    print("\n".join(table()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
