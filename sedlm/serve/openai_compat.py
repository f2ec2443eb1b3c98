"""An OpenAI-compatible ``POST /v1/completions`` next to the native API, so that code written against
that interface (the official ``openai`` client, LangChain, eval harnesses) works unchanged.

Mapping: ``prompt`` is kept and continued by up to ``max_tokens`` tokens; ``suffix`` (OpenAI's own
insertion field) turns the request into infilling: the completion is written between ``prompt`` and
``suffix`` on a canvas with ``max_tokens`` free positions (a free-length blank). ``n``, ``seed`` and
``stop`` (the text is cut at the first stop string) are honoured; ``temperature`` and ``top_p`` go to
the family's sampling options of those names (a family without them answers 400); any other option
of the family (``steps``, ``sampler``, ``guidance``, ...) may be passed as an extra body field
(``extra_body`` in the openai client). ``choices[i].text`` holds only what the model wrote.
``stream: true`` sends each choice's text as one chunk (a diffusion model has no left-to-right
token order to stream), then ``data: [DONE]``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
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
) -> None:
    """Add ``POST /v1/completions`` to ``app``; ``run(job, request)`` runs a checked job."""

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
        except LimitError as e:
            return _error(e.status, str(e), "invalid_request_error")
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
        if req.suffix is not None:
            where = {"template": f"{prompt}[___]{req.suffix}"}
        else:
            where = {"prompt": prompt} if prompt else {}
        try:
            body = body_type(
                n=req.n, steps=req.steps, seed=req.seed, seq_len=given + req.max_tokens, **where, **options
            )
        except ValueError as e:  # pydantic: an option the family does not take, or a bad value
            raise SedlmError(
                str(e).splitlines()[0]
                + ": "
                + "; ".join(f"{'.'.join(map(str, err['loc']))} {err['msg']}" for err in e.errors())
            ) from None  # type: ignore[attr-defined]
        result = await run(runner.check(body), request)
        texts = ["".join(p["text"] for p in pieces if p["generated"]) for pieces in result["spans"]]
        choices = []
        for i, text in enumerate(texts):
            text, reason = _cut(text, req.stop)
            choices.append({"text": text, "index": i, "logprobs": None, "finish_reason": reason})
        completion_tokens = sum(len(tok.encode(c["text"])) for c in choices)
        out = {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": choices,
            "usage": {
                "prompt_tokens": given,
                "completion_tokens": completion_tokens,
                "total_tokens": given * len(choices) + completion_tokens,
            },
        }
        if not req.stream:
            return out

        def events():
            for c in choices:
                yield f"data: {json.dumps({**out, 'choices': [c], 'usage': None})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")
