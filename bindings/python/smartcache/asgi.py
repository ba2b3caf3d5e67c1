"""Response caching for ASGI applications (FastAPI, Starlette, ...): ``CacheMiddleware``.

    from smartcache import SmartCache, SmartCacheConfig
    from smartcache.asgi import CacheMiddleware

    cache = SmartCache(SmartCacheConfig(redis_enabled=True, redis_url="redis://..."))
    app = CacheMiddleware(app, cache=cache, ttl=60, routes={"/users/*": 300, "/admin/*": None})

Cache lookups go through the async API: a memory hit is answered on the event loop, Redis and
disk work runs off it. The rules (which requests and responses, keys, Cache-Control, ETag,
Vary, the size bound) are those of docs/guide.md's "Response caching" section and
smartcache._http; the package needs no framework.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Dict, Iterable, List, MutableMapping, Optional, Tuple

from . import _http
from .cache import SmartCache

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# How many failed leaders in a row the waiters of a key hand the computation over to before a
# waiter runs the app on its own (bounds the wait when the app keeps failing).
_HANDOVERS = 3


class CacheMiddleware:
    """Caches an ASGI app's GET and HEAD responses in a SmartCache.

    - ``cache``: the SmartCache (None: @cached's default, see smartcache.defaults);
    - ``ttl``: seconds for paths no route matches (None: those are not cached);
    - ``routes``: path patterns to TTLs, first match wins: globs (``"/users/*"``) or compiled
      regular expressions, matched against the whole path; a TTL of None excludes the route;
    - ``vary``: request headers that are always part of the key (the response's ``Vary``
      headers are added per response);
    - ``cacheable_statuses``: statuses that are stored (200 only by default);
    - ``max_body_size``: larger bodies are passed through, not stored (1 MiB by default);
    - ``key_prefix``: the namespace of the keys.
    """

    def __init__(self, app: ASGIApp, cache: Optional[SmartCache] = None, *,
                 ttl: Optional[float] = 60.0, routes: _http.RouteSpec = (),
                 vary: Iterable[str] = (), cacheable_statuses: Iterable[int] = (200,),
                 max_body_size: int = 1 << 20, key_prefix: str = "smartcache.http") -> None:
        self.app = app
        self.policy = _http.Policy(cache, ttl, routes, vary, cacheable_statuses, max_body_size,
                                   key_prefix)
        # Requests computing a key now, per event loop: the others wait for them. A future's
        # result is True when its leader failed (see _single_flight).
        self._flights: Dict[Tuple[int, str], "asyncio.Future[bool]"] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = _request(scope)
        plan = self.policy.plan(request)
        if plan is None:
            await self.app(scope, receive, send)
            return
        cache = self.policy.cache()
        if await self._serve_stored(cache, plan, send):
            return
        if plan.cookie_bound:
            # Another user's request is no answer for this one: compute, never wait.
            await self._compute(cache, plan, scope, receive, send)
            return
        await self._single_flight(cache, plan, scope, receive, send)

    async def _single_flight(self, cache: SmartCache, plan: _http.Plan, scope: Scope,
                             receive: Receive, send: Send) -> None:
        """Computes the response once for concurrent requests of one key.

        The first request leads; the others wait for it (shielded: a waiter being cancelled
        must not cancel the leader's future), then read what it stored. When the leader
        failed (the app raised, or its task was cancelled) one waiter becomes the new leader
        and the rest wait for it, at most _HANDOVERS times, after which a waiter runs the
        app itself: never an unbounded chain. A leader that answered without storing
        (private, no-store, a Vary this request does not match, too large) is no answer for
        a waiter, which then runs the app at once, as before."""
        fkey = (id(asyncio.get_running_loop()), plan.key)
        for _ in range(_HANDOVERS + 1):
            flight = self._flights.get(fkey)
            if flight is None:
                await self._lead(cache, plan, fkey, scope, receive, send)
                return
            failed = await asyncio.shield(flight)
            if await self._serve_stored(cache, plan, send):
                return
            if not failed:
                break
        await self._compute(cache, plan, scope, receive, send)

    async def _lead(self, cache: SmartCache, plan: _http.Plan, fkey: Tuple[int, str],
                    scope: Scope, receive: Receive, send: Send) -> None:
        """Runs the app for a key's waiters; its future's result says whether it failed."""
        flight = self._flights[fkey] = asyncio.get_running_loop().create_future()
        failed = True
        try:
            # A flight that ended between this request's lookup and now (its lookup waited
            # on Redis or disk) left its response in memory: serve it, do not run the app
            # a second time.
            if not await self._serve_stored(cache, plan, send, memory_only=True):
                await self._compute(cache, plan, scope, receive, send)
            failed = False
        finally:
            del self._flights[fkey]
            flight.set_result(failed)

    async def _serve_stored(self, cache: SmartCache, plan: _http.Plan, send: Send,
                            memory_only: bool = False) -> bool:
        """Answers from the cache when it holds a usable response; False otherwise.
        `memory_only` consults the memory tier alone (never waits on I/O)."""
        async def read(key: str) -> Any:
            return cache._get_memory(key) if memory_only else await cache.aget(key)

        record = _http.decode_record(await read(plan.key))
        variant = self.policy.variant_to_read(plan, record)
        if variant is not None:
            record = _http.decode_record(await read(variant))
        now = _http.now()
        if record is None or not self.policy.usable(record, plan, now):
            return False
        await _send(send, *_http.response(record, plan.request, now, hit=True))
        return True

    async def _compute(self, cache: SmartCache, plan: _http.Plan, scope: Scope, receive: Receive,
                       send: Send) -> None:
        """Runs the app; stores its response when it may be, passing it through otherwise.

        A response whose first body message is its whole body is answered as a stored one
        (ETag, Content-Length, X-Cache: MISS). One that comes in several messages is
        forwarded message by message as the app sends them (a copy is kept), and stored at
        the end if it completed within max_body_size."""
        start: Optional[Message] = None
        chunks: List[bytes] = []
        size = 0
        ttl: Optional[float] = None
        passing = False
        streaming = False
        stored: List[Tuple[str, _http.Record]] = []

        async def capture(message: Message) -> None:
            nonlocal start, size, ttl, passing, streaming, stored
            if passing:
                await send(message)
                return
            if message["type"] == "http.response.start":
                ttl = self.policy.storable_ttl(plan, message["status"],
                                               _headers(message), _http.now())
                if ttl is None:
                    passing = True
                    await send(message)
                else:
                    start = message  # held until the first body message says more
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body = message.get("body", b"")
            more = message.get("more_body", False)
            size += len(body)
            if size > self.policy.max_body_size:
                passing = True  # too large to store: drop the copy, stream the rest
                if streaming:
                    await send(message)
                else:
                    await send(start)
                    await send({"type": "http.response.body", "body": b"".join(chunks) + body,
                                "more_body": more})
                chunks.clear()
                return
            chunks.append(body)
            if not more or streaming:
                if streaming:
                    await send(message)
                if not more:
                    now = _http.now()
                    record, stored = self.policy.records(plan, start["status"], _headers(start),
                                                         b"".join(chunks), now)
                    if not streaming:
                        await _send(send, *_http.response(record, plan.request, now, hit=False))
                return
            # The body comes in parts: forward each as it arrives (server-sent events, long
            # downloads), keeping a copy to store when it ends.
            streaming = True
            await send(start)
            await send(message)

        await self.app(scope, receive, capture)
        assert ttl is not None or not stored
        for key, record in stored:
            await cache.aset(key, record.encode(), ttl=ttl)


def _request(scope: Scope) -> _http.Request:
    """The request of an HTTP scope; the host is the Host header, else the server's address."""
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", ())]
    host = _http.header(headers, "host")
    if host is None:
        server = scope.get("server") or ("", None)
        host = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
    return _http.Request(scope["method"], scope["path"],
                         scope.get("query_string", b"").decode("latin-1"), headers,
                         scheme=scope.get("scheme", "http"), host=host,
                         root_path=scope.get("root_path", ""))


def _headers(message: Message) -> _http.Headers:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", ())]


async def _send(send: Send, status: int, headers: _http.Headers, body: bytes) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


__all__ = ["CacheMiddleware"]
