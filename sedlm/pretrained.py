"""Loading and saving trained models of any family, and the shared user-facing base class."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sedlm.config import Config
from sedlm.data.tokenizer import Tokenizer
from sedlm.devices import generation_autocast, resolve_device
from sedlm.errors import SedlmError
from sedlm.families import get_family
from sedlm.families.base import Family, Request, request_kind
from sedlm.ranges import SEED_MAX
from sedlm.sampling.blocks import on_finished_blocks
from sedlm.sampling.core import Callback
from sedlm.sampling.templates import Layout, layout_prompt, layout_source, layout_template
from sedlm.train.checkpoint import check_weights_fit, load_checkpoint, save_checkpoint


def build_from_weights(config: Config, weights: dict[str, torch.Tensor], tokenizer: Tokenizer) -> nn.Module:
    """Rebuild a family's network from its config and load ``weights`` strictly."""
    family = get_family(config.family)
    table = weights.get("embedding.table") if family.uses_embedding_table else None
    if family.uses_embedding_table and table is None:
        raise SedlmError(f"the checkpoint holds no embedding table; is it a {config.family} checkpoint?")
    model = family.build(config, tokenizer, table)
    check_weights_fit(
        model,
        weights,
        f"this {config.family} checkpoint",
        "its config.json was edited, or it was written by another sedlm version and must be retrained",
    )
    model.load_state_dict(weights)
    return model


