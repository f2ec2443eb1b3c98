"""Running the app: in the foreground (``sedlm serve``) or in a background thread (tests, load checks)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0


def header_timeout_protocol(seconds: float) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol, closing a connection whose first request has not sent all its headers
    within ``seconds`` (slowloris clients would otherwise hold their connections forever)."""

    class HeaderTimeout(H11Protocol):
        def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
            super().connection_made(transport)
            self.header_timer = self.loop.call_later(seconds, self.headers_too_slow)

        def headers_too_slow(self) -> None:
            if self.cycle is None and not self.transport.is_closing():  # no complete request head yet
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self.header_timer.cancel()
            super().connection_lost(exc)

    return HeaderTimeout


def serve_forever(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
                  header_timeout: float = HEADER_TIMEOUT_S) -> None:
    """Serve until Ctrl-C. The default host is loopback: pass --host 0.0.0.0 to listen on every interface."""
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5,
                http=header_timeout_protocol(header_timeout))


@contextmanager
def server_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0, timeout: float = 20.0,
                  header_timeout: float = HEADER_TIMEOUT_S) -> Iterator[str]:
    """Serve ``app`` from a daemon thread and yield its base URL (``port=0``: a free port picked by the OS)."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2,
                                           http=header_timeout_protocol(header_timeout)))
    thread = threading.Thread(target=server.run, name="sedlm-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{bound[0]}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
