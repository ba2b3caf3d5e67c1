"""Response caching for WSGI applications (Flask, Django, plain WSGI): ``CacheMiddleware``.

    from smartcache.wsgi import CacheMiddleware
    app.wsgi_app = CacheMiddleware(app.wsgi_app, cache=cache, ttl=60)   # Flask

Same options and rules as smartcache.asgi.CacheMiddleware. With pre-forking servers
(gunicorn), a SmartCache opened in the master works in the workers; one a worker opens (a
``post_fork`` hook, or lazily on first request) becomes that worker's default instead.
Workers share entries through the Redis and disk tiers.
``cache=None`` looks the default cache up per request, which suits a cache opened lazily.
"""

from __future__ import annotations

import threading
from http import HTTPStatus
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from . import _http
from .cache import SmartCache

StartResponse = Callable[..., Any]
WSGIApp = Callable[[Dict[str, Any], StartResponse], Iterable[bytes]]
Land = Callable[..., None]

# See smartcache.asgi: failed leaders handed over to a waiter before one runs the app alone.
_HANDOVERS = 3


class _Flight:
    """A request computing a key; `failed` is set (before `done`) when it landed without an
    answer the waiters can read (the app raised, or the response stream broke off)."""

    __slots__ = ("done", "failed")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.failed = False


def _no_waiters(failed: bool = False) -> None:
    """The `land` of a request nobody waits for."""


