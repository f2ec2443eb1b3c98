"""The HTTP API and the page: ``create_app(model_or_ckpt, limits)`` returns a FastAPI app.

    GET  /                     the page (sedlm/serve/static/index.html)
    GET  /healthz              {"status": "ok", "pending": k}
    GET  /v1/model             the checkpoint's configuration, sampling defaults and the limits
    POST /v1/generate          unconditional, prompt or seq2seq source -> texts
    POST /v1/infill            a template with [___] / [___:N] blanks -> texts
    POST /v1/generate/stream   server-sent events: "step" events with the decoded text while the
                               sampler runs (at most Limits.stream_events of them), "block" events
                               with each finished block of a block model, then "result" (or
                               "error"); closing the connection stops the sampling

User errors (``SedlmError``: no blanks, unknown sampler, text too long for the model) answer 400 with
the message, as does a prompt plus max_tokens over --max-seq-len (no schema can bound the sum); limits
answer 413 (body or text size), 422 (n, steps, seq_len; unknown fields, bad JSON) or 503 (queue full).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sedlm.errors import SedlmError
from sedlm.families.base import count_parameters
from sedlm.pretrained import PretrainedLM
from sedlm.serve.limits import Limits
from sedlm.serve.openai_compat import add_completions
from sedlm.serve.runner import Busy, Cancelled, Job, LimitError, Runner, TimeLimit
from sedlm.serve.schemas import ErrorBody, GenerateResponse, ModelInfo, request_models

log = logging.getLogger("sedlm.serve")


class BodyLimit:
    """Answer 413 to a request body over ``max_bytes``, judged on Content-Length and on the bytes
    actually received (a missing or false Content-Length does not get past it)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._reject(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._reject(scope, receive, send)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # later calls report a disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"request body over this server's limit of {self.max_bytes} bytes (set by --max-body-bytes)"
        await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)


LIMIT_FLAGS = {
    "n": "--max-n",
    "steps": "--max-steps",
    "seq_len": "--max-seq-len",
    "prompt": "--max-text-chars",
    "src": "--max-text-chars",
    "template": "--max-text-chars",
}


