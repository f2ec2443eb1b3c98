"""`sedlm serve`: the subcommand's options and its thin wrapper over ``create_app`` and uvicorn.
FastAPI and uvicorn are imported only when the command runs."""

from __future__ import annotations

import argparse
from dataclasses import fields

from sedlm.cli.flags import Number, count, positive
from sedlm.serve.limits import Limits


def cmd_serve(args: argparse.Namespace) -> int:
    from sedlm.serve.app import create_app
    from sedlm.serve.server import check_port, serve_forever

    check_port(args.host, args.port)  # before the model loads
    limits = Limits(**{f.name: getattr(args, f.name) for f in fields(Limits)})
    hosts = [h.strip() for h in args.allowed_hosts.split(",") if h.strip()] if args.allowed_hosts else None
    app = create_app(args.ckpt, limits, device=args.device, allowed_hosts=hosts)
    import torch

    print(
        f"serving {args.ckpt} on http://{args.host}:{args.port}/ (OpenAPI schema at /openapi.json; Ctrl-C stops; "
        f"{torch.get_num_threads()} CPU thread(s) shared by --max-concurrent {limits.max_concurrent} model call(s))"
    )
    serve_forever(app, host=args.host, port=args.port, read_timeout=args.read_timeout)
    return 0


def add_serve_parser(sub) -> None:
    """The `sedlm serve` subcommand and its limit flags (one per ``Limits`` field)."""
    v = sub.add_parser(
        "serve",
        help="HTTP API and a live page for a checkpoint",
        description="Serve a checkpoint over HTTP: POST /v1/generate, /v1/infill and /v1/generate/stream "
        "(server-sent events), GET /v1/model and /healthz, and a page at / that shows the text "
        "settling step by step. Requests over a limit are answered with a 4xx and the reason.",
    )
    v.add_argument(
        "--ckpt",
        required=True,
        help="checkpoint folder of any model family (its sampling options form the request schema)",
    )
    v.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    v.add_argument(
        "--port", type=Number(int, 0, maximum=65535), default=8000, help="port; 0 picks a free one (default: 8000)"
    )
    v.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    v.add_argument(
        "--read-timeout",
        "--header-timeout",
        dest="read_timeout",
        type=positive(),
        default=10.0,
        help="seconds a client may take to send a whole request (headers and body), on every request of a "
        "kept-alive connection, before the connection is closed (default: 10)",
    )
    v.add_argument(
        "--allowed-hosts",
        help="comma-separated Host header values to accept, e.g. localhost,127.0.0.1; others get 400 (default: any)",
    )
    for f in fields(Limits):
        v.add_argument(
            "--" + f.name.replace("_", "-"),
            type=count(),
            default=f.default,
            metavar="N",
            help=f"{f.metadata['help']} (default: {f.default})",
        )
    v.set_defaults(func=cmd_serve)
