"""Model calls for the server: request checking, a bounded queue, cancellation and step previews.

Work runs in worker threads, one model call at a time by default (``Limits.max_concurrent``), served
in arrival order, so memory stays bounded however many clients connect; at most ``Limits.max_queue``
requests may be running or waiting. A job carries a ``threading.Event``: the sampler callback checks
it after every step and raises ``Cancelled``, which unwinds the sampler when nobody waits for the result.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from sedlm.families.base import Request
from sedlm.pretrained import PretrainedLM
from sedlm.sampling.blocks import on_finished_blocks, step_count
from sedlm.sampling.templates import Layout
from sedlm.serve.limits import Limits
from sedlm.serve.schemas import StreamRequest

OnStep = Callable[[int, int, list[str], list[list[dict[str, Any]]]], None]  # (step done, steps, texts, spans)
OnBlock = Callable[[list[list[dict[str, Any]]]], None]  # spans of each row's finished blocks


class Cancelled(Exception):
    """The client went away: stop sampling."""


class Busy(Exception):
    """The queue is full."""


class LimitError(Exception):
    """A request over one of the server's limits; ``status`` is the HTTP code to answer with and
    ``field`` the request field at fault (a 422 names it, as validation errors do)."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.field = status, field


class TimeLimit(Exception):
    """A request ran past the server's per-request time limit."""


class FairGate:
    """A first-come-first-served semaphore whose waiters can give up (a plain Semaphore lets late
    arrivals overtake, which starves some clients under load)."""

    def __init__(self, slots: int):
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()
        self._free = slots

    def acquire(self, cancel: threading.Event) -> bool:
        """Wait for a slot in arrival order; False if ``cancel`` was set first."""
        me = object()
        with self._cond:
            self._waiting.append(me)
            try:
                while self._waiting[0] is not me or self._free == 0:
                    if cancel.is_set():
                        return False
                    self._cond.wait(timeout=0.1)
                self._free -= 1
                return True
            finally:
                self._waiting.remove(me)
                self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            self._free += 1
            self._cond.notify_all()


@dataclass
class Job:
    """One checked request: what to sample and how."""

    request: Request  # built and checked once, by the model's family
    drop_given_prefix: bool
    end: int | None = None  # the max_tokens cut (``PretrainedLM.cap``)
    cancel: threading.Event = field(default_factory=threading.Event)


