"""Running the app: in the foreground (``sedlm serve``) or in a background thread (tests, load checks)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from sedlm.errors import SedlmError

READ_TIMEOUT_S = 10.0


def read_timeout_protocol(seconds: float) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol with a read timeout: every request, the first of a connection and each
    later one on a kept-alive connection, must arrive whole (request line, headers and body) within
    ``seconds`` of its first byte (of the connection's opening, for the first), else the connection is
    closed. Slowloris clients trickling headers or a body would otherwise hold connections forever:
    uvicorn's keep-alive timer stops at the first byte of the next request, and the body has no timer."""
    check_every = min(1.0, seconds / 4)

    class ReadTimeout(H11Protocol):
        def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
            super().connection_made(transport)
            self.request_started: float | None = self.loop.time()  # reading a request since (None: not reading)
            self.read_timer = self.loop.call_later(check_every, self.check_read)

        def reading(self) -> None:
            """Track whether a request is being received: from its first byte until it is complete."""
            state = self.conn.their_state
            if state is h11.SEND_BODY or (state is h11.IDLE and self.conn.trailing_data[0]):
                if self.request_started is None:
                    self.request_started = self.loop.time()
            elif state is not h11.IDLE:  # DONE (being answered), MUST_CLOSE, CLOSED, ...
                self.request_started = None

        def data_received(self, data: bytes) -> None:
            if self.request_started is None and self.conn.their_state is h11.IDLE:
                self.request_started = self.loop.time()  # first byte of a next request on a kept-alive connection
            super().data_received(data)
            self.reading()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self.reading()

        def check_read(self) -> None:
            if self.transport.is_closing():
                return
            if self.request_started is not None and self.loop.time() - self.request_started > seconds:
                self.transport.close()
                return
            self.read_timer = self.loop.call_later(check_every, self.check_read)

        def connection_lost(self, exc: Exception | None) -> None:
            self.read_timer.cancel()
            super().connection_lost(exc)

    return ReadTimeout


def check_port(host: str, port: int) -> None:
    """Raise SedlmError, in one line, unless ``host:port`` can be bound now (as uvicorn binds it, with
    SO_REUSEADDR): a port another server listens on, or an address this machine does not have."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError):
        raise SedlmError(f"--host '{host}' is not an address of this machine; use 127.0.0.1 or 0.0.0.0") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(addr)
        except OSError as e:
            raise SedlmError(
                f"cannot listen on {host}:{port} ({e.strerror or e}); another server may hold it: pick another --port"
            ) from None


def serve_forever(
    app: FastAPI,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    read_timeout: float = READ_TIMEOUT_S,
) -> None:
    """Serve until Ctrl-C. The default host is loopback: pass --host 0.0.0.0 to listen on every interface."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=5,
        http=read_timeout_protocol(read_timeout),
    )


@contextmanager
def server_thread(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0, timeout: float = 20.0, read_timeout: float = READ_TIMEOUT_S
) -> Iterator[str]:
    """Serve ``app`` from a daemon thread and yield its base URL (``port=0``: a free port picked by the OS)."""
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=2,
            http=read_timeout_protocol(read_timeout),
        )
    )
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
