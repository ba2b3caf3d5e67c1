"""Middleware single-flight when its leader fails: one waiter takes over and the rest wait for
it (the app runs once more, not once per waiter), the wait stays bounded when the app keeps
failing, and a leader's unstorable (private) answer is never served to a waiter.

Both middlewares run on real servers driven by httpx (uvicorn for ASGI, wsgiref's threaded
server for WSGI, from test_middleware_rules); the cancelled-leader case drives the ASGI
middleware in-process, where the leader's task can be cancelled the way a server does on a
client disconnect."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterator, List, Tuple

import httpx
import pytest

from smartcache import SmartCache, SmartCacheConfig
from smartcache import asgi as sc_asgi
from smartcache import wsgi as sc_wsgi

from .test_middleware_rules import _serve_asgi, _serve_wsgi

APP_TIME = 0.5  # seconds the app takes: the waiters arrive while the leader runs
WAITERS = 5


class Behaviour:
    """What the app does per path: counts runs, fails the first run of /crash-once-*, every
    run of /crash-always-*, and answers /private-* with Cache-Control: private."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: Dict[str, int] = {}

    def run(self, path: str) -> Tuple[int, List[Tuple[str, str]], bytes]:
        with self.lock:
            n = self.runs[path] = self.runs.get(path, 0) + 1
        if path.startswith("/crash-always") or (path.startswith("/crash-once") and n == 1):
            raise RuntimeError(f"app failure #{n} on {path}")
        headers = [("content-type", "application/json")]
        if path.startswith("/private"):
            headers.append(("cache-control", "private"))
        return 200, headers, json.dumps({"n": n}).encode()


def make_asgi(behaviour: Behaviour) -> Any:
    async def app(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(APP_TIME)
        status, headers, body = behaviour.run(scope["path"])
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode(), v.encode()) for k, v in headers]})
        await send({"type": "http.response.body", "body": body})
    return app


def make_wsgi(behaviour: Behaviour) -> Any:
    def app(environ: Dict[str, Any], start_response: Any) -> Any:
        time.sleep(APP_TIME)
        status, headers, body = behaviour.run(environ["PATH_INFO"])
        start_response(f"{status} OK", headers)
        return [body]
    return app


class Site:
    def __init__(self, url: str, behaviour: Behaviour) -> None:
        self.url, self.behaviour = url, behaviour

    def burst(self, path: str, count: int = WAITERS) -> List[httpx.Response]:
        """`count` concurrent GETs of `path`."""
        def get(_: int) -> httpx.Response:
            return httpx.get(self.url + path, timeout=30)
        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(get, range(count)))


@pytest.fixture(scope="module", params=["asgi", "wsgi"])
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    cache = SmartCache(SmartCacheConfig(memory_capacity=10_000))
    behaviour = Behaviour()
    if request.param == "asgi":
        url, stop = _serve_asgi(sc_asgi.CacheMiddleware(make_asgi(behaviour), cache=cache,
                                                        ttl=60))
    else:
        url, stop = _serve_wsgi(sc_wsgi.CacheMiddleware(make_wsgi(behaviour), cache=cache,
                                                        ttl=60))
    try:
        yield Site(url, behaviour)
    finally:
        stop()
        cache.close()


def _path(name: str) -> str:
    return f"/{name}-{time.monotonic_ns()}"


def test_failed_leader_hands_over_to_one_waiter_and_the_rest_get_its_answer(
        site: Site) -> None:
    path = _path("crash-once")
    responses = site.burst(path)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * (WAITERS - 1) + [500]
    ok = [r for r in responses if r.status_code == 200]
    assert {r.json()["n"] for r in ok} == {2}  # every waiter got the second run's answer
    assert sorted(r.headers.get("x-cache") for r in ok) == ["HIT"] * (WAITERS - 2) + ["MISS"]
    assert site.behaviour.runs[path] == 2  # the failed leader's run and one more


def test_an_app_that_keeps_failing_ends_every_request_without_hanging(site: Site) -> None:
    path = _path("crash-always")
    responses = site.burst(path)
    assert [r.status_code for r in responses] == [500] * WAITERS
    assert site.behaviour.runs[path] <= WAITERS  # each request ran the app at most once


def test_a_private_answer_is_never_served_to_a_waiter(site: Site) -> None:
    path = _path("private")
    responses = site.burst(path)
    assert all(r.status_code == 200 for r in responses)
    numbers = sorted(r.json()["n"] for r in responses)
    assert numbers == list(range(1, WAITERS + 1))  # each request had its own run
    assert all(r.headers.get("x-cache") != "HIT" for r in responses)


def _scope(path: str) -> Dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": b"", "headers": [(b"host", b"t")], "server": ("t", 80),
            "client": ("127.0.0.1", 1)}


