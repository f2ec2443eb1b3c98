"""Hostile HTTP clients for ``benchmarks/serve_hostile.py``: sockets that start a request and never finish
it (slowloris), and the /proc readings of the server they are aimed at."""

from __future__ import annotations

import os
import resource
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOST = "127.0.0.1"


def server_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def server_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


@contextmanager
def nofile_at_least(n: int) -> Iterator[None]:
    """Raise the soft RLIMIT_NOFILE of this process to ``n`` (up to the hard limit) for the block. Servers
    are started outside it, so they run with the limit this script was started with."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < n:
        new = n if hard == resource.RLIM_INFINITY else min(n, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < n:
            print(f"warning: RLIMIT_NOFILE hard limit {hard} < {n}: some hostile sockets will fail to open", flush=True)
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response with a Content-Length body (blocking)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the response body")
        body += chunk
    return head


class Hostile:
    """``n`` sockets that never finish a request (``mode``: headers, keepalive or body), trickling one
    byte every ``trickle_s`` seconds from one thread and noting when the server closes each."""

    def __init__(self, port: int, mode: str, n: int, trickle_s: float):
        self.port, self.mode, self.n, self.trickle_s = port, mode, n, trickle_s
        self.socks: dict[socket.socket, float] = {}  # open socket -> connect time
        self.closed: list[tuple[float, float]] = []  # (close time, seconds after connect), server-side closes
        self.answered = 0  # sockets the server sent bytes to (an error answer) before closing
        self.open_errors: dict[str, int] = {}
        self.sel = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="slowloris", daemon=True)

    def _partial(self) -> tuple[bytes, bytes]:
        host = f"Host: {HOST}:{self.port}\r\n".encode()
        if self.mode == "body":
            return (
                b"POST /v1/generate HTTP/1.1\r\n"
                + host
                + b"Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n{",
                b" ",
            )
        return b"GET /healthz HTTP/1.1\r\n" + host + b"User-Agent: slowloris\r\nX-Slow: ", b"a"

    def open(self) -> None:
        first, _ = self._partial()
        full = f"GET /healthz HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n\r\n".encode()
        for _ in range(self.n):
            try:
                s = socket.create_connection((HOST, self.port), timeout=10)
                t = time.perf_counter()
                if self.mode == "keepalive":
                    s.sendall(full)
                    read_response(s)
                s.sendall(first)
                s.setblocking(False)
            except OSError as e:
                key = type(e).__name__ if e.errno is None else os.strerror(e.errno)
                self.open_errors[key] = self.open_errors.get(key, 0) + 1
                continue
            self.socks[s] = t
            self.sel.register(s, selectors.EVENT_READ)
        self._thread.start()

    def _gone(self, s: socket.socket) -> None:
        now = time.perf_counter()
        self.closed.append((now, now - self.socks.pop(s)))
        self.sel.unregister(s)
        s.close()

    def _loop(self) -> None:
        _, byte = self._partial()
        next_trickle = time.perf_counter() + self.trickle_s
        while not self._stop.is_set():
            for key, _ in self.sel.select(timeout=0.1) if self.socks else []:
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    self.answered += 1
                    continue
                self._gone(s)
            if not self.socks:
                self._stop.wait(0.1)
            if time.perf_counter() >= next_trickle:
                next_trickle += self.trickle_s
                for s in list(self.socks):
                    try:
                        s.send(byte)
                    except BlockingIOError:
                        pass
                    except OSError:
                        self._gone(s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        for s in self.socks:
            s.close()
        self.sel.close()
