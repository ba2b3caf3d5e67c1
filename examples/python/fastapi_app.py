#!/usr/bin/env python3
"""A FastAPI app on SmartCache: the app's multi-tier cache, @cached on an async function and the
response-caching middleware, served by uvicorn and called over HTTP.

Run: python3 examples/python/fastapi_app.py   (pip install fastapi uvicorn httpx)
With SMARTCACHE_TEST_REDIS_URL set the cache has a Redis tier too; without it, memory + disk.
In production: `uvicorn fastapi_app:app`, the cache opened at import (one per worker process).
"""

import asyncio
import os
import shutil
import socket
import tempfile
import threading
import time

import httpx
import uvicorn
from fastapi import FastAPI

from smartcache import SmartCache, SmartCacheConfig, cached
from smartcache.asgi import CacheMiddleware

redis_url = os.environ.get("SMARTCACHE_TEST_REDIS_URL")
disk_dir = tempfile.mkdtemp(prefix="smartcache-fastapi-")
# The first SmartCache opened in the process: @cached uses it (every tier it has).
cache = SmartCache(SmartCacheConfig(
    memory_capacity=10_000, disk_enabled=True, disk_path=disk_dir,
    redis_enabled=bool(redis_url), redis_url=redis_url or "redis://localhost:6379/0",
    redis_key_prefix=f"example-fastapi-{os.getpid()}:"))

api = FastAPI()
lookups = 0


@cached(ttl=300, key_prefix="weather")
async def forecast(city: str) -> dict:
    """A slow upstream call; concurrent callers for one city share one call."""
    global lookups
    lookups += 1
    await asyncio.sleep(0.2)
    return {"city": city, "temperature": 21}


@api.get("/weather/{city}")
async def weather(city: str) -> dict:
    return await forecast(city)


@api.get("/time")
async def now() -> dict:
    return {"time": time.time()}


# Whole responses cached for 30 s; /time never (routes: first match wins, None = not cached).
app = CacheMiddleware(api, cache=cache, ttl=30, routes={"/time": None})


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    try:
        async def burst() -> list:
            async with httpx.AsyncClient(base_url=base) as client:
                return await asyncio.gather(*(client.get("/weather/Oslo") for _ in range(10)))

        first = asyncio.run(burst())
        print("10 concurrent requests:", sorted({r.headers["x-cache"] for r in first}),
              f"- upstream lookups: {lookups}")
        assert lookups == 1 and all(r.json()["city"] == "Oslo" for r in first)
        again = httpx.get(f"{base}/weather/Oslo")
        print("again:", again.headers["x-cache"], "age", again.headers["age"], again.json())
        assert again.headers["x-cache"] == "HIT"
        revalidate = httpx.get(f"{base}/weather/Oslo",
                               headers={"If-None-Match": again.headers["etag"]})
        print("with If-None-Match:", revalidate.status_code)
        assert revalidate.status_code == 304
        assert "x-cache" not in httpx.get(f"{base}/time").headers
        print("tiers:", [name for name, t in cache.health_check()["tiers"].items()
                         if t["enabled"]])
    finally:
        server.should_exit = True
        thread.join(10)
        cache.clear()
        cache.close()
        shutil.rmtree(disk_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