def test_asgi_cancelled_leader_hands_over_to_one_waiter() -> None:
    runs = {"n": 0}

    async def app(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        runs["n"] += 1
        await asyncio.sleep(APP_TIME)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"hello"})

    cache = SmartCache(SmartCacheConfig(memory_capacity=1000))
    middleware = sc_asgi.CacheMiddleware(app, cache=cache, ttl=60)

    async def call() -> Tuple[int, Any, bytes]:
        messages: List[Dict[str, Any]] = []

        async def receive() -> Dict[str, Any]:
            await asyncio.sleep(3600)
            return {}

        async def send(message: Dict[str, Any]) -> None:
            messages.append(message)

        await middleware(_scope("/x"), receive, send)
        start = [m for m in messages if m["type"] == "http.response.start"][0]
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        return start["status"], dict(start["headers"]).get(b"x-cache"), body

    async def main() -> List[Tuple[int, Any, bytes]]:
        leader = asyncio.ensure_future(call())
        await asyncio.sleep(0.05)
        waiters = [asyncio.ensure_future(call()) for _ in range(3)]
        await asyncio.sleep(0.1)
        leader.cancel()
        return list(await asyncio.wait_for(asyncio.gather(*waiters), 10))

    try:
        results = asyncio.run(main())
    finally:
        cache.close()
    assert sorted(results, key=lambda r: r[1]) == [(200, b"HIT", b"hello"), (200, b"HIT", b"hello"),
                                                  (200, b"MISS", b"hello")]
    assert runs["n"] == 2  # the cancelled leader's run and one more, not one per waiter


class _SlowFirstLookup(SmartCache):
    """A real memory cache whose lookups of one request are held until another request's
    flight has ended: what a lookup waiting on a paused Redis (redis_timeout_ms) does when it
    outlasts a concurrent request's whole computation."""

    def __init__(self) -> None:
        super().__init__(SmartCacheConfig(memory_capacity=1000))
        self.hold_async: "asyncio.Event | None" = None
        self.hold_thread: "threading.Event | None" = None
        self.held = threading.local()

    async def aget(self, key: Any, default: Any = None) -> Any:
        value = await super().aget(key, default)  # read before the other request stores
        hold = self.hold_async
        if hold is not None:
            self.hold_async = None
            await hold.wait()
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        value = super().get(key, default)
        hold = self.hold_thread
        if hold is not None and getattr(self.held, "me", False):
            self.hold_thread = None
            hold.wait(10)
        return value


def test_asgi_request_whose_lookup_outlasts_the_flight_gets_the_stored_response() -> None:
    runs = {"n": 0}

    async def app(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        runs["n"] += 1
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"once"})

    cache = _SlowFirstLookup()
    middleware = sc_asgi.CacheMiddleware(app, cache=cache, ttl=60)

    async def call() -> Any:
        messages: List[Dict[str, Any]] = []

        async def receive() -> Dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Dict[str, Any]) -> None:
            messages.append(message)

        await middleware(_scope("/slow-lookup"), receive, send)
        start = [m for m in messages if m["type"] == "http.response.start"][0]
        return dict(start["headers"]).get(b"x-cache")

    async def main() -> List[Any]:
        released = asyncio.Event()
        cache.hold_async = released
        late = asyncio.ensure_future(call())  # its lookup misses, then is held
        await asyncio.sleep(0.05)
        first = await call()  # a whole flight: runs the app, stores, ends
        released.set()
        return [first, await asyncio.wait_for(late, 10)]

    try:
        assert asyncio.run(main()) == [b"MISS", b"HIT"]
    finally:
        cache.close()
    assert runs["n"] == 1


def test_wsgi_request_whose_lookup_outlasts_the_flight_gets_the_stored_response() -> None:
    runs = {"n": 0}

    def app(environ: Dict[str, Any], start_response: Any) -> Any:
        runs["n"] += 1
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"once"]

    cache = _SlowFirstLookup()
    middleware = sc_wsgi.CacheMiddleware(app, cache=cache, ttl=60)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/slow-lookup", "QUERY_STRING": "",
               "HTTP_HOST": "t", "wsgi.url_scheme": "http", "SERVER_NAME": "t",
               "SERVER_PORT": "80"}

    def call(held: bool) -> Any:
        cache.held.me = held
        statuses: List[Any] = []
        body = b"".join(middleware(dict(environ), lambda s, h, e=None: statuses.append(h)))
        assert body == b"once"
        return dict(statuses[0]).get("X-Cache") or dict(statuses[0]).get("x-cache")

    released = threading.Event()
    cache.hold_thread = released
    with ThreadPoolExecutor(1) as pool:
        late = pool.submit(call, True)
        time.sleep(0.05)
        first = call(False)
        released.set()
        try:
            assert [first, late.result(10)] == ["MISS", "HIT"]
        finally:
            cache.close()
    assert runs["n"] == 1
