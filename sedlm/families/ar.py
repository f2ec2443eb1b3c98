"""``ar``: the autoregressive baseline, a causal Transformer with KV-cache decoding
(``sedlm.baselines.ar``). It continues a prefix (a prompt or a seq2seq source) and cannot infill."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sedlm.baselines.ar import ARModel, ar_generate, ar_loss
from sedlm.config import Config
from sedlm.data.tokenizer import Tokenizer
from sedlm.errors import SedlmError
from sedlm.family import Callback, Family, Loss, Request, SamplingOption
from sedlm.losses import token_nll


class ARFamily(Family):
    name = "ar"
    description = "autoregressive causal Transformer"
    paper = "Radford et al. 2019 (GPT-2 style decoder); nucleus sampling, Holtzman et al. 2020"
    val_loss_kind = "next-token NLL (nats/token)"
    nll_kind = "exact"
    pads = False  # text ends with EOS instead
    requests = ("unconditional", "prompt", "seq2seq")
    step_callbacks = False  # one network call per token
    frontier_knob = ("temperature", (0.7, 0.85, 1.0))
    frontier_fixed = {"top_p": 1.0}  # pure temperature sampling along the frontier
    summary_options = ("temperature", "top_p")
    options = (
        SamplingOption("temperature", float, "softmax temperature of token draws; 0 = greedy", "temperature", minimum=0.0),
        SamplingOption("top_p", float, "nucleus sampling mass", "top_p", minimum=0.0),
        SamplingOption("use_cache", bool, "decode with the KV cache (off: recompute the prefix every token)", default=True),
    )

    def build(self, cfg: Config, tokenizer: Tokenizer, table: torch.Tensor | None) -> nn.Module:
        return ARModel(cfg.model)

    def loss(self, model: nn.Module, ids: torch.Tensor, cfg: Config, generator: torch.Generator, tokenizer: Tokenizer,
             given: torch.Tensor | None = None) -> Loss:
        return ar_loss(model, ids)

    def nll_bound(self, model: nn.Module, ids: torch.Tensor, cfg: Config, generator: torch.Generator,
                  tokenizer: Tokenizer) -> torch.Tensor:
        """Exact next-token NLL per row (nats/token)."""
        logits = model(ids[:, :-1]).float()  # (B, L-1, V)
        return token_nll(logits, ids[:, 1:]).mean(-1)

    def generate(self, lm: Any, request: Request, callback: Callback | None = None) -> torch.Tensor:
        """A ``layout`` gives one prefix per row (a prompt or a seq2seq source): the model continues
        each. Text models start from <eos>, a fresh document of their packed training stream; seq2seq
        models (data.task=seq2seq) start from the source itself, as their rows do."""
        n, length, layout, o = request.n, request.seq_len, request.layout, request.options
        start = [] if lm.config.data.task == "seq2seq" else [lm.tokenizer.eos_id]
        prefixes: list[list[int]] = [[] for _ in range(n)]
        if layout is not None:
            ids, given = layout.ids.expand(n, -1), layout.given.expand(n, -1)  # (n, L)
            prefixes = [row[: int(g.sum())].tolist() for row, g in zip(ids, given)]
        if not start and any(not p for p in prefixes):
            raise SedlmError("this autoregressive model was trained on seq2seq pairs; give it a source (--src)")
        g = torch.Generator(device=lm.device).manual_seed(request.seed)
        out = torch.full((n, length), lm.tokenizer.pad_id, dtype=torch.long, device=lm.device)
        by_len: dict[int, list[int]] = {}
        for i, p in enumerate(prefixes):
            by_len.setdefault(len(p), []).append(i)
        for k, rows in sorted(by_len.items()):  # rows with equal prefix length share one KV-cached batch
            prefix = torch.tensor([start + prefixes[i] for i in rows], device=lm.device)  # (b, len(start) + k)
            ids = ar_generate(lm.model, prefix, length - k, temperature=o["temperature"], top_p=o["top_p"], generator=g,
                              use_cache=o["use_cache"])
            out[rows] = ids[:, len(start):]
        return out


FAMILY = ARFamily()
