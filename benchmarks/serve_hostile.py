"""Hostile clients against ``sedlm serve``: slowloris connections and abandoned requests.

Starts ``python -m sedlm serve --ckpt CKPT`` on a free loopback port with the default limits (one model
call at a time, at most 8 requests running or queued) and OMP_NUM_THREADS=1 in the server's
environment (--server-threads), waits for /healthz, then measures two things.

1. Slowloris. N raw TCP sockets (default 1000) connect and are then held open for --seconds while a
   normal client (httpx, a fresh connection per request, one request at a time) alternates
   GET /healthz and POST /v1/generate {"n": 1, "steps": 10}. Modes, one row each:
     baseline   no hostile sockets;
     headers    each socket sends a partial request head and then one header byte every --trickle-s
                seconds, never finishing it (what --read-timeout is meant to close);
     keepalive  each socket first completes one GET /healthz on the connection, then trickles the head
                of a second request the same way;
     body       each socket sends complete headers with Content-Length: 4096 and then trickles body bytes.
   The headers mode is run again on a second server started with --read-timeout
   --short-read-timeout (default 2 s). Per row: latency p50/p90/max of the normal client's successful
   requests (seconds, from the client's send to the whole answer) and errors (non-200 answers, failed or
   timed-out connections); held_latency_max_s over the requests that finished before the server closed
   any hostile socket (while all N were held); closed_by_server: hostile sockets whose recv returned
   b"" or failed (the server closed them) by the end of the row, and closed_after_s_max: seconds from
   a socket's connect to that close; server_rss_mb: the server's resident memory while the sockets
   were held. Target (issue): a normal client is served within 2 s while 1000 slowloris connections
   are held; target_met: every normal request of the row answered 200 within target_s.

2. Abandoned request. A raw socket posts a long request (--long-steps, default 1000 steps) and closes
   the connection: ``abandon_stream`` posts /v1/generate/stream and closes after reading the first
   ``event: step``; ``abandon_generate`` posts /v1/generate and closes after --abandon-after seconds
   (default 0.3). Right after the close a normal POST /v1/generate {"n": 1, "steps": 10} is sent;
   latency_*_s is the time from the close to its answer. freed_after_s = that latency minus the
   request's own sampling time (the answer's "seconds") minus the HTTP overhead of a lone request of
   the same size (reference_s is that lone request's median latency, measured first): the time from
   the close until the server started sampling the next request. --repeats times (default 10); p50
   and max. full_request_s: a lone long request run to the end (what an uncancelled one would cost).
   Target (issue): the server is freed within 1 s.

Rerun (writes benchmarks/results/serve_hostile.json and .md; about 3 minutes):
    python benchmarks/serve_hostile.py --ckpt runs/quickstart
    python benchmarks/serve_hostile.py --ckpt runs/quickstart --sockets 200 \\
        --modes baseline headers --short-read-timeout 0
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import publish, run_main  # noqa: E402
from benchmarks.serve_load import free_port, start_server, stop_server  # noqa: E402
from benchmarks.slowloris import HOST, Hostile, nofile_at_least, server_fds, server_rss_mb  # noqa: E402

MODES = ["baseline", "headers", "keepalive", "body"]
COLUMNS = [
    "scenario",
    "read_timeout_s",
    "sockets",
    "requests",
    "errors",
    "latency_p50_s",
    "latency_p90_s",
    "latency_max_s",
    "held_latency_max_s",
    "closed_by_server",
    "closed_after_s_max",
    "server_rss_mb",
    "reference_s",
    "freed_after_s_p50",
    "freed_after_s_max",
    "target_s",
    "target_met",
]


def normal_client(url: str, seconds: float, body: dict, timeout: float) -> list[dict]:
    """Alternate GET /healthz and POST /v1/generate for ``seconds``; one record per request."""
    recs = []
    deadline = time.perf_counter() + seconds
    with httpx.Client(base_url=url, timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0)) as http:
        i = 0
        while time.perf_counter() < deadline:
            endpoint = "healthz" if i % 2 == 0 else "generate"
            t0 = time.perf_counter()
            try:
                r = (
                    http.get("/healthz")
                    if endpoint == "healthz"
                    else http.post("/v1/generate", json={**body, "seed": i})
                )
                status = r.status_code
            except httpx.HTTPError as e:
                status = type(e).__name__
            t1 = time.perf_counter()
            recs.append({"endpoint": endpoint, "t0": t0, "t1": t1, "status": status})
            if status != 200:
                time.sleep(0.05)
            i += 1
    return recs


def pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 3) if xs else None


def slowloris_row(
    url: str, port: int, proc: subprocess.Popen, mode: str, n: int, read_timeout: float, args: argparse.Namespace
) -> dict:
    body = {"n": 1, "steps": args.steps}
    hostile = Hostile(port, mode, n if mode != "baseline" else 0, args.trickle_s)
    with nofile_at_least(n + 512):
        t_open = time.perf_counter()
        hostile.open()
        open_s = time.perf_counter() - t_open
        opened = len(hostile.socks) + len(hostile.closed)
        time.sleep(0.5)  # let the server accept them
        rss, fds_held = server_rss_mb(proc.pid), server_fds(proc.pid)
        try:
            recs = normal_client(url, args.seconds, body, timeout=args.client_timeout)
        finally:
            fds_end = server_fds(proc.pid)
            hostile.stop()
    first_close = min((t for t, _ in hostile.closed), default=float("inf"))
    ok = [r for r in recs if r["status"] == 200]
    lat = [r["t1"] - r["t0"] for r in ok]
    held = [r["t1"] - r["t0"] for r in ok if r["t1"] < first_close] if mode != "baseline" else []
    by_ep = {ep: [r["t1"] - r["t0"] for r in ok if r["endpoint"] == ep] for ep in ("healthz", "generate")}
    statuses: dict[str, int] = {}
    for r in recs:
        if r["status"] != 200:
            statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    closed_after = [a for _, a in hostile.closed]
    errors = len(recs) - len(ok)
    row = {
        "scenario": f"slowloris_{mode}" if mode != "baseline" else "baseline",
        "read_timeout_s": read_timeout,
        "sockets": opened,
        "requests": len(recs),
        "errors": errors,
        "latency_p50_s": pct(lat, 50),
        "latency_p90_s": pct(lat, 90),
        "latency_max_s": pct(lat, 100),
        "held_latency_max_s": pct(held, 100),
        "closed_by_server": len(hostile.closed) if mode != "baseline" else None,
        "closed_after_s_max": pct(closed_after, 100),
        "server_rss_mb": rss,
        "target_s": 2.0,
        "target_met": bool(recs) and errors == 0 and max(lat) <= 2.0,
        # JSON-only details
        "sockets_requested": n if mode != "baseline" else 0,
        "open_errors": hostile.open_errors,
        "open_s": round(open_s, 2),
        "trickle_s": args.trickle_s,
        "seconds": args.seconds,
        "steps": args.steps,
        "held_requests": len(held),
        "healthz_latency_max_s": pct(by_ep["healthz"], 100),
        "generate_latency_max_s": pct(by_ep["generate"], 100),
        "generate_latency_p50_s": pct(by_ep["generate"], 50),
        "error_kinds": statuses,
        "closed_after_s_p50": pct(closed_after, 50),
        "closed_after_s_min": pct(closed_after, 0),
        "answered_by_server": hostile.answered,
        "server_fds_held": fds_held,
        "server_fds_end": fds_end,
    }
    return row


def raw_post(port: int, path: str, body: dict) -> socket.socket:
    data = json.dumps(body).encode()
    s = socket.create_connection((HOST, port), timeout=60)
    s.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    return s


def timed_post(http: httpx.Client, body: dict) -> tuple[float, dict | None, int | str]:
    t0 = time.perf_counter()
    try:
        r = http.post("/v1/generate", json=body)
        status, result = r.status_code, (r.json() if r.status_code == 200 else None)
    except httpx.HTTPError as e:
        status, result = type(e).__name__, None
    return time.perf_counter() - t0, result, status


def wait_idle(http: httpx.Client, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if http.get("/healthz").json()["pending"] == 0:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)


def abandon_rows(url: str, port: int, read_timeout: float, args: argparse.Namespace) -> list[dict]:
    short = {"n": 1, "steps": args.steps}
    long = {"n": 1, "steps": args.long_steps}
    with httpx.Client(
        base_url=url, timeout=args.client_timeout, limits=httpx.Limits(max_keepalive_connections=0)
    ) as http:
        refs = [timed_post(http, {**short, "seed": k}) for k in range(7)][2:]  # first two: warm-up
        ref_lat = [t for t, r, _ in refs if r]
        overhead = float(np.median([t - r["seconds"] for t, r, _ in refs if r]))
        full_s, _, _ = timed_post(http, {**long, "seed": 0})
        rows = []
        for scenario in ("abandon_stream", "abandon_generate"):
            lats, freed, own, pending_after, statuses = [], [], [], [], {}
            for i in range(args.repeats):
                wait_idle(http)
                if scenario == "abandon_stream":
                    s = raw_post(port, "/v1/generate/stream", {**long, "seed": 1000 + i})
                    buf = b""
                    while b"event: step" not in buf:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        buf += chunk
                else:
                    s = raw_post(port, "/v1/generate", {**long, "seed": 1000 + i})
                    time.sleep(args.abandon_after)
                s.close()
                t_close = time.perf_counter()
                t, result, status = timed_post(http, {**short, "seed": 2000 + i})
                latency = time.perf_counter() - t_close  # close -> answer (t is the request alone)
                if result is None:
                    statuses[str(status)] = statuses.get(str(status), 0) + 1
                    continue
                try:
                    pending_after.append(http.get("/healthz").json()["pending"])
                except httpx.HTTPError:
                    pass
                lats.append(latency)
                own.append(result["seconds"])
                freed.append(latency - result["seconds"] - overhead)
            wait_idle(http)
            errors = args.repeats - len(lats)
            rows.append(
                {
                    "scenario": scenario,
                    "read_timeout_s": read_timeout,
                    "requests": args.repeats,
                    "errors": errors,
                    "latency_p50_s": pct(lats, 50),
                    "latency_p90_s": pct(lats, 90),
                    "latency_max_s": pct(lats, 100),
                    "reference_s": pct(ref_lat, 50),
                    "freed_after_s_p50": pct(freed, 50),
                    "freed_after_s_max": pct(freed, 100),
                    "target_s": 1.0,
                    "target_met": bool(freed) and errors == 0 and max(freed) <= 1.0,
                    # JSON-only details
                    "long_steps": args.long_steps,
                    "steps": args.steps,
                    "abandon_after_s": args.abandon_after if scenario == "abandon_generate" else "first step event",
                    "full_request_s": round(full_s, 3),
                    "http_overhead_s": round(overhead, 4),
                    "own_sampling_s_p50": pct(own, 50),
                    "pending_after_max": max(pending_after, default=None),
                    "freed_after_s": [round(f, 3) for f in freed],
                    "error_kinds": statuses,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="runs/quickstart", help="checkpoint folder to serve (default: runs/quickstart)")
    ap.add_argument("--sockets", type=int, default=1000, help="slowloris sockets per hostile row (default: 1000)")
    ap.add_argument(
        "--modes",
        nargs="+",
        default=MODES,
        choices=MODES,
        help="slowloris rows on the default server (default: all of %(choices)s)",
    )
    ap.add_argument(
        "--read-timeout",
        type=float,
        default=10.0,
        help="`sedlm serve --read-timeout` of the main server (default: 10, the server's default)",
    )
    ap.add_argument(
        "--short-read-timeout",
        type=float,
        default=2.0,
        help="also run the headers row on a server with this --read-timeout; 0 skips it (default: 2)",
    )
    ap.add_argument(
        "--seconds", type=float, default=20.0, help="normal-client duration of each slowloris row (default: 20)"
    )
    ap.add_argument(
        "--trickle-s", type=float, default=3.0, help="seconds between a hostile socket's bytes (default: 3)"
    )
    ap.add_argument("--steps", type=int, default=10, help="steps of the normal client's /v1/generate (default: 10)")
    ap.add_argument("--long-steps", type=int, default=1000, help="steps of the abandoned request (default: 1000)")
    ap.add_argument(
        "--abandon-after",
        type=float,
        default=0.3,
        help="seconds before a plain /v1/generate is abandoned (default: 0.3)",
    )
    ap.add_argument("--repeats", type=int, default=10, help="abandoned requests per scenario (default: 10)")
    ap.add_argument(
        "--client-timeout", type=float, default=30.0, help="normal client's timeout per request (default: 30)"
    )
    ap.add_argument("--server-threads", type=int, default=1, help="OMP_NUM_THREADS of the server (default: 1)")
    ap.add_argument("--skip-abandon", action="store_true", help="slowloris rows only")
    args = ap.parse_args(argv)
    if not Path(args.ckpt, "config.json").is_file():
        ap.error(f"'{args.ckpt}' is not a checkpoint folder; train one with `sedlm quickstart` or pass --ckpt")
    if args.sockets < 1 or args.seconds <= 0 or args.trickle_s <= 0 or args.repeats < 1 or args.read_timeout <= 0:
        ap.error("--sockets, --seconds, --trickle-s, --repeats and --read-timeout must be positive")
    rows: list[dict] = []
    servers = [(args.read_timeout, args.modes, not args.skip_abandon)]
    if args.short_read_timeout > 0:
        servers.append((args.short_read_timeout, ["headers"], False))
    with tempfile.TemporaryFile() as log:
        for read_timeout, modes, abandon in servers:
            port = free_port()
            threads = str(args.server_threads)
            proc = start_server(
                args.ckpt,
                port,
                ["--read-timeout", str(read_timeout), "--threads", threads],
                log,
                env={**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads},
            )
            url = f"http://{HOST}:{port}"
            try:
                with httpx.Client(base_url=url, timeout=60) as http:
                    http.post("/v1/generate", json={"n": 1, "steps": 1})  # warm-up
                for mode in modes:
                    rows.append(slowloris_row(url, port, proc, mode, args.sockets, read_timeout, args))
                    print(json.dumps(rows[-1]), flush=True)
                    time.sleep(1.0)  # the server drops the closed sockets
                if abandon:
                    rows += abandon_rows(url, port, read_timeout, args)
            finally:
                stop_server(proc)
    publish("serve_hostile", "serve_hostile.py", rows, COLUMNS)
    return 0


if __name__ == "__main__":
    run_main(main)
