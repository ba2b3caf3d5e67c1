#!/usr/bin/env python3
"""A Flask app on SmartCache: @cached on a view's helper and the WSGI response-caching
middleware, served by a real HTTP server and called over HTTP.

Run: python3 examples/python/flask_app.py   (pip install flask)
With SMARTCACHE_TEST_REDIS_URL set the cache has a Redis tier too; without it, memory + disk.

Under gunicorn's pre-forked workers, open the cache in each worker (a post_fork hook, or lazily
on the first request), not in the master before the fork; the workers share entries through
the Redis and disk tiers:

    # gunicorn.conf.py
    def post_fork(server, worker):
        import flask_app
        flask_app.open_cache()
"""

import json
import os
import shutil
import tempfile
import threading
import time
import urllib.request
from typing import Optional

from flask import Flask, jsonify
from werkzeug.serving import WSGIRequestHandler, make_server

from smartcache import SmartCache, SmartCacheConfig, cached
from smartcache.wsgi import CacheMiddleware

app = Flask(__name__)
cache: Optional[SmartCache] = None
disk_dir = tempfile.mkdtemp(prefix="smartcache-flask-")
queries = 0


def open_cache() -> SmartCache:
    """This process's cache; the first one opened is what @cached and the middleware use."""
    global cache
    redis_url = os.environ.get("SMARTCACHE_TEST_REDIS_URL")
    cache = SmartCache(SmartCacheConfig(
        memory_capacity=10_000, disk_enabled=True,
        disk_path=disk_dir,
        redis_enabled=bool(redis_url), redis_url=redis_url or "redis://localhost:6379/0",
        redis_key_prefix=f"example-flask-{os.getpid()}:"))
    return cache


@cached(ttl=600, key_prefix="users")
def load_user(user_id: int) -> dict:
    """A slow database query."""
    global queries
    queries += 1
    time.sleep(0.1)
    return {"id": user_id, "name": f"User {user_id}"}


@app.route("/users/<int:user_id>")
def user(user_id: int):  # type: ignore[no-untyped-def]
    return jsonify(load_user(user_id))


# cache=None: the middleware uses the process's default cache, the one open_cache() opened.
app.wsgi_app = CacheMiddleware(app.wsgi_app, ttl=60)  # type: ignore[method-assign]


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: object) -> None:
        pass


def get(url: str, **headers: str) -> tuple:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:  # 304 arrives as an HTTPError
        return e.code, e.headers, b""


def main() -> None:
    open_cache()
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        status, headers, body = get(f"{base}/users/7")
        print("first:", status, headers["X-Cache"], json.loads(body), f"- queries: {queries}")
        status, headers, body = get(f"{base}/users/7")
        print("second:", status, headers["X-Cache"], "age", headers["Age"])
        assert headers["X-Cache"] == "HIT" and queries == 1
        status, _, _ = get(f"{base}/users/7", **{"If-None-Match": headers["ETag"]})
        print("with If-None-Match:", status)
        assert status == 304
        assert load_user(7) == {"id": 7, "name": "User 7"} and queries == 1  # @cached's entry
    finally:
        server.shutdown()
        thread.join(10)
        assert cache is not None
        cache.clear()
        cache.close()
        shutil.rmtree(disk_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
