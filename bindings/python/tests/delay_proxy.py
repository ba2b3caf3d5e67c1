"""A TCP proxy that delays what the upstream server sends back, for a slow Redis on loopback.

Each chunk from the upstream reaches the client `delay` seconds after it arrived (order kept,
pipelined requests overlap), so every Redis round trip takes about `delay` longer. Runs its
own event loop in a daemon thread, so the loop under test does none of its work.

    with DelayProxy("127.0.0.1", 6379, delay=0.03) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional, Tuple


class DelayProxy:
    def __init__(self, host: str, port: int, delay: float) -> None:
        self.upstream = (host, port)
        self.delay = delay
        self.port = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._server: Optional[asyncio.AbstractServer] = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)

    def __enter__(self) -> "DelayProxy":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("delay proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        self._server = loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            # Connections still open are cut: nothing to report about them.
            loop.set_exception_handler(lambda _loop, _context: None)
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    async def _serve(self, client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(self._pipe(client_r, up_w, 0.0),
                             self._pipe(up_r, client_w, self.delay),
                             return_exceptions=True)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    delay: float) -> None:
        queue: "asyncio.Queue[Tuple[float, bytes]]" = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        sender: Any = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((time.monotonic() + delay, data))
                if not data:
                    break
            await sender
        finally:
            sender.cancel()
            writer.close()


def redis_host_port(url: str) -> Tuple[str, int]:
    """(host, port) of a redis://host:port/db URL."""
    rest = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = rest.rpartition(":")
    return host, int(port)


class DelayProxyProcess:
    """DelayProxy in a process of its own, so its work shares no GIL with the process measured
    (the bench's loop-lag figures). Same interface: `port`, and a with block."""

    def __init__(self, host: str, port: int, delay: float) -> None:
        self.args = [host, str(port), str(delay)]
        self.port = 0
        self._proc: Optional["subprocess.Popen[str]"] = None

    def __enter__(self) -> "DelayProxyProcess":
        root = Path(__file__).resolve().parent.parent
        self._proc = subprocess.Popen([sys.executable, "-m", "tests.delay_proxy", *self.args],
                                      cwd=str(root), stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        self.port = int(self._proc.stdout.readline())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()  # the child exits when its stdin closes
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


if __name__ == "__main__":
    with DelayProxy(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])) as proxy:
        print(proxy.port, flush=True)
        sys.stdin.read()
