"""The endpoints both test web apps serve (Starlette under uvicorn, Flask under gunicorn), as one
framework-neutral function, so one set of middleware tests runs against both servers.

Every computation appends a line "<pid> <path>" to $SC_TEST_LOG, so a test counts computations
across worker processes.
"""

from __future__ import annotations

import json
import os
import time
from typing import Dict, List, Tuple
from urllib.parse import parse_qsl

from smartcache import SmartCache, SmartCacheConfig

Response = Tuple[int, List[Tuple[str, str]], bytes]

MAX_BODY = 64 * 1024
ROUTES = {"/count": None, "/short/*": 1.0}


def chunks(body: bytes, size: int = 8192) -> List[bytes]:
    return [body[i:i + size] for i in range(0, len(body), size)]


def open_cache() -> SmartCache:
    """The multi-tier cache of one worker process: the private Redis and a disk tier every
    worker shares."""
    return SmartCache(SmartCacheConfig(
        redis_enabled=True, redis_url=os.environ["SMARTCACHE_TEST_REDIS_URL"],
        redis_key_prefix=os.environ["SC_TEST_PREFIX"], redis_timeout_ms=2000,
        disk_enabled=True, disk_path=os.environ["SC_TEST_DISK"]))


def _log(path: str) -> None:
    with open(os.environ["SC_TEST_LOG"], "a") as f:
        f.write(f"{os.getpid()} {path}\n")


def handle(method: str, path: str, query: str, headers: Dict[str, str]) -> Response:
    params = dict(parse_qsl(query))
    if path == "/count":
        with open(os.environ["SC_TEST_LOG"]) as f:
            lines = [line.split(" ", 1)[1].strip() for line in f if line.strip()]
        return 200, [("content-type", "application/json")], json.dumps(lines).encode()
    _log(path)
    if "sleep" in params:
        time.sleep(float(params["sleep"]))
    body = json.dumps({"path": path, "query": sorted(params.items()), "method": method,
                       "at": time.time(), "pid": os.getpid()}).encode()
    out: List[Tuple[str, str]] = [("content-type", "application/json")]
    if path == "/vary":
        lang = headers.get("accept-language", "")
        body = json.dumps({"lang": lang, "at": time.time()}).encode()
        out.append(("vary", "Accept-Language"))
    elif path == "/private":
        out.append(("cache-control", "private, max-age=60"))
    elif path == "/nostore":
        out.append(("cache-control", "no-store"))
    elif path == "/maxage":
        out.append(("cache-control", "max-age=1"))
    elif path == "/cookie":
        out.append(("set-cookie", "session=abc"))
    elif path == "/etag":
        out.append(("etag", '"v1"'))
    elif path in ("/big", "/stream"):
        body = b"x" * (MAX_BODY + 1)  # the apps stream /stream in chunks, with no length
    elif path == "/missing":
        return 404, out, b'{"error": "not found"}'
    return 200, out, body
