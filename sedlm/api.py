"""User-facing model classes.

    from sedlm import SED, AR, MDLM, load_pretrained
    model = SED.from_pretrained("runs/quickstart")
    texts = model.generate(n=4, steps=200, sampler="ddpm", seed=0)
    any_model = load_pretrained("runs/ar")       # the class follows config.method
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sedlm.baselines.ar import ar_generate
from sedlm.baselines.mdlm import mdlm_sample
from sedlm.errors import SedlmError
from sedlm.pretrained import PretrainedLM
from sedlm.sampling.generate import sample_ids
from sedlm.sampling.samplers import Callback
from sedlm.sampling.templates import Layout
from sedlm.train.checkpoint import load_checkpoint


class SED(PretrainedLM):
    """A self-conditioned embedding diffusion LM."""

    method = "sed"
    frontier_knob = ("score_temp", (0.6, 0.8, 1.0))  # CDCD's score temperature of interp estimates

    def generate_ids(
        self,
        n: int | None = None,
        steps: int | None = None,
        sampler: str | None = None,
        seed: int | None = None,
        guidance: float | None = None,
        guidance_mode: str | None = None,
        seq_len: int | None = None,
        callback: Callback | None = None,
        layout: Layout | None = None,
        noise_temp: float | None = None,
        score_temp: float | None = None,
        clamp: bool | None = None,
        time_grid: str | None = None,
        compile: bool | None = None,
        **sampler_kw: Any,
    ) -> torch.Tensor:
        """Token ids (n, seq_len) including padding; unset options come from ``config.sample``.
        ``layout`` (see ``sedlm.sampling.templates``) gives tokens to condition on; ``noise_temp``,
        ``score_temp``, ``clamp``, ``time_grid`` and ``compile`` are described in ``SampleConfig``."""
        s = self.config.sample
        n, steps = self._n_steps(n, steps)
        return sample_ids(
            self._sampling_module(s.compile if compile is None else compile), n=n, seq_len=seq_len or self.config.data.seq_len, steps=steps,
            sampler=sampler or s.sampler, schedule=self.config.diffusion.schedule,
            logsnr_shift=self.config.diffusion.logsnr_shift, time_grid=time_grid or s.time_grid, rho=s.rho,
            guidance=s.guidance if guidance is None else guidance,
            guidance_mode=guidance_mode or s.guidance_mode, seed=s.seed if seed is None else seed,
            score_temp=s.score_temp if score_temp is None else score_temp, clamp=s.clamp if clamp is None else clamp,
            callback=callback, layout=layout, pad_id=self.tokenizer.pad_id,
            noise_temp=s.noise_temp if noise_temp is None else noise_temp, **sampler_kw,
        )


    def sampling_summary(self, options: dict[str, Any]) -> dict[str, Any]:
        s = self.config.sample
        return {"sampler": options.get("sampler", s.sampler), "guidance": options.get("guidance", s.guidance),
                "guidance_mode": options.get("guidance_mode", s.guidance_mode),
                "score_temp": options.get("score_temp", s.score_temp)}

    def _sampling_module(self, compile: bool) -> torch.nn.Module:
        """The denoiser, or a cached ``torch.compile`` of it (shapes may vary between calls)."""
        if not compile:
            return self.model
        if getattr(self, "_compiled", None) is None:
            self._compiled = torch.compile(self.model, dynamic=True)
        return self._compiled


class AR(PretrainedLM):
    """The autoregressive baseline: continues the end-of-document token (a fresh document)."""

    method = "ar"
    frontier_knob = ("temperature", (0.7, 0.85, 1.0))
    frontier_fixed = {"top_p": 1.0}  # pure temperature sampling along the frontier

    def generate_ids(self, n: int | None = None, steps: int | None = None, seed: int | None = None,
                     seq_len: int | None = None, temperature: float | None = None, top_p: float | None = None,
                     use_cache: bool = True, layout: Layout | None = None, **_: Any) -> torch.Tensor:
        """(n, seq_len) ids; ``steps`` is ignored (one network call per token). A ``layout`` must give
        a prefix (a prompt or a seq2seq source; one canvas, or one per row as (n, L)): the model
        continues each. Text models start from <eos>, a fresh document of their packed training
        stream; seq2seq models (data.task=seq2seq) start from the source itself, as their rows do."""
        s = self.config.sample
        n = self._n_steps(n, 1)[0]
        length = seq_len or self.config.data.seq_len
        start = [] if self.config.data.task == "seq2seq" else [self.tokenizer.eos_id]
        prefixes: list[list[int]] = [[] for _ in range(n)]
        if layout is not None:
            ids, given = layout.ids.expand(n, -1), layout.given.expand(n, -1)  # (n, L)
            prefixes = []
            for row, g in zip(ids, given):
                k = int(g.sum())
                if not bool(g[:k].all()) or layout.no_pad.any():
                    raise SedlmError("the autoregressive baseline can only continue a prefix; use sed or mdlm to infill")
                prefixes.append(row[:k].tolist())
        if not start and any(not p for p in prefixes):
            raise SedlmError("this autoregressive model was trained on seq2seq pairs; give it a source (--src)")
        g = torch.Generator(device=self.device).manual_seed(s.seed if seed is None else seed)
        out = torch.full((n, length), self.tokenizer.pad_id, dtype=torch.long, device=self.device)
        by_len: dict[int, list[int]] = {}
        for i, p in enumerate(prefixes):
            by_len.setdefault(len(p), []).append(i)
        for k, rows in sorted(by_len.items()):  # rows with equal prefix length share one KV-cached batch
            prefix = torch.tensor([start + prefixes[i] for i in rows], device=self.device)  # (b, len(start) + k)
            ids = ar_generate(self.model, prefix, length - k, temperature=s.temperature if temperature is None else temperature,
                              top_p=s.top_p if top_p is None else top_p, generator=g, use_cache=use_cache)
            out[rows] = ids[:, len(start):]
        return out

    def sampling_summary(self, options: dict[str, Any]) -> dict[str, Any]:
        s = self.config.sample
        return {"temperature": options.get("temperature", s.temperature), "top_p": options.get("top_p", s.top_p)}


class MDLM(PretrainedLM):
    """The masked discrete diffusion baseline."""

    method = "mdlm"
    frontier_knob = ("temperature", (0.7, 0.85, 1.0))

    def generate_ids(self, n: int | None = None, steps: int | None = None, seed: int | None = None,
                     seq_len: int | None = None, callback: Callback | None = None, layout: Layout | None = None,
                     temperature: float | None = None, **_: Any) -> torch.Tensor:
        """(n, seq_len) ids; a ``layout``'s given tokens start (and stay) unmasked; ``temperature``
        scales the logits of revealed tokens (default: sample.temperature)."""
        s = self.config.sample
        n, steps = self._n_steps(n, steps)
        g = torch.Generator(device=self.device).manual_seed(s.seed if seed is None else seed)
        ids, _ = mdlm_sample(self.model, n, seq_len or self.config.data.seq_len, steps, generator=g, callback=callback,
                             layout=layout, pad_id=self.tokenizer.pad_id,
                             temperature=s.temperature if temperature is None else temperature)
        return ids

    def sampling_summary(self, options: dict[str, Any]) -> dict[str, Any]:
        return {"temperature": options.get("temperature", self.config.sample.temperature)}


CLASSES: dict[str, type[PretrainedLM]] = {"sed": SED, "ar": AR, "mdlm": MDLM}


def load_pretrained(path: str | Path, device: str | torch.device = "cpu") -> PretrainedLM:
    """Load any checkpoint folder as the class its ``config.method`` names."""
    method = load_checkpoint(path)[0].method
    if method not in CLASSES:
        raise SedlmError(f"'{path}' holds an unknown method '{method}'")
    return CLASSES[method].from_pretrained(path, device=device)
