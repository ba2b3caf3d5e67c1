"""A Flask app behind smartcache.wsgi.CacheMiddleware, served by gunicorn's pre-forked workers
in the tests. The cache is opened in each worker by gunicorn_conf.post_fork (never before the
fork); the middleware is given cache=None and so uses that worker's first opened cache."""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterable, List, Tuple

from flask import Flask, Response, request

from smartcache.wsgi import CacheMiddleware

from .endpoints import MAX_BODY, ROUTES, chunks, handle

flask_app = Flask(__name__)


@flask_app.route("/<path:path>", methods=["GET", "HEAD", "POST"])
def endpoint(path: str) -> Response:
    status, headers, body = handle(request.method, request.path,
                                   request.query_string.decode("latin-1"),
                                   {k.lower(): v for k, v in request.headers.items()})
    if request.path == "/stream":  # a generator body: no Content-Length
        return Response(iter(chunks(body)), status=status, headers=headers)
    return Response(body, status=status, headers=headers)


cached_app = CacheMiddleware(flask_app.wsgi_app, ttl=60, routes=ROUTES, max_body_size=MAX_BODY,
                             key_prefix="test.http")


def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Adds the serving worker's pid, so a test sees hits served by different workers."""
    def start(status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Any:
        return start_response(status, headers + [("X-Served-By", str(os.getpid()))], exc_info)

    return cached_app(environ, start)
