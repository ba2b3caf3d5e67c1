"""Response-caching rules that decide who may be answered with a stored response: the site,
scheme and mount point in the key, cookies, repeated query parameters, malformed freshness
headers, and streamed bodies reaching the client as they are produced.

Each rule runs against both middlewares on real servers driven by httpx: uvicorn (in a thread
of this process) serving an ASGI app behind smartcache.asgi.CacheMiddleware, and wsgiref's
threaded server serving a WSGI app behind smartcache.wsgi.CacheMiddleware, with werkzeug's
ProxyFix in front as a deployment behind a proxy has it (X-Forwarded-Proto, X-Forwarded-Prefix).
The apps answer a JSON echo of what they were asked with a computation counter, so a test
tells a stored answer (same counter) from a computed one."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from socketserver import ThreadingMixIn
from typing import Any, Callable, Dict, Iterator, List, Tuple
from urllib.parse import parse_qsl
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
import uvicorn
from werkzeug.middleware.proxy_fix import ProxyFix

from smartcache import SmartCache, SmartCacheConfig
from smartcache import asgi as sc_asgi
from smartcache import wsgi as sc_wsgi

EVENT_GAP = 0.5  # seconds between two events of the streamed endpoint
Answer = Tuple[int, List[Tuple[str, str]], bytes]


def _answer(counter: "itertools.count[int]", scheme: str, host: str, root: str, path: str,
            query: str, cookie: str) -> Answer:
    """The echo endpoint: what it was asked, with a computation number; response headers
    chosen by the query (?cc=..., ?vary=..., ?expires=...)."""
    params = dict(parse_qsl(query))
    headers = [("content-type", "application/json")]
    for name in ("cc", "vary", "expires"):
        if name in params:
            headers.append(({"cc": "cache-control"}.get(name, name), params[name]))
    body = json.dumps({"n": next(counter), "scheme": scheme, "host": host, "root": root,
                       "path": path, "query": query, "cookie": cookie}).encode()
    return 200, headers, body


def _events(i: int) -> bytes:
    return b"data: %d\n\n" % i


def make_asgi_app(counter: "itertools.count[int]") -> Callable[..., Any]:
    async def app(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        if scope["path"].endswith(("/events", "/parts")):
            kind = b"text/event-stream" if scope["path"].endswith("/events") else b"text/plain"
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", kind)]})
            for i in range(3):
                await send({"type": "http.response.body", "body": _events(i), "more_body": True})
                await asyncio.sleep(EVENT_GAP)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        status, out, body = _answer(counter, scope["scheme"], headers.get("host", ""),
                                    scope.get("root_path", ""), scope["path"],
                                    scope["query_string"].decode(), headers.get("cookie", ""))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode(), v.encode()) for k, v in out]})
        await send({"type": "http.response.body", "body": body})
    return app


def make_wsgi_app(counter: "itertools.count[int]") -> Callable[..., Any]:
    def app(environ: Dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.endswith(("/events", "/parts")):
            kind = "text/event-stream" if path.endswith("/events") else "text/plain"
            start_response("200 OK", [("content-type", kind)])

            def events() -> Iterator[bytes]:
                for i in range(3):
                    yield _events(i)
                    time.sleep(EVENT_GAP)
            return events()
        status, out, body = _answer(counter, environ["wsgi.url_scheme"],
                                    environ.get("HTTP_HOST", ""), environ.get("SCRIPT_NAME", ""),
                                    path, environ.get("QUERY_STRING", ""),
                                    environ.get("HTTP_COOKIE", ""))
        start_response(f"{status} OK", out)
        return [body]
    return app


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_asgi(app: Any, **config: Any) -> Tuple[str, Callable[[], None]]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           lifespan="off", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)
    return f"http://127.0.0.1:{port}", stop


def _serve_wsgi(app: Any) -> Tuple[str, Callable[[], None]]:
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingWSGIServer,
                         handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(10)
    return f"http://127.0.0.1:{server.server_address[1]}", stop


class Site:
    """A cached app on a real server; `mounted` is the same app (same cache) mounted at
    /tenant-b, for the root-path rule."""

    def __init__(self, kind: str, url: str, mounted: str) -> None:
        self.kind, self.url, self.mounted = kind, url, mounted

    def get(self, path: str, base: str = "", **kwargs: Any) -> httpx.Response:
        return httpx.get((base or self.url) + path, timeout=10, **kwargs)


@pytest.fixture(scope="module", params=["asgi", "wsgi"])
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    cache = SmartCache(SmartCacheConfig(memory_capacity=10_000))
    counter = itertools.count()
    stops = []
    try:
        if request.param == "asgi":
            app = sc_asgi.CacheMiddleware(make_asgi_app(counter), cache=cache, ttl=60)
            url, stop = _serve_asgi(app, proxy_headers=True, forwarded_allow_ips="*")
            stops.append(stop)
            mounted, stop = _serve_asgi(app, root_path="/tenant-b")
            stops.append(stop)
        else:
            wsgi = ProxyFix(sc_wsgi.CacheMiddleware(make_wsgi_app(counter), cache=cache, ttl=60),
                            x_proto=1, x_prefix=1)
            url, stop = _serve_wsgi(wsgi)
            stops.append(stop)
            mounted, stop = _serve_wsgi(
                lambda env, start: wsgi(dict(env, HTTP_X_FORWARDED_PREFIX="/tenant-b"), start))
            stops.append(stop)
        yield Site(request.param, url, mounted)
    finally:
        for stop in stops:
            stop()
        cache.close()


def _path(name: str) -> str:
    return f"/{name}-{time.monotonic_ns()}"


def _n(response: httpx.Response) -> int:
    assert response.status_code == 200, response.text
    return int(response.json()["n"])


def test_a_response_for_one_host_is_never_served_to_another(site: Site) -> None:
    path = _path("host")
    evil = site.get(path, headers={"Host": "evil.example"})
    shop = site.get(path, headers={"Host": "shop.example"})
    assert shop.json()["host"] == "shop.example"
    assert _n(shop) != _n(evil)
    again = site.get(path, headers={"Host": "shop.example"})
    assert again.headers["x-cache"] == "HIT" and _n(again) == _n(shop)
    # The scheme's default port is the same site.
    assert _n(site.get(path, headers={"Host": "shop.example:80"})) == _n(shop)


def test_http_and_https_are_separate_entries(site: Site) -> None:
    path = _path("scheme")
    plain = site.get(path, headers={"Host": "shop.example"})
    secure = site.get(path, headers={"Host": "shop.example", "X-Forwarded-Proto": "https"})
    assert secure.json()["scheme"] == "https" and plain.json()["scheme"] == "http"
    assert _n(plain) != _n(secure)
    assert _n(site.get(path, headers={"Host": "shop.example",
                                      "X-Forwarded-Proto": "https"})) == _n(secure)


def test_each_mount_point_has_its_own_entries(site: Site) -> None:
    path = _path("root")
    top = site.get(path, headers={"Host": "shop.example"})
    tenant = site.get(path, base=site.mounted, headers={"Host": "shop.example"})
    assert tenant.json()["root"] == "/tenant-b" and top.json()["root"] == ""
    assert _n(top) != _n(tenant)


def test_a_request_with_a_cookie_is_not_answered_from_or_stored_for_others(site: Site) -> None:
    path = _path("cookie")
    alice = site.get(path, headers={"Cookie": "session=alice"})
    bob = site.get(path, headers={"Cookie": "session=bob"})
    assert bob.json()["cookie"] == "session=bob" and _n(bob) != _n(alice)
    anonymous = site.get(path)
    assert _n(anonymous) not in (_n(alice), _n(bob))
    # The anonymous response is stored, but never handed to a request carrying a cookie.
    assert _n(site.get(path)) == _n(anonymous)
    assert _n(site.get(path, headers={"Cookie": "session=alice"})) != _n(anonymous)


def test_vary_cookie_keys_the_response_by_the_cookie(site: Site) -> None:
    path = _path("varycookie") + "?vary=Cookie"
    alice = site.get(path, headers={"Cookie": "session=alice"})
    bob = site.get(path, headers={"Cookie": "session=bob"})
    assert _n(alice) != _n(bob)
    again = site.get(path, headers={"Cookie": "session=alice"})
    assert again.headers["x-cache"] == "HIT" and _n(again) == _n(alice)
    assert again.json()["cookie"] == "session=alice"


def test_repeated_query_parameters_keep_their_order_in_the_key(site: Site) -> None:
    path = _path("order")
    by_name = site.get(path + "?sort=name&sort=price")
    by_price = site.get(path + "?sort=price&sort=name")
    assert by_price.json()["query"] == "sort=price&sort=name"
    assert _n(by_name) != _n(by_price)
    # Different names still sort: the order of distinct parameters does not matter.
    assert _n(site.get(path + "?b=1&a=2")) == _n(site.get(path + "?a=2&b=1"))


@pytest.mark.parametrize("freshness", ["cc=max-age%3D-5", "cc=max-age%3Dabc", "cc=max-age",
                                       "expires=Thu,%2001%20Jan%201970%2000:00:00%20GMT",
                                       "expires=not-a-date"])
def test_invalid_or_past_freshness_is_not_stored(site: Site, freshness: str) -> None:
    path = f"{_path('fresh')}?{freshness}"
    first = site.get(path)
    assert "x-cache" not in first.headers
    assert _n(site.get(path)) != _n(first)


def test_future_expires_is_stored(site: Site) -> None:
    path = f"{_path('expires')}?expires=Fri,%2001%20Jan%202100%2000:00:00%20GMT"
    first = site.get(path)
    assert first.headers["x-cache"] == "MISS" and _n(site.get(path)) == _n(first)


def test_pragma_no_cache_without_cache_control_is_honoured(site: Site) -> None:
    path = _path("pragma")
    stored = site.get(path)
    assert _n(site.get(path)) == _n(stored)
    refetched = site.get(path, headers={"Pragma": "no-cache"})
    assert _n(refetched) != _n(stored)
    # Cache-Control, when present, is what counts (RFC 9111 5.4).
    assert _n(site.get(path, headers={"Pragma": "no-cache",
                                      "Cache-Control": "max-age=600"})) == _n(refetched)


@pytest.mark.parametrize("endpoint", ["events", "parts"])
def test_streamed_body_reaches_the_client_before_it_ends(site: Site, endpoint: str) -> None:
    path = _path("stream") + "/" + endpoint
    started = time.monotonic()
    with httpx.stream("GET", site.url + path, timeout=10) as r:
        parts = r.iter_raw()
        first = next(parts)
        first_at = time.monotonic() - started
        rest = b"".join(parts)
    total = time.monotonic() - started
    assert first.startswith(_events(0))
    # The app takes 3 gaps to finish: the first event arrived before the end, not with it.
    assert first_at < total - EVENT_GAP, (first_at, total)
    assert first + rest == b"".join(_events(i) for i in range(3))
    # A complete plain stream within the bound is stored; an event stream never is.
    again = site.get(path)
    assert again.content == first + rest
    if endpoint == "parts":
        assert again.headers["x-cache"] == "HIT"
    else:
        assert "x-cache" not in again.headers