class Runner:
    """Owns the model; checks requests, admits them to the queue and runs them."""

    def __init__(self, model: PretrainedLM, limits: Limits):
        self.model, self.limits = model, limits
        self.max_seq_len = limits.max_seq_len or model.config.data.seq_len
        self._gate = FairGate(limits.max_concurrent)
        self._lock = threading.Lock()
        self.pending = 0  # requests admitted and not yet finished

    def check(self, req: StreamRequest) -> Job:
        """Turn a request into a job, or raise ``LimitError`` / ``SedlmError`` with a message."""
        lim, s, family = self.limits, self.model.config.sample, self.model.family
        steps = req.steps or min(s.steps, lim.max_steps)  # an unset step count never exceeds the limit
        for name in ("prompt", "src", "template"):
            text = getattr(req, name)
            if text is not None and len(text) > lim.max_text_chars:
                raise LimitError(
                    413,
                    f"{name} is {len(text)} characters, over this server's limit of "
                    f"{lim.max_text_chars} (set by --max-text-chars)",
                )
        layout, seq_len, end = self.model.canvas(req.prompt, req.src, req.template, req.seq_len, req.max_tokens)
        for name, value, cap, flag in [
            ("n", req.n, lim.max_n, "--max-n"),
            ("steps", steps, lim.max_steps, "--max-steps"),
            ("seq_len", seq_len, self.max_seq_len, "--max-seq-len"),
        ]:
            if value > cap:
                # a length the request asked for is a 422 like any bounded field; one that follows from the
                # text plus max_tokens is a 400, since no schema can bound it
                asked = name != "seq_len" or (req.seq_len or 0) > cap
                message = f"{name}={value} is over this server's limit of {cap} (set by {flag})"
                if not asked:
                    message = (
                        f"the prompt plus max_tokens needs {value} positions, over this server's limit of {cap} "
                        f"(set by {flag}); ask for fewer max_tokens"
                    )
                raise LimitError(422 if asked else 400, message, name)
        given = {o.name: getattr(req, o.name, None) for o in family.options if o.per_request}
        # a bad option value or a request the family cannot serve is a 400 before any work starts
        request = self.model.request(req.n, steps, req.seed, seq_len, layout, src=req.src is not None, **given)
        return Job(request, req.src is not None, end)

    def admit(self) -> None:
        """Take a place in the queue or raise ``Busy``; every admitted job must end with ``done``."""
        with self._lock:
            if self.pending >= self.limits.max_queue:
                raise Busy(
                    f"the server is busy ({self.pending} requests running or queued, limit {self.limits.max_queue} "
                    "set by --max-queue); retry later"
                )
            self.pending += 1

    def done(self) -> None:
        with self._lock:
            self.pending -= 1

    def run(self, job: Job, on_step: OnStep | None = None, on_block: OnBlock | None = None) -> dict[str, Any]:
        """Sample (blocking; call from a worker thread). Raises ``Cancelled`` once ``job.cancel`` is set.
        A block model calls ``on_block`` with the spans of each row's finished blocks as each block starts."""
        if not self._gate.acquire(job.cancel):
            raise Cancelled()
        r = job.request
        callback = self._callback(job, on_step)
        if on_block is not None:
            callback = on_finished_blocks(
                lambda prefix: on_block(self.model.spans(self.model.cap(prefix, job.end), _cut(r.layout, prefix))),
                callback,
            )
        try:
            start = time.perf_counter()
            ids = self.model.cap(self.model.run(r, callback), job.end)
            seconds = time.perf_counter() - start
        finally:
            self._gate.release()
        return {
            "texts": self.model.texts(ids, r.layout, job.drop_given_prefix),
            "spans": self.model.spans(ids, r.layout, job.drop_given_prefix),
            "family": self.model.family_name,
            "n": r.n,
            "steps": r.steps,
            "options": r.options,
            "seed": r.seed,
            "seq_len": r.seq_len,
            "tokens": r.n * r.seq_len,
            "seconds": round(seconds, 4),
        }

    def _callback(self, job: Job, on_step: OnStep | None) -> Callable[[dict[str, Any]], None]:
        # Thinning: every step for short runs, every k-th (and the last) when steps > stream_events.
        cfg = self.model.config
        total = step_count(job.request.steps, cfg.diffusion.block_size, job.request.seq_len)  # all blocks' steps
        every = max(1, math.ceil(total / max(1, self.limits.stream_events)))
        deadline = time.monotonic() + self.limits.max_seconds if self.limits.max_seconds else None

        def callback(info: dict[str, Any]) -> None:
            if job.cancel.is_set():
                raise Cancelled()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeLimit(
                    f"the request ran past this server's limit of {self.limits.max_seconds} s "
                    "(set by --max-seconds); ask for fewer steps or samples"
                )
            i = int(info["i"])
            if on_step is not None and (i % every == 0 or i == total - 1):
                on_step(i + 1, total, *self.preview(info, job))

        return callback

    def preview(self, info: dict[str, Any], job: Job) -> tuple[list[str], list[list[dict[str, Any]]]]:
        """The texts (and their given/generated pieces) a sampler's current state decodes to."""
        ids = self.model.family.preview(self.model, info, job.request.layout)
        if ids is None:
            return [], []
        ids = self.model.cap(ids, job.end)
        return self.model.texts(ids, job.request.layout, job.drop_given_prefix), self.model.spans(
            ids, job.request.layout, job.drop_given_prefix
        )


def _cut(layout: Layout | None, prefix: torch.Tensor) -> Layout | None:
    """The part of ``layout`` over the first ``prefix.shape[-1]`` positions."""
    if layout is None:
        return None
    w = prefix.shape[-1]
    return Layout(layout.ids[..., :w], layout.given[..., :w], layout.no_pad[:w])
