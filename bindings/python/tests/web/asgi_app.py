"""A Starlette app behind smartcache.asgi.CacheMiddleware, served by uvicorn in the tests."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from smartcache.asgi import CacheMiddleware

from .endpoints import MAX_BODY, ROUTES, chunks, handle, open_cache

cache = open_cache()


async def endpoint(request: Request) -> Response:
    # The endpoints sleep and write a log file: off the loop, as a real app's slow work is.
    status, headers, body = await asyncio.to_thread(
        handle, request.method, request.url.path, request.url.query,
        {k.lower(): v for k, v in request.headers.items()})
    if request.url.path == "/stream":
        async def parts() -> AsyncIterator[bytes]:
            for part in chunks(body):
                yield part

        return StreamingResponse(parts(), status_code=status, headers=dict(headers))
    return Response(body, status_code=status, headers=dict(headers))


inner = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "HEAD", "POST"])])
app = CacheMiddleware(inner, cache=cache, ttl=60, routes=ROUTES, max_body_size=MAX_BODY,
                      key_prefix="test.http")
