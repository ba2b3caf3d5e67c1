"""Response-caching middleware on real servers: uvicorn serving a Starlette app behind
smartcache.asgi.CacheMiddleware, and gunicorn with 4 pre-forked workers serving a Flask app
behind smartcache.wsgi.CacheMiddleware; both with a private redis-server and one disk tier the
workers share, driven over HTTP by httpx. The same rule tests run against both."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, List, Tuple

import httpx
import pytest

from .conftest import redis_url_or_fail

PYTHON_DIR = Path(__file__).resolve().parent.parent


class Server:
    def __init__(self, kind: str, url: str, log: Path, proc: "subprocess.Popen[bytes]") -> None:
        self.kind, self.url, self.log, self.proc = kind, url, log, proc

    def computations(self, path: str) -> int:
        """How many times the app computed `path`, in every worker."""
        return sum(1 for line in self.log.read_text().splitlines()
                   if line.split(" ", 1)[1] == path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(kind: str, tmp: Path) -> Server:
    port = _free_port()
    log = tmp / "computed.log"
    log.touch()
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR), SC_TEST_LOG=str(log),
               SC_TEST_DISK=str(tmp / "disk"), SC_TEST_PREFIX=f"mw-{uuid.uuid4().hex[:10]}:",
               SMARTCACHE_TEST_REDIS_URL=redis_url_or_fail())
    if kind == "uvicorn":
        cmd = [sys.executable, "-m", "uvicorn", "tests.web.asgi_app:app", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning"]
    else:
        cmd = [sys.executable, "-m", "gunicorn", "-c", "tests/web/gunicorn_conf.py",
               "-b", f"127.0.0.1:{port}", "--log-level", "warning", "tests.web.wsgi_app:app"]
    out = open(tmp / "server.out", "wb")
    proc = subprocess.Popen(cmd, cwd=str(PYTHON_DIR), env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(f"{url}/count", timeout=2).status_code == 200:
                return Server(kind, url, log, proc)
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    proc.wait()
    pytest.fail(f"{kind} did not start:\n{(tmp / 'server.out').read_text()}")


@pytest.fixture(scope="module", params=["uvicorn", "gunicorn"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = _start(request.param, tmp_path_factory.mktemp(request.param))
    try:
        yield s
    finally:
        s.proc.terminate()
        try:
            s.proc.wait(20)
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait()


def _path(name: str) -> str:
    return f"/{name}-{uuid.uuid4().hex[:8]}"


def test_get_is_stored_then_served_with_age(server: Server) -> None:
    path = _path("items")
    first = httpx.get(f"{server.url}{path}?b=2&a=1")
    assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
    assert first.headers["etag"]
    second = httpx.get(f"{server.url}{path}?a=1&b=2")  # the query's order does not matter
    assert second.headers["x-cache"] == "HIT" and int(second.headers["age"]) >= 0
    assert second.content == first.content
    assert second.headers["content-type"] == "application/json"
    assert server.computations(path) == 1
    assert httpx.get(f"{server.url}{path}?a=1&b=3").headers["x-cache"] == "MISS"
    head = httpx.head(f"{server.url}{path}?a=1&b=2")
    assert head.status_code == 200 and head.content == b""
    for _ in range(2):
        post = httpx.post(f"{server.url}{path}")
        assert post.status_code == 200 and "x-cache" not in post.headers
    assert server.computations(path) == 5  # two GET queries, one HEAD, two POSTs


def test_if_none_match_gives_304(server: Server) -> None:
    own = httpx.get(f"{server.url}/etag?{uuid.uuid4().hex}")
    assert own.headers["etag"] == '"v1"'
    query = own.url.query.decode()
    not_modified = httpx.get(f"{server.url}/etag?{query}", headers={"If-None-Match": '"v1"'})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == '"v1"' and not_modified.headers["x-cache"] == "HIT"
    path = _path("tagged")
    made = httpx.get(f"{server.url}{path}").headers["etag"]  # made by the middleware
    again = httpx.get(f"{server.url}{path}", headers={"If-None-Match": f"W/{made}, \"other\""})
    assert again.status_code == 304
    assert httpx.get(f"{server.url}{path}", headers={"If-None-Match": '"nope"'}).status_code == 200


def test_request_cache_control(server: Server) -> None:
    path = _path("cc")
    assert httpx.get(f"{server.url}{path}").headers["x-cache"] == "MISS"
    bypass = httpx.get(f"{server.url}{path}", headers={"Cache-Control": "no-store"})
    assert "x-cache" not in bypass.headers
    fresh = httpx.get(f"{server.url}{path}", headers={"Cache-Control": "no-cache"})
    assert fresh.headers["x-cache"] == "MISS"  # recomputed, and stored again
    assert server.computations(path) == 3
    time.sleep(1.2)
    assert httpx.get(f"{server.url}{path}").headers["x-cache"] == "HIT"
    young = httpx.get(f"{server.url}{path}", headers={"Cache-Control": "max-age=0"})
    assert young.headers["x-cache"] == "MISS" and server.computations(path) == 4
    assert httpx.get(f"{server.url}{path}", headers={"Authorization": "Bearer x"}).headers.get(
        "x-cache") is None


@pytest.mark.parametrize("endpoint",
                         ["/private", "/nostore", "/cookie", "/missing", "/big", "/stream"])
def test_responses_that_are_never_stored(server: Server, endpoint: str) -> None:
    query = uuid.uuid4().hex
    bodies = [httpx.get(f"{server.url}{endpoint}?{query}") for _ in range(2)]
    assert all("x-cache" not in r.headers for r in bodies)
    if endpoint in ("/big", "/stream"):
        assert all(len(r.content) == 64 * 1024 + 1 for r in bodies)  # passed through whole
    before = server.computations(endpoint)
    httpx.get(f"{server.url}{endpoint}?{query}")
    assert server.computations(endpoint) == before + 1


def test_response_max_age_and_route_ttl(server: Server) -> None:
    for path in ("/maxage", f"/short/{uuid.uuid4().hex}"):
        query = "" if path.startswith("/short") else f"?{uuid.uuid4().hex}"
        assert httpx.get(f"{server.url}{path}{query}").headers["x-cache"] == "MISS"
        assert httpx.get(f"{server.url}{path}{query}").headers["x-cache"] == "HIT"
        time.sleep(1.6)  # both live 1 s: max-age=1, and the /short/* route's ttl
        assert httpx.get(f"{server.url}{path}{query}").headers["x-cache"] == "MISS"
    assert "x-cache" not in httpx.get(f"{server.url}/count").headers  # route with ttl None


def test_vary_keeps_one_variant_per_header_value(server: Server) -> None:
    url = f"{server.url}/vary?{uuid.uuid4().hex}"
    en = httpx.get(url, headers={"Accept-Language": "en"})
    fr = httpx.get(url, headers={"Accept-Language": "fr"})
    assert en.headers["x-cache"] == fr.headers["x-cache"] == "MISS"
    en2 = httpx.get(url, headers={"Accept-Language": "en"})
    fr2 = httpx.get(url, headers={"Accept-Language": "fr"})
    assert en2.headers["x-cache"] == fr2.headers["x-cache"] == "HIT"
    assert en2.json()["lang"] == "en" and fr2.json()["lang"] == "fr"
    assert en2.content == en.content and fr2.content == fr.content


def test_concurrent_requests_for_one_key_compute_once(server: Server) -> None:
    path = _path("slow")

    def get(_: int) -> Tuple[int, str]:
        r = httpx.get(f"{server.url}{path}?sleep=0.5", timeout=30)
        return r.status_code, r.headers.get("x-cache", "")

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(get, range(12)))
    assert all(status == 200 for status, _ in results)
    # One computation per process: uvicorn is one process; gunicorn's 4 workers each compute
    # at most once (single-flight is per process; the others then read Redis or disk).
    assert 1 <= server.computations(path) <= (1 if server.kind == "uvicorn" else 4)


def test_gunicorn_workers_share_entries(server: Server) -> None:
    if server.kind != "gunicorn":
        pytest.skip("about pre-forked workers")
    path = _path("shared")
    assert httpx.get(f"{server.url}{path}").headers["x-cache"] == "MISS"

    def get(_: int) -> Tuple[str, str]:
        # A new connection each time, so the requests spread over the workers.
        r = httpx.get(f"{server.url}{path}", headers={"Connection": "close"})
        return r.headers["x-cache"], r.headers["x-served-by"]

    with ThreadPoolExecutor(8) as pool:
        results: List[Tuple[str, str]] = list(pool.map(get, range(48)))
    assert all(state == "HIT" for state, _ in results)
    assert len({pid for _, pid in results}) >= 2, "all requests went to one worker"
    assert server.computations(path) == 1
