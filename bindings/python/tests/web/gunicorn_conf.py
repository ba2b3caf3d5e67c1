"""gunicorn settings for the WSGI test app: the SmartCache is opened in each worker after the
fork (a cache opened in the master and inherited would share its threads and connections)."""

from typing import Any

workers = 4
worker_class = "gthread"
threads = 4


def post_fork(server: Any, worker: Any) -> None:
    from tests.web.endpoints import open_cache
    worker.smartcache = open_cache()  # kept referenced: the first cache opened is the default
