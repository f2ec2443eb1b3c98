"""Load check of ``sedlm serve``: concurrent clients against one server process.

Starts ``python -m sedlm serve --ckpt CKPT`` on a free loopback port (default limits: one model call
at a time, at most 8 requests running or queued), waits for /healthz, then for each client count C
and endpoint runs C client threads for --seconds: each posts a request, waits for the whole answer
and posts the next. Latency is measured by the client and includes queueing; sampling_s_mean is the
server's own sampling time per request, so latency minus it is time spent waiting for the model.
A request that started before the deadline is allowed to finish and counts. ``stream`` reads the
server-sent events to the final result (latency: to the result; first_event_s_p50: to the first event).
Rows: requests/s, tokens/s (n x seq_len canvas tokens of successful requests per wall second),
latency p50/p90/p99 in seconds, errors (non-200 answers or failed connections).

Rerun (writes benchmarks/results/serve_load.json and .md):
    python benchmarks/serve_load.py --ckpt runs/quickstart
    python benchmarks/serve_load.py --ckpt runs/quickstart --clients 1 8 --endpoints generate stream --seconds 30
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: `benchmarks` and `sedlm`

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import publish, run_main  # noqa: E402
from sedlm.errors import SedlmError  # noqa: E402

COLUMNS = [
    "endpoint",
    "clients",
    "n",
    "steps",
    "sampler",
    "seq_len",
    "seconds",
    "requests",
    "errors",
    "requests_per_s",
    "tokens_per_s",
    "latency_p50_s",
    "latency_p90_s",
    "latency_p99_s",
    "sampling_s_mean",
    "first_event_s_p50",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    ckpt: str, port: int, extra: list[str], log: IO[bytes], env: dict[str, str] | None = None, timeout: float = 120.0
) -> subprocess.Popen:
    """``sedlm serve`` on loopback in a subprocess, its stderr to ``log`` (a file: a pipe nobody reads
    could fill and block the server); returns once /healthz answers."""
    cmd = [sys.executable, "-m", "sedlm", "serve", "--ckpt", ckpt, "--host", "127.0.0.1", "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise SedlmError(
                f"the server exited ({proc.returncode}): {log.read().decode(errors='replace').strip()[-2000:]}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SedlmError(f"the server did not answer /healthz within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def one_request(http: httpx.Client, endpoint: str, body: dict) -> tuple[int, dict | None, float | None]:
    """(status, result body, seconds to the first stream event) for one request."""
    if endpoint != "stream":
        r = http.post(f"/v1/{endpoint}", json=body)
        return r.status_code, r.json() if r.status_code == 200 else None, None
    start, first, result = time.perf_counter(), None, None
    with http.stream("POST", "/v1/generate/stream", json=body) as r:
        if r.status_code != 200:
            return r.status_code, None, None
        event = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
                first = first or time.perf_counter() - start
            elif line.startswith("data: ") and event in ("result", "error"):
                result = json.loads(line[6:]) if event == "result" else None
    return (200, result, first) if result is not None else (500, None, first)


def run_load(url: str, endpoint: str, clients: int, seconds: float, body: dict) -> dict:
    """``clients`` threads posting back to back for ``seconds``; one results row."""
    latencies: list[float] = []
    firsts: list[float] = []
    results: list[dict] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            i = 0
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    status, result, first = one_request(http, endpoint, {**body, "seed": k * 100_000 + i})
                except httpx.HTTPError:
                    status, result, first = 0, None, None
                with lock:
                    if status == 200:
                        latencies.append(time.perf_counter() - t0)
                        results.append(result)
                        if first is not None:
                            firsts.append(first)
                    else:
                        errors[0] += 1
                i += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array(latencies) if latencies else np.array([float("nan")])
    last = results[-1] if results else {}
    return {
        "endpoint": endpoint,
        "clients": clients,
        "n": body["n"],
        "steps": body["steps"],
        "sampler": last.get("sampler"),
        "seq_len": last.get("seq_len"),
        "seconds": round(wall, 2),
        "requests": len(latencies),
        "errors": errors[0],
        "requests_per_s": round(len(latencies) / wall, 3),
        "tokens_per_s": round(sum(r["tokens"] for r in results) / wall, 1),
        "latency_p50_s": round(float(np.percentile(lat, 50)), 3),
        "latency_p90_s": round(float(np.percentile(lat, 90)), 3),
        "latency_p99_s": round(float(np.percentile(lat, 99)), 3),
        "sampling_s_mean": round(float(np.mean([r["seconds"] for r in results])), 3) if results else None,
        "first_event_s_p50": round(float(np.percentile(firsts, 50)), 3) if firsts else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="runs/quickstart", help="checkpoint folder to serve (default: runs/quickstart)")
    ap.add_argument(
        "--clients", nargs="+", type=int, default=[8], help="concurrent client counts, one row each (default: 8)"
    )
    ap.add_argument(
        "--endpoints",
        nargs="+",
        default=["generate"],
        choices=["generate", "infill", "stream"],
        help="endpoints to load, one row each (default: generate)",
    )
    ap.add_argument("--seconds", type=float, default=30.0, help="duration of each row (default: 30)")
    ap.add_argument("--n", type=int, default=1, help="samples per request (default: 1)")
    ap.add_argument("--steps", type=int, default=50, help="denoising steps per request (default: 50)")
    ap.add_argument("--sampler", help="sed sampler (default: the checkpoint's sample.sampler)")
    ap.add_argument("--template", default="ROMEO. [___] of Denmark [___:8] revenge.", help="template for infill")
    ap.add_argument("--server-args", default="", help="extra `sedlm serve` flags, e.g. '--max-queue 16'")
    args = ap.parse_args(argv)
    if not Path(args.ckpt, "config.json").is_file():
        ap.error(f"'{args.ckpt}' is not a checkpoint folder; train one with `sedlm quickstart` or pass --ckpt")
    if min(args.clients) < 1 or args.seconds <= 0:
        ap.error("--clients and --seconds must be positive")
    port = free_port()
    log = tempfile.TemporaryFile()
    proc = start_server(args.ckpt, port, args.server_args.split(), log)
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        for endpoint in args.endpoints:
            body: dict = {"n": args.n, "steps": args.steps, **({"sampler": args.sampler} if args.sampler else {})}
            if endpoint == "infill":
                body["template"] = args.template
            with httpx.Client(base_url=url, timeout=600) as http:
                one_request(http, endpoint, {**body, "steps": 1})  # warm-up
            for clients in args.clients:
                rows.append(run_load(url, endpoint, clients, args.seconds, body))
                print(json.dumps(rows[-1]), flush=True)
    finally:
        stop_server(proc)
        log.close()
    publish("serve_load", "serve_load.py", rows, COLUMNS)
    return 0


if __name__ == "__main__":
    run_main(main)