class CacheMiddleware:
    """Caches a WSGI app's GET and HEAD responses in a SmartCache; the options are
    smartcache.asgi.CacheMiddleware's."""

    def __init__(self, app: WSGIApp, cache: Optional[SmartCache] = None, *,
                 ttl: Optional[float] = 60.0, routes: _http.RouteSpec = (),
                 vary: Iterable[str] = (), cacheable_statuses: Iterable[int] = (200,),
                 max_body_size: int = 1 << 20, key_prefix: str = "smartcache.http") -> None:
        self.app = app
        self.policy = _http.Policy(cache, ttl, routes, vary, cacheable_statuses, max_body_size,
                                   key_prefix)
        self._lock = threading.Lock()
        # Requests computing a key now (threaded servers): the others wait for them.
        self._flights: Dict[str, _Flight] = {}

    def __call__(self, environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        headers = [(k[5:].replace("_", "-").lower(), str(v)) for k, v in environ.items()
                   if k.startswith("HTTP_")]
        for name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(name):
                headers.append((name.replace("_", "-").lower(), str(environ[name])))
        host = environ.get("HTTP_HOST") or \
            f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
        scheme = str(environ.get("wsgi.url_scheme", "http"))
        request = _http.Request(environ.get("REQUEST_METHOD", "GET"),
                                environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
                                environ.get("QUERY_STRING", ""), headers, scheme=scheme,
                                host=str(host), root_path=environ.get("SCRIPT_NAME", ""))
        plan = self.policy.plan(request)
        if plan is None:
            return self.app(environ, start_response)
        cache = self.policy.cache()
        stored = self._serve_stored(cache, plan, start_response)
        if stored is not None:
            return stored
        if plan.cookie_bound:
            # Another user's request is no answer for this one: compute, never wait.
            return self._compute(cache, plan, environ, start_response, _no_waiters)
        return self._single_flight(cache, plan, environ, start_response)

    def _single_flight(self, cache: SmartCache, plan: _http.Plan, environ: Dict[str, Any],
                       start_response: StartResponse) -> Iterable[bytes]:
        """Computes the response once for concurrent requests of one key; the rules of
        smartcache.asgi.CacheMiddleware._single_flight (a failed leader hands over to one
        waiter, at most _HANDOVERS times)."""
        for _ in range(_HANDOVERS + 1):
            with self._lock:
                flight = self._flights.get(plan.key)
                lead = flight is None
                if flight is None:
                    flight = self._flights[plan.key] = _Flight()
            if lead:
                return self._lead(cache, plan, flight, environ, start_response)
            flight.done.wait()
            stored = self._serve_stored(cache, plan, start_response)
            if stored is not None:
                return stored
            if not flight.failed:
                break
        return self._compute(cache, plan, environ, start_response, _no_waiters)

    def _lead(self, cache: SmartCache, plan: _http.Plan, flight: "_Flight",
              environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        def land(failed: bool = False) -> None:
            with self._lock:
                if self._flights.get(plan.key) is not flight:
                    return  # landed already (a streamed body lands at its end and on close)
                del self._flights[plan.key]
                flight.failed = failed
            flight.done.set()

        try:
            # A flight that ended between this request's lookup and now left its response in
            # memory: serve it rather than run the app a second time.
            stored = self._serve_stored(cache, plan, start_response, memory_only=True)
            if stored is not None:
                land()
                return stored
            return self._compute(cache, plan, environ, start_response, land)
        except BaseException:
            land(failed=True)
            raise

    def _serve_stored(self, cache: SmartCache, plan: _http.Plan, start_response: StartResponse,
                      memory_only: bool = False) -> Optional[List[bytes]]:
        read = cache._get_memory if memory_only else cache.get
        record = _http.decode_record(read(plan.key))
        variant = self.policy.variant_to_read(plan, record)
        if variant is not None:
            record = _http.decode_record(read(variant))
        now = _http.now()
        if record is None or not self.policy.usable(record, plan, now):
            return None
        return _respond(start_response, *_http.response(record, plan.request, now, hit=True))

    def _compute(self, cache: SmartCache, plan: _http.Plan, environ: Dict[str, Any],
                 start_response: StartResponse, land: Land) -> Iterable[bytes]:
        """Runs the app; stores its response when it may be, passing it through otherwise.
        `land` is called once the outcome is known (stored, or passed through).

        A body known to be small (a list, or a Content-Length within max_body_size) is read
        whole and answered as a stored response (ETag, Content-Length, X-Cache: MISS). Any
        other body is handed to the server chunk by chunk as the app yields it, with a copy
        kept and stored at the end if it completed within max_body_size."""
        captured: List[Any] = []
        chunks: List[bytes] = []

        def capture(status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Any:
            captured[:] = [status, headers, exc_info]
            return chunks.append  # the legacy write() callable: its bytes come first

        result = self.app(environ, capture)
        body = iter(result)
        try:
            first = next(body, None)  # a generator app calls start_response at its first step
            if first is not None:
                chunks.append(first)
            ttl = self._storable(plan, captured)
            size = sum(map(len, chunks))
            if ttl is not None and size <= self.policy.max_body_size:
                length = _http.header(list(captured[1]), "content-length")
                if (first is not None and not isinstance(result, (list, tuple))
                        and not (length is not None and length.isdigit()
                                 and int(length) <= self.policy.max_body_size)):
                    start_response(*captured)
                    return _Tee(self, cache, plan, ttl, captured, chunks, body, result, land)
                for chunk in body:
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > self.policy.max_body_size:
                        break
                else:
                    record = self._store(cache, plan, ttl, captured, chunks)
                    _close(result)
                    land()
                    return _respond(start_response,
                                    *_http.response(record, plan.request, record.stored_at,
                                                    hit=False))
        except BaseException:
            _close(result)
            raise
        # Not stored: what was read so far, then the rest of the app's body, streamed.
        land()
        start_response(*captured)
        return _Passing(chunks, body, result)

    def _store(self, cache: SmartCache, plan: _http.Plan, ttl: float, captured: List[Any],
               chunks: List[bytes]) -> _http.Record:
        """Stores a complete response; returns its record."""
        status, headers = captured[0], captured[1]
        record, stored = self.policy.records(plan, int(str(status).split(" ", 1)[0]),
                                             list(headers), b"".join(chunks), _http.now())
        for key, rec in stored:
            cache.set(key, rec.encode(), ttl=ttl)
        return record

    def _storable(self, plan: _http.Plan, captured: List[Any]) -> Optional[float]:
        if not captured:
            raise RuntimeError("the WSGI app returned a body before calling start_response")
        status = int(str(captured[0]).split(" ", 1)[0])
        return self.policy.storable_ttl(plan, status, list(captured[1]), _http.now())


def _respond(start_response: StartResponse, status: int, headers: _http.Headers,
             body: bytes) -> List[bytes]:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    start_response(f"{status} {reason}", headers)
    return [body]


def _close(result: Iterable[bytes]) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


class _Passing:
    """A response the cache does not store: the chunks already read, then the rest; closes
    the app's iterable when the server closes this one (PEP 3333)."""

    def __init__(self, head: List[bytes], rest: Iterator[bytes], result: Iterable[bytes]) -> None:
        self._head = head
        self._rest = rest
        self._result = result

    def __iter__(self) -> Iterator[bytes]:
        yield from self._head
        yield from self._rest

    def close(self) -> None:
        _close(self._result)


class _Tee:
    """A streamed response the cache may store: each chunk goes to the server as the app
    yields it, a copy is kept, and the whole is stored when the app's body ends within
    max_body_size. `land` (waiters for the key) is called at the end or on close."""

    def __init__(self, middleware: CacheMiddleware, cache: SmartCache, plan: _http.Plan,
                 ttl: float, captured: List[Any], head: List[bytes], rest: Iterator[bytes],
                 result: Iterable[bytes], land: Land) -> None:
        self._args = (middleware, cache, plan, ttl, captured)
        self._head = head
        self._rest = rest
        self._result = result
        self._land = land
        self._completed = False

    def __iter__(self) -> Iterator[bytes]:
        middleware, cache, plan, ttl, captured = self._args
        copy: Optional[List[bytes]] = list(self._head)
        size = sum(map(len, self._head))
        completed = False
        try:
            yield from self._head
            for chunk in self._rest:
                if copy is not None:
                    size += len(chunk)
                    if size > middleware.policy.max_body_size:
                        copy = None  # too large to store: stream the rest only
                    else:
                        copy.append(chunk)
                yield chunk
            if copy is not None:
                middleware._store(cache, plan, ttl, captured, copy)
            completed = True
        finally:
            self._completed = completed
            self._land(failed=not completed)

    def close(self) -> None:
        try:
            _close(self._result)
        finally:
            # Closed before its end (the client went away): nothing stored for the waiters.
            self._land(failed=not self._completed)


__all__ = ["CacheMiddleware"]