class PretrainedLM:
    """A trained network of any family with its tokenizer and config; generation goes through the
    family (``sedlm.families.base.Family``). Subclasses may pin ``family_name`` to one family."""

    family_name: str = ""

    def __init__(self, config: Config, model: nn.Module, tokenizer: Tokenizer):
        self.config = config
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.family_name = config.family
        self.family: Family = get_family(config.family)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> PretrainedLM:
        """Load a checkpoint folder written by training or ``save_pretrained``."""
        config, weights, tokenizer = load_checkpoint(path)
        if cls.family_name and config.family != cls.family_name:
            raise SedlmError(
                f"'{path}' holds a '{config.family}' model, not '{cls.family_name}'; "
                f"load it with sedlm.load_pretrained or the {config.family.upper()} class"
            )
        model = build_from_weights(config, weights, tokenizer)
        return cls(config, model.to(resolve_device(str(device))), tokenizer)

    def save_pretrained(self, path: str | Path) -> None:
        """Write config, weights and tokenizer as a checkpoint folder (atomically)."""
        save_checkpoint(path, self.config, self.model.state_dict(), self.tokenizer)

    def to(self, device: str | torch.device) -> PretrainedLM:
        self.model.to(device)
        return self

    def request(
        self,
        n: int | None = None,
        steps: int | None = None,
        seed: int | None = None,
        seq_len: int | None = None,
        layout: Layout | None = None,
        src: bool = False,
        **options: Any,
    ) -> Request:
        """A checked request: unset values from ``config.sample``; ``options`` must be the family's
        sampling options (``self.family.options``); a request the family cannot serve is an error."""
        s = self.config.sample
        n, steps, seed = s.n if n is None else n, s.steps if steps is None else steps, s.seed if seed is None else seed
        if n <= 0 or steps <= 0:
            raise SedlmError(f"n and steps must be positive (got n={n}, steps={steps})")
        if not 0 <= seed <= SEED_MAX:
            raise SedlmError(f"seed must be in [0, 2^63 - 1] (got {seed})")
        kind = request_kind(layout, src or (layout is not None and self.config.data.task == "seq2seq"))
        self.family.check_request(kind)
        return Request(
            n,
            seq_len or (layout.ids.shape[-1] if layout is not None else self.config.data.seq_len),
            steps,
            seed,
            layout,
            kind,
            self.family.resolve_options(s, options),
        )

    def generate_ids(
        self,
        n: int | None = None,
        steps: int | None = None,
        seed: int | None = None,
        seq_len: int | None = None,
        callback: Callback | None = None,
        layout: Layout | None = None,
        **options: Any,
    ) -> torch.Tensor:
        """Token ids (n, seq_len), padding included; ``layout`` (``sedlm.sampling.templates``) gives tokens
        to condition on; ``options`` are the family's sampling options (unset ones: ``config.sample``)."""
        return self.run(self.request(n, steps, seed, seq_len, layout, **options), callback)

    def run(self, request: Request, callback: Callback | None = None) -> torch.Tensor:
        """The family's generation for a checked ``request``, in the precision ``sample.precision`` names
        (bf16 autocast on CUDA by default, fp32 elsewhere). (n, seq_len)"""
        with generation_autocast(self.device, self.config.sample.precision):
            return self.family.generate(self, request, callback)

    @property
    def frontier_knob(self) -> tuple[str, tuple[float, ...]]:
        return self.family.frontier(self.config)

    @property
    def frontier_fixed(self) -> dict[str, Any]:
        return self.family.frontier_fixed

    def sampling_summary(self, options: dict[str, Any]) -> dict[str, Any]:
        """The sampling options a results row should name (``options`` override the config's)."""
        known = {k: v for k, v in options.items() if self.family.option(k) is not None}
        return self.family.summary(self.family.resolve_options(self.config.sample, known))

    def make_layout(
        self, prompt: str | None = None, src: str | None = None, template: str | None = None, seq_len: int | None = None
    ) -> Layout | None:
        """The canvas for a ``prompt``, a seq2seq ``src`` or an infilling ``template`` (at most one);
        None when all are None (unconditional)."""
        named = [k for k, v in (("prompt", prompt), ("src", src), ("template", template)) if v is not None]
        if len(named) > 1:
            raise SedlmError(f"pass either {' or '.join(named)}, not both")
        L = seq_len or self.config.data.seq_len
        if prompt is not None:
            return layout_prompt(prompt, self.tokenizer, L)
        if src is not None:
            if self.config.data.task != "seq2seq":
                raise SedlmError(
                    "this model was trained on plain text (data.task=lm), not on source/target pairs; "
                    "pass the text as a prompt instead of a source (--prompt), or train with data.task=seq2seq"
                )
            return layout_source(src, self.tokenizer, L)
        return None if template is None else layout_template(template, self.tokenizer, L)

    def texts(self, ids: torch.Tensor, layout: Layout | None = None, drop_given_prefix: bool = False) -> list[str]:
        """Decode (n, L) ids, padding and special tokens stripped; ``drop_given_prefix`` leaves out the
        layout's given prefix (a seq2seq source, so that only the target is returned)."""
        start = int(layout.given.sum()) if drop_given_prefix and layout is not None else 0
        return self.tokenizer.decode_batch(ids[:, start:])

    def spans(
        self, ids: torch.Tensor, layout: Layout | None = None, drop_given_prefix: bool = False
    ) -> list[list[dict[str, Any]]]:
        """Each decoded row as consecutive pieces ``{"text", "generated"}``: what the model wrote apart
        from the given text (prompt, template, source). Padding and special tokens are dropped."""
        start = int(layout.given.sum()) if drop_given_prefix and layout is not None else 0
        given = (
            layout.given.expand(ids.shape[0], -1) if layout is not None else torch.zeros(ids.shape, dtype=torch.bool)
        ).cpu()  # (n, L)
        out = []
        for row, g in zip(ids[:, start:].cpu().tolist(), given[:, start:].tolist()):
            runs: list[tuple[bool, list[int]]] = []
            for tok, is_given in zip(row, g):
                if tok in self.tokenizer.special_ids:
                    continue
                if runs and runs[-1][0] == (not is_given):
                    runs[-1][1].append(tok)
                else:
                    runs.append((not is_given, [tok]))
            pieces = [{"text": self.tokenizer.decode(toks), "generated": gen} for gen, toks in runs]
            out.append([p for p in pieces if p["text"]])
        return out

    def canvas(
        self,
        prompt: str | None = None,
        src: str | None = None,
        template: str | None = None,
        seq_len: int | None = None,
        max_tokens: int | None = None,
    ) -> tuple[Layout | None, int, int | None]:
        """(layout, canvas length, end): the canvas of a request. With ``max_tokens`` the model writes at most
        that many tokens after the given text (prompt or source): the canvas holds them, rounded up to whole
        blocks for a block model (diffusion.block_size), and ``end`` is where ``cap`` cuts; else the canvas
        is ``seq_len`` (default: the model's row length) and ``end`` is None."""
        if max_tokens is None:
            L = seq_len or self.config.data.seq_len
            return self.make_layout(prompt, src, template, seq_len=L), L, None
        if max_tokens < 1:
            raise SedlmError(f"max_tokens must be at least 1 (got {max_tokens})")
        if seq_len is not None or template is not None:
            raise SedlmError(
                "max_tokens sets the canvas after a prompt; give it or seq_len, and not with an infilling template"
            )
        given = len(self.tokenizer.encode(prompt or src or ""))
        if given == 0 and (prompt or src) is not None:
            self.make_layout(prompt, src, seq_len=2)  # the clear error for an empty prompt or source
        end = given + (src is not None) + max_tokens  # a seq2seq source is followed by its end-of-text token
        bs = self.config.diffusion.block_size
        L = -(-end // bs) * bs if 0 < bs < self.config.data.seq_len else end
        return self.make_layout(prompt, src, seq_len=L), L, end

    def cap(self, ids: torch.Tensor, end: int | None) -> torch.Tensor:
        """``ids`` with every position from ``end`` on made padding (the ``max_tokens`` cut). (n, L)"""
        if end is None or end >= ids.shape[-1]:
            return ids
        out = ids.clone()
        out[:, end:] = self.tokenizer.pad_id
        return out

    def generate(
        self,
        n: int | None = None,
        prompt: str | None = None,
        src: str | None = None,
        max_tokens: int | None = None,
        **kw: Any,
    ) -> list[str]:
        """Generate ``n`` texts (padding and special tokens stripped): unconditional, continuing
        ``prompt`` (the prompt is part of each text), or the target for a seq2seq source ``src``
        (only the target is returned). ``max_tokens`` caps what is written after the prompt (``canvas``);
        a block model also ends a row at its end-of-text token. Other options as ``generate_ids``."""
        layout, L, end = self.canvas(prompt, src, seq_len=kw.pop("seq_len", None), max_tokens=max_tokens)
        if layout is not None:
            kw["layout"] = layout
        ids = self.cap(self.generate_ids(n, seq_len=L, **kw), end)
        return self.texts(ids, layout, drop_given_prefix=src is not None)

    def stream(self, prompt: str | None = None, max_tokens: int | None = None, **kw: Any) -> Iterator[str]:
        """One sample's text in pieces as it becomes final: a block model (diffusion.block_size) yields each
        block's text as soon as the block is written (the prompt first, when there is one); a whole-row
        model yields its text once, at the end. The pieces join to ``generate(n=1, ...)[0]``."""
        layout, L, end = self.canvas(prompt, seq_len=kw.pop("seq_len", None), max_tokens=max_tokens)
        if kw.pop("n", 1) != 1:
            raise SedlmError("stream writes one sample; use generate for several")
        pieces: queue.Queue[tuple[str, Any]] = queue.Queue()
        user_cb = kw.pop("callback", None)

        def emit(prefix: torch.Tensor) -> None:
            pieces.put(("text", self.texts(self.cap(prefix, end))[0]))

        def work() -> None:
            try:
                cb = on_finished_blocks(emit, user_cb)
                ids = self.generate_ids(1, seq_len=L, layout=layout, callback=cb, **kw)
                pieces.put(("text", self.texts(self.cap(ids, end))[0]))
            except BaseException as e:  # re-raised in the caller's thread
                pieces.put(("error", e))
            pieces.put(("end", None))

        thread = threading.Thread(target=work, name="sedlm-stream", daemon=True)
        thread.start()
        sent = ""
        while (item := pieces.get())[0] != "end":
            kind, value = item
            if kind == "error":
                raise value
            if value.startswith(sent) and len(value) > len(sent):  # a block may end inside a multi-byte character
                yield value[len(sent) :]
                sent = value
        thread.join()

    def infill(self, template: str, n: int = 1, **kw: Any) -> list[str]:
        """Fill the blanks of ``template`` (``[___]``: the model picks the length; ``[___:N]``: N tokens)."""
        L = kw.pop("seq_len", None) or self.config.data.seq_len
        ids = self.generate_ids(n, seq_len=L, layout=self.make_layout(template=template, seq_len=L), **kw)
        return self.texts(ids)
