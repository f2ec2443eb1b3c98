"""From a data config to ready batches: documents -> split -> tokenizer -> packed rows."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace

from sedlm.config import DataConfig
from sedlm.data.corpora import load_documents, load_pairs, split_documents, split_tail
from sedlm.data.packing import PackedRows, pack_pairs, pack_rows, tokenize_documents
from sedlm.data.shards import is_prepared, load_prepared
from sedlm.data.tokenizer import Tokenizer, make_tokenizer
from sedlm.errors import SedlmError


@dataclass
class PreparedData:
    tokenizer: Tokenizer
    train: PackedRows
    val: PackedRows | None
    train_docs: list[str]
    val_docs: list[str]
    train_pairs: list[tuple[str, str]] = field(default_factory=list)  # seq2seq only
    val_pairs: list[tuple[str, str]] = field(default_factory=list)


def _truncate(docs: list[str], max_chars: int) -> list[str]:
    if max_chars <= 0:
        return docs
    out, total = [], 0
    for d in docs:
        if total >= max_chars:
            break
        out.append(d[: max_chars - total])
        total += len(out[-1])
    return out


def prepare_data(cfg: DataConfig, tokenizer: Tokenizer | None = None) -> PreparedData:
    """Load ``cfg.source``, split by document, get a tokenizer (the one given, else per
    ``cfg.tokenizer``: train a BPE on the training documents, or load one) and pack rows."""
    if is_prepared(cfg.source):
        return _load_shards(cfg, tokenizer)
    if cfg.task == "seq2seq":
        return _prepare_pairs(cfg, tokenizer)
    docs = load_documents(cfg.source)
    train_docs, val_docs = split_documents(docs, cfg.val_fraction, cfg.split_seed)
    if cfg.val_fraction > 0 and not val_docs:  # one document (a book with no blank lines): its tail
        train_docs, val_docs = _tail_split(docs, cfg)
    train_docs = _truncate(train_docs, cfg.max_chars)
    if tokenizer is None:
        tokenizer = make_tokenizer(cfg.tokenizer, cfg.vocab_size, train_docs)
    val = _val_rows(tokenizer, val_docs, cfg)
    if cfg.val_fraction > 0 and val is None and len(docs) > 1:  # the held-out documents are too short
        train_docs, val_docs = _tail_split(docs, cfg)
        train_docs = _truncate(train_docs, cfg.max_chars)
        val = _val_rows(tokenizer, val_docs, cfg)
    train_ids = tokenize_documents(tokenizer, train_docs)
    if cfg.val_fraction > 0 and val is None:
        have = len(train_ids) + len(tokenize_documents(tokenizer, val_docs))
        fix = (
            f"raise data.val_fraction to {min(0.5, math.ceil(100 * 1.5 * cfg.seq_len / max(have, 1)) / 100):g}"
            if 3 * cfg.seq_len <= have
            else "lower data.seq_len"
        )
        raise SedlmError(
            f"data.val_fraction={cfg.val_fraction:g} holds out fewer than data.seq_len={cfg.seq_len} of the text's "
            f"{have:,} tokens, so there is no validation row; {fix}, or set data.val_fraction=0 to train without one"
        )
    train = PackedRows(pack_rows(train_ids, cfg.seq_len), tokenizer.pad_id, cfg.pad_fraction)
    return PreparedData(tokenizer, train, val, train_docs, val_docs)


def _tail_split(docs: list[str], cfg: DataConfig) -> tuple[list[str], list[str]]:
    train, val = split_tail(docs, cfg.val_fraction)
    warnings.warn(
        f"{len(docs)} document(s) are too few to hold some out whole: the last {cfg.val_fraction:.0%} of the "
        "text (from a line break) is the validation split, all text before it trains",
        stacklevel=3,
    )
    return train, val


def _val_rows(tokenizer: Tokenizer, val_docs: list[str], cfg: DataConfig) -> PackedRows | None:
    if not val_docs:
        return None
    val_ids = tokenize_documents(tokenizer, val_docs)
    if len(val_ids) < cfg.seq_len:
        return None
    return PackedRows(pack_rows(val_ids, cfg.seq_len), tokenizer.pad_id, cfg.pad_fraction)


def _load_shards(cfg: DataConfig, tokenizer: Tokenizer | None) -> PreparedData:
    """A folder written by ``sedlm prepare``: rows are read from memory-mapped shards as needed."""
    if cfg.task == "seq2seq":
        raise SedlmError("prepared token shards hold plain text; train seq2seq from its .jsonl of src/tgt pairs")
    tok, train, val = load_prepared(cfg.source, cfg.seq_len)
    if tokenizer is not None and tokenizer.vocab_size != tok.vocab_size:
        raise SedlmError(
            f"'{cfg.source}' was tokenised with a {tok.vocab_size}-token vocabulary, but this run uses "
            f"{tokenizer.vocab_size}; prepare the data with the run's tokenizer (data.tokenizer=...)"
        )
    return PreparedData(
        tok,
        PackedRows(train, tok.pad_id, cfg.pad_fraction),
        PackedRows(val, tok.pad_id, cfg.pad_fraction) if val is not None else None,
        [],
        [],
    )


def _prepare_pairs(cfg: DataConfig, tokenizer: Tokenizer | None) -> PreparedData:
    """seq2seq: split pairs (never a pair on both sides), one pair per row, sources given."""
    pairs = load_pairs(cfg.source)
    joined = [f"{a}\t{b}" for a, b in pairs]
    train_j, val_j = split_documents(joined, cfg.val_fraction, cfg.split_seed)
    train_p = [tuple(j.split("\t", 1)) for j in train_j]
    val_p = [tuple(j.split("\t", 1)) for j in val_j]
    texts = [t for p in train_p for t in p]
    if tokenizer is None:
        tokenizer = make_tokenizer(cfg.tokenizer, cfg.vocab_size, texts)
    train = PackedRows(*_rows(tokenizer, train_p, cfg.seq_len))
    val = PackedRows(*_rows(tokenizer, val_p, cfg.seq_len)) if val_p else None
    return PreparedData(tokenizer, train, val, texts, [t for p in val_p for t in p], train_p, val_p)


def fit_pair_rows(data: PreparedData, seq_len: int, block_size: int = 0) -> tuple[PreparedData, int]:
    """seq2seq rows hold one pair and then padding: halve them while every training and validation pair
    still fits (and ``block_size``, when set, still divides them). Returns the data on the narrower rows
    and the factor k they shrank by (1: unchanged), by which a caller multiplies its batch so that a step
    sees as many tokens."""
    parts = [r for r in (data.train, data.val) if r is not None]
    used = max(int((r.rows != r.pad_id).any(0).nonzero().max()) + 1 for r in parts)
    k = 1
    while seq_len % (2 * k) == 0 and seq_len // (2 * k) >= max(used, 2):
        if block_size and (seq_len // (2 * k)) % block_size:
            break
        k *= 2
    if k == 1:
        return data, 1
    width = seq_len // k

    def narrow(r: PackedRows | None) -> PackedRows | None:
        if r is None:
            return None
        given = None if r.given is None else r.given[:, :width]
        return PackedRows(r.rows[:, :width], r.pad_id, r.pad_fraction, given)

    return replace(data, train=narrow(data.train), val=narrow(data.val)), k


def _rows(tok: Tokenizer, pairs, seq_len: int):
    ids, given = pack_pairs(tok, pairs, seq_len)
    return ids, tok.pad_id, 0.0, given  # no random padding: trailing padding sets the target's length