def _with_flag(err: dict[str, Any]) -> str:
    """A validation message, naming the server flag when the bound broken is one of this server's limits."""
    field = err["loc"][-1] if err["loc"] else None
    if err["type"] in ("less_than_equal", "string_too_long") and field in LIMIT_FLAGS:
        return f"{err['msg']} (this server's limit, set by {LIMIT_FLAGS[field]})"
    return err["msg"]


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def create_app(
    model_or_ckpt: PretrainedLM | str | Path,
    limits: Limits | None = None,
    device: str = "cpu",
    allowed_hosts: list[str] | None = None,
) -> FastAPI:
    """The app for a loaded model or a checkpoint folder (loaded once, here). ``allowed_hosts``: Host
    header values to accept (e.g. ["localhost", "127.0.0.1"]); others get 400. The interactive docs
    pages are off (they load their scripts from a CDN, blank offline); the schema is at /openapi.json."""
    from sedlm.api import load_pretrained

    model = model_or_ckpt if isinstance(model_or_ckpt, PretrainedLM) else load_pretrained(model_or_ckpt, device=device)
    runner = Runner(model, limits or Limits())
    app = FastAPI(
        title="sedlm",
        version="1",
        summary="Continuous diffusion language model: generate, infill, stream.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.runner = runner
    app.add_middleware(BodyLimit, max_bytes=runner.limits.max_body_bytes)
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    html = (resources.files("sedlm.serve") / "static" / "index.html").read_text(encoding="utf-8")

    @app.exception_handler(SedlmError)
    async def user_error(_: Request, e: SedlmError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=400)

    @app.exception_handler(LimitError)
    async def over_limit(_: Request, e: LimitError) -> JSONResponse:
        if e.status == 422:  # shaped like FastAPI's validation errors, as the schema says for 422
            return JSONResponse(
                {"detail": [{"loc": ["body", e.field], "msg": str(e), "type": "over_limit"}]}, status_code=422
            )
        return JSONResponse({"detail": str(e)}, status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        # loc, msg and type only: the offending input may not be JSON at all (inf, nan, bytes)
        detail = [{"loc": list(err["loc"]), "msg": _with_flag(err), "type": err["type"]} for err in e.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(TimeLimit)
    async def too_long(_: Request, e: TimeLimit) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=503)

    @app.exception_handler(Cancelled)
    async def client_gone(_: Request, e: Cancelled) -> JSONResponse:
        return JSONResponse({"detail": "the client closed the connection"}, status_code=499)

    @app.exception_handler(Busy)
    async def busy(_: Request, e: Busy) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=503, headers={"Retry-After": "1"})

    async def run(job: Job, request: Request) -> dict[str, Any]:
        """Run an admitted job in a worker thread; a client that disconnects cancels it (the sampler
        stops at its next step and the slot is freed)."""
        runner.admit()
        try:
            work = asyncio.ensure_future(run_in_threadpool(runner.run, job))
            while not work.done():
                await asyncio.wait({work}, timeout=0.25)
                if not work.done() and await request.is_disconnected():
                    job.cancel.set()
            return work.result()
        finally:
            runner.done()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(html)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "pending": runner.pending}

    @app.get("/v1/model", response_model=ModelInfo)
    async def model_info() -> dict[str, Any]:
        cfg, family = model.config, model.family
        s = cfg.sample
        defaults: dict[str, Any] = {"n": 1, "steps": s.steps, "seed": s.seed, **family.resolve_options(s, {})}
        return {
            "family": model.family_name,
            "params": count_parameters(model.model),
            "seq_len": cfg.data.seq_len,
            "vocab_size": cfg.model.vocab_size,
            "d_model": cfg.model.d_model,
            "n_layers": cfg.model.n_layers,
            "n_heads": cfg.model.n_heads,
            "d_embed": cfg.model.d_embed if family.uses_embedding_table else None,
            "samplers": list(family.samplers),
            "options": [o.describe() for o in family.options if o.per_request],
            "requests": list(family.requests),
            "defaults": defaults,
            "limits": {**runner.limits.summary(), "max_seq_len": runner.max_seq_len},
        }

    # Request bodies derived from the family's declared sampling options. Annotations are set on the
    # handlers directly: under postponed evaluation FastAPI could not resolve these local classes.
    lim = runner.limits
    GenerateBody, InfillBody, StreamBody = request_models(
        model.family, lim.max_n, lim.max_steps, runner.max_seq_len, lim.max_text_chars
    )

    async def generate(req, request: Request) -> dict[str, Any]:
        return await run(runner.check(StreamBody(**req.model_dump())), request)

    async def infill(req, request: Request) -> dict[str, Any]:
        return await run(runner.check(StreamBody(**req.model_dump())), request)

    async def stream(req, request: Request) -> StreamingResponse:
        job = runner.check(req)
        runner.admit()
        queue = _start(runner, job)  # before the response, so that an admitted job always ends with done()
        return StreamingResponse(
            _relay(queue, job, request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    generate.__annotations__ = {"req": GenerateBody, "request": Request, "return": dict[str, Any]}
    infill.__annotations__ = {"req": InfillBody, "request": Request, "return": dict[str, Any]}
    stream.__annotations__ = {"req": StreamBody, "request": Request, "return": StreamingResponse}
    errors: dict[int | str, dict[str, Any]] = {
        400: {
            "model": ErrorBody,
            "description": "a user error (no blanks, text too long for the model, a request the "
            "model's family cannot serve, a bad option value)",
        },
        413: {"model": ErrorBody, "description": "request body or text over this server's limits"},
        503: {
            "model": ErrorBody,
            "description": "the queue is full (retry after Retry-After) or the time limit ran out",
        },
    }

    def events(job: Job, request: Request) -> AsyncIterator[tuple[str, Any]]:
        runner.admit()  # raises Busy before any response starts
        return _events(_start(runner, job), job, request)

    add_completions(app, model, runner, StreamBody, run, events)
    app.post("/v1/generate", response_model=GenerateResponse, responses=errors)(generate)
    app.post("/v1/infill", response_model=GenerateResponse, responses=errors)(infill)
    app.post(
        "/v1/generate/stream",
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": "events 'step' ({step, steps, texts, spans}); from a block model also 'block' "
                "({spans}: each row's finished blocks, final); then 'result' or 'error'",
            },
            **errors,
        },
    )(stream)

    return app


def _start(runner: Runner, job: Job) -> asyncio.Queue[tuple[str, Any]]:
    """Run an admitted ``job`` in a thread; its step previews, then "result" or "error", then "end"
    arrive on the returned queue."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def put(event: str, data: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (event, data))
        except RuntimeError:  # the event loop is gone (server shutting down)
            job.cancel.set()

    def work() -> None:
        try:
            put(
                "result",
                runner.run(
                    job,
                    lambda step, steps, texts, spans: put(
                        "step", {"step": step, "steps": steps, "texts": texts, "spans": spans}
                    ),
                    lambda spans: put("block", {"spans": spans}),
                ),
            )
        except Cancelled:
            pass
        except TimeLimit as e:
            put("error", {"detail": str(e)})
        except SedlmError as e:
            put("error", {"detail": str(e)})
        except Exception as e:  # reported as an event: the 200 status has already gone out
            log.exception("sampling failed")
            put("error", {"detail": f"internal error: {type(e).__name__}"})
        finally:
            runner.done()
            put("end", None)

    threading.Thread(target=work, name="sedlm-stream", daemon=True).start()
    return queue


async def _events(queue: asyncio.Queue[tuple[str, Any]], job: Job, request: Request) -> AsyncIterator[tuple[str, Any]]:
    """(event, data) from the queue until "end"; cancel the job when the client leaves or the stream is closed."""
    try:
        while True:
            try:
                event, data = await asyncio.wait_for(queue.get(), timeout=0.5)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                continue
            if event == "end":
                return
            yield event, data
    finally:  # normal end, client gone (the response task is cancelled) or generator closed
        job.cancel.set()


async def _relay(queue: asyncio.Queue[tuple[str, Any]], job: Job, request: Request) -> AsyncIterator[str]:
    """Server-sent events from the queue."""
    async for event, data in _events(queue, job, request):
        yield _sse(event, data)
