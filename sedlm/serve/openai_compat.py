"""An OpenAI-compatible ``POST /v1/completions`` next to the native API, so that code written against
that interface (the official ``openai`` client, LangChain, eval harnesses) works unchanged.

Mapping: ``prompt`` is kept and continued by up to ``max_tokens`` tokens (a block model's canvas is
rounded up to whole blocks and cut at ``max_tokens``; it also ends at end-of-text); ``suffix`` (OpenAI's own
insertion field) turns the request into infilling: the completion is written between ``prompt`` and
``suffix`` on a canvas with ``max_tokens`` free positions (a free-length blank). ``n``, ``seed`` and
``stop`` (the text is cut at the first stop string) are honoured; ``temperature`` and ``top_p`` go to
the family's sampling options of those names (a family without them answers 400); any other option
of the family (``steps``, ``sampler``, ``guidance``, ...) may be passed as an extra body field
(``extra_body`` in the openai client). ``choices[i].text`` holds only what the model wrote.
``stream: true`` sends each block's text as a chunk as soon as the block is written for a block model
(diffusion.block_size); a whole-row model has no left-to-right order to stream and sends each
choice's text as one chunk. The last chunk of a choice carries its ``finish_reason``; then
``data: [DONE]``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from sedlm.errors import SedlmError
from sedlm.serve.runner import Busy, LimitError


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # the family's own options, checked against its declarations

    model: str = Field("sedlm", description="echoed back; the server holds one model")
    prompt: str | list[str] = Field("", description="text to continue (a list must hold one string)")
    suffix: str | None = Field(None, description="text after the completion: the completion is infilled between")
    max_tokens: int = Field(16, ge=1, description="positions the model may write")
    n: int = Field(1, ge=1)
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = Field(None, ge=0, le=2**53 - 1)
    stop: str | list[str] | None = None
    stream: bool = False
    steps: int | None = Field(None, ge=1, description="extension: denoising steps")


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    """OpenAI's error body, which its clients read."""

    error: ErrorInfo


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": OpenAIError, "description": "a user error (an option the family does not take, text too long, ...)"},
    413: {"model": OpenAIError, "description": "text over this server's limits"},
    503: {"model": OpenAIError, "description": "the queue is full or the time limit ran out"},
}


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}}, status_code=status)


def _cut(text: str, stop: str | list[str] | None) -> tuple[str, str]:
    """``text`` up to the first stop string, and the finish reason."""
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    cuts = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[: min(cuts)], "stop") if cuts else (text, "length")


def add_completions(
    app: FastAPI,
    model: Any,
    runner: Any,
    body_type: type[BaseModel],
    run: Callable[[Any, Request], Awaitable[dict[str, Any]]],
    events: Callable[[Any, Request], AsyncIterator[tuple[str, Any]]],
) -> None:
    """Add ``POST /v1/completions`` to ``app``; ``run(job, request)`` runs a checked job and
    ``events(job, request)`` admits one (``Busy`` when the queue is full) and runs it, yielding its
    ("block", {spans}), ("result", ...) or ("error", ...) events."""

    @app.post(
        "/v1/completions",
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": "a text_completion object, or its chunks when stream",
            },
            **ERRORS,
        },
    )
    async def completions(req: CompletionRequest, request: Request) -> Any:
        """Errors come in OpenAI's shape, {"error": {"message", "type", ...}}, which its clients read."""
        try:
            return await _complete(req, request)
        except SedlmError as e:
            return _error(400, str(e), "invalid_request_error")
        except LimitError as e:  # a canvas over --max-seq-len is a bad request here, as OpenAI answers one (400)
            return _error(400 if e.status == 422 else e.status, str(e), "invalid_request_error")
        except Busy as e:
            return _error(503, str(e), "server_busy")

    async def _complete(req: CompletionRequest, request: Request) -> Any:
        prompt = req.prompt if isinstance(req.prompt, str) else (req.prompt[0] if len(req.prompt) == 1 else None)
        if prompt is None:
            raise SedlmError("prompt must be one string (or a list of one); send one request per prompt")
        tok = model.tokenizer
        given = len(tok.encode(prompt)) + (len(tok.encode(req.suffix)) if req.suffix else 0)
        options = {
            k: v
            for k, v in {**(req.model_extra or {}), "temperature": req.temperature, "top_p": req.top_p}.items()
            if v is not None
        }
        if req.suffix is not None:  # a free-length blank between the two: the canvas holds max_tokens more
            where: dict[str, Any] = {"template": f"{prompt}[___]{req.suffix}", "seq_len": given + req.max_tokens}
        else:
            where = {"prompt": prompt} if prompt else {}
            where["max_tokens"] = req.max_tokens
        try:
            body = body_type(n=req.n, steps=req.steps, seed=req.seed, **where, **options)
        except ValueError as e:  # pydantic: an option the family does not take, or a bad value
            raise SedlmError(
                str(e).splitlines()[0]
                + ": "
                + "; ".join(f"{'.'.join(map(str, err['loc']))} {err['msg']}" for err in e.errors())
            ) from None  # type: ignore[attr-defined]
        job = runner.check(body)
        head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time())}
        if req.stream:
            return StreamingResponse(
                _chunks(events(job, request), {**head, "model": req.model}, req), media_type="text/event-stream"
            )
        result = await run(job, request)
        texts = _written(result["spans"])
        choices = []
        for i, text in enumerate(texts):
            text, reason = _cut(text, req.stop)
            choices.append({"text": text, "index": i, "logprobs": None, "finish_reason": reason})
        completion_tokens = sum(len(tok.encode(c["text"])) for c in choices)
        return {
            **head,
            "model": req.model,
            "choices": choices,
            "usage": {
                "prompt_tokens": given,
                "completion_tokens": completion_tokens,
                "total_tokens": given * len(choices) + completion_tokens,
            },
        }


def _written(spans: list[list[dict[str, Any]]]) -> list[str]:
    """Each row's text that the model wrote (the given prompt left out)."""
    return ["".join(p["text"] for p in pieces if p["generated"]) for pieces in spans]


async def _chunks(
    events: AsyncIterator[tuple[str, Any]], head: dict[str, Any], req: CompletionRequest
) -> AsyncIterator[str]:
    """Server-sent chunks: each choice's new text as its blocks finish (a block model) or once at the end,
    cut at the first stop string; a choice's last chunk has its finish_reason; then [DONE]. An error
    after the stream has begun is sent as an OpenAI error object."""
    sent = [""] * req.n
    finished = [False] * req.n

    def chunk(i: int, text: str, reason: str | None) -> str:
        choice = {"text": text, "index": i, "logprobs": None, "finish_reason": reason}
        return f"data: {json.dumps({**head, 'choices': [choice], 'usage': None})}\n\n"

    async for event, data in events:
        if event == "error":
            error = {"message": data["detail"], "type": "server_error", "param": None, "code": None}
            yield f"data: {json.dumps({'error': error})}\n\n"
            return
        if event not in ("block", "result"):
            continue
        for i, text in enumerate(_written(data["spans"])):
            if finished[i]:
                continue
            text, reason = _cut(text, req.stop)
            final = event == "result" or reason == "stop"
            if text.startswith(sent[i]) and (len(text) > len(sent[i]) or final):
                yield chunk(i, text[len(sent[i]) :], reason if final else None)
                sent[i], finished[i] = text, final
    yield "data: [DONE]\n\n"
