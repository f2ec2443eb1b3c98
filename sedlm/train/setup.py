"""What a training run starts from: its folder (checked before any work), its tokenizer, its embedding
table (built, loaded or taken from a pretrained model), the prepared data (built once by the main
process), the weights of a checkpoint it fine-tunes, and the metrics log of a run it resumes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from sedlm.config import Config
from sedlm.data.dataset import PreparedData, prepare_data
from sedlm.data.shards import is_prepared
from sedlm.data.tokenizer import TRAINED_TOKENIZERS, Tokenizer, load_tokenizer
from sedlm.errors import SedlmError
from sedlm.model.embedding import bits_table, load_table, random_table
from sedlm.model.pretrained_table import pretrained_table, pretrained_tokenizer, variance_kept
from sedlm.train.checkpoint import check_weights_fit
from sedlm.train.embed import build_table, save_embedding


def embedding_table(
    cfg: Config, data: PreparedData, out: Path, device: torch.device, progress: bool, log
) -> torch.Tensor:
    V, De = data.tokenizer.vocab_size, cfg.model.d_embed
    if cfg.embed.kind == "pretrained":
        _, table = pretrained_table(cfg.embed.pretrained, De, cfg.embed.seed)
        if len(table) != V:
            raise SedlmError(
                f"the table of embed.pretrained={cfg.embed.pretrained} has {len(table)} rows but the data's "
                f"tokenizer has {V} tokens; tokenise the data with that model's tokenizer"
            )
        log(
            f"embedding table: PCA of {cfg.embed.pretrained}'s input embeddings to {De} dims "
            f"({100 * variance_kept(cfg.embed.pretrained, De):.0f}% of their variance)"
        )
        save_embedding(out / "embeddings.safetensors", table)
        return table
    if cfg.embed.kind in ("random", "learned"):
        return random_table(V, De, torch.Generator().manual_seed(cfg.embed.seed))
    if cfg.embed.kind == "bits":
        return bits_table(V)
    if cfg.embed.path:
        return load_table(embedding_file(cfg.embed.path), V, De)
    table = build_table(cfg.embed, data.train, data.tokenizer, De, device, progress, log)
    save_embedding(out / "embeddings.safetensors", table)
    return table


def load_initial(model: torch.nn.Module, weights: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load a checkpoint's weights into a freshly built model, or say why they do not fit."""
    check_weights_fit(
        model, weights, f"'{path}'", "keep the checkpoint's model.* settings when fine-tuning with --init"
    )
    model.load_state_dict({k: v.to(next(model.parameters()).device) for k, v in weights.items()})


def embedding_file(path: str) -> Path:
    p = Path(path)
    return p / "embeddings.safetensors" if p.is_dir() else p


def tokenizer_for(cfg: Config):
    """The tokenizer the table's rows are indexed by, when it is not data.tokenizer's choice:
    embed.kind=pretrained uses the pretrained model's tokenizer, overriding data.tokenizer (and
    data.vocab_size); a tokenizer saved beside an embed.path table wins over data.tokenizer=bpe."""
    if cfg.embed.kind == "pretrained":
        return pretrained_tokenizer(cfg.embed.pretrained)
    if cfg.embed.kind in ("mlm", "ppmi") and cfg.embed.path and cfg.data.tokenizer in TRAINED_TOKENIZERS:
        beside = embedding_file(cfg.embed.path).parent / "tokenizer.json"
        if beside.is_file():
            return load_tokenizer(beside)
    return None


def truncate_metrics(path: Path, last_step: int) -> int:
    """On resume, drop log rows written after the checkpoint the run restarts from (and a last line
    cut short by a killed process); return the last step the log had reached (``last_step`` if none later)."""
    if not path.is_file():
        return last_step
    rows, reached = [], last_step
    for line in path.read_text().splitlines():
        try:
            step = json.loads(line)["step"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
        reached = max(reached, step) if isinstance(step, int) else reached
        if step <= last_step:
            rows.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(r + "\n" for r in rows))
    os.replace(tmp, path)
    return reached


def prepare_on_main_first(cfg: Config, out: Path, accelerator, tokenizer: Tokenizer | None, log) -> PreparedData:
    """The main process loads the data (training the tokenizer if needed) and writes the tokenizer;
    the others then load the same tokenizer, so every process tokenises identically."""
    main = accelerator.is_main_process
    shared = out / "tokenizer.json"
    with accelerator.main_process_first():
        if (
            not main
            and tokenizer is None
            and cfg.data.tokenizer in TRAINED_TOKENIZERS
            and not is_prepared(cfg.data.source)
        ):
            tokenizer = load_tokenizer(shared)
        if main:
            log(f"loading data from {cfg.data.source}")
        data = prepare_data(cfg.data, tokenizer)
        if main and tokenizer is None:
            out.mkdir(parents=True, exist_ok=True)
            data.tokenizer.save(shared)
    return data


def table_on_main_first(cfg: Config, data: PreparedData, out: Path, accelerator, device, progress, log) -> torch.Tensor:
    """SED's frozen table, built once by the main process (which saves it) and read by the others."""
    with accelerator.main_process_first():
        if accelerator.is_main_process or cfg.embed.kind in ("random", "learned") or cfg.embed.path:
            return embedding_table(cfg, data, out, device, progress and accelerator.is_main_process, log)
        return load_table(out / "embeddings.safetensors", data.tokenizer.vocab_size, cfg.model.d_embed)
