"""Tokenise documents, pack them into fixed-length rows and insert random padding.

Random padding (Strudel et al. 2022, §3.4) teaches the model variable length: a padding token stands
at ~``pad_fraction`` of positions, and the content tokens fill the rest in order. A sample
that decodes to fewer real tokens is simply one whose model put more padding in it.
"""

from __future__ import annotations

import numpy as np
import torch

from sedlm.data.masks import seq2seq_mask
from sedlm.data.shards import ShardRows
from sedlm.data.tokenizer import Tokenizer
from sedlm.errors import SedlmError


def tokenize_documents(tok: Tokenizer, docs: list[str]) -> np.ndarray:
    """Concatenate the token ids of all documents, each followed by the end-of-document id."""
    chunks = []
    for ids in tok.encode_batch(docs):
        chunks.append(np.asarray(ids, dtype=np.int64))
        chunks.append(np.asarray([tok.eos_id], dtype=np.int64))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)


def pack_rows(ids: np.ndarray, seq_len: int) -> torch.Tensor:
    """Cut a 1-D id stream into (N, seq_len) rows; the tail shorter than a row is dropped."""
    n = len(ids) // seq_len
    if n == 0:
        raise SedlmError(f"the text holds {len(ids)} tokens, fewer than one row of data.seq_len={seq_len}; add text")
    return torch.from_numpy(ids[: n * seq_len].reshape(n, seq_len).copy())


def insert_padding(rows: torch.Tensor, pad_id: int, pad_fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Put padding at random positions (each with probability ``pad_fraction``) and shift the
    content right to fill the others, dropping the content that no longer fits.

    rows: (B, L) content ids -> (B, L) ids with padding.
    """
    if pad_fraction <= 0:
        return rows
    return place_padding(rows, torch.rand(rows.shape, generator=generator, device=rows.device) < pad_fraction, pad_id)


def place_padding(rows: torch.Tensor, is_pad: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Padding where ``is_pad`` (B, L), the content of ``rows`` (B, L) shifted right into the other slots."""
    src = (torch.cumsum(~is_pad, dim=1) - 1).clamp(min=0)  # index of the content token for each slot
    return torch.where(is_pad, torch.full_like(rows, pad_id), rows.gather(1, src))


def shift_given(given: torch.Tensor, is_pad: torch.Tensor) -> torch.Tensor:
    """The given-position mask (B, L) of rows padded by ``place_padding(rows, is_pad)``: each content
    token keeps its role, and an inserted pad takes the role of the content token after it (padding
    inside a source is given; padding after it belongs to the generated target)."""
    count = torch.cumsum(~is_pad, dim=1)  # content tokens up to and including each slot
    prev = (count - 1).clamp(min=0)  # a content slot's source index
    nxt = count.clamp(max=given.shape[1] - 1)  # a pad slot's next content index
    return torch.where(is_pad, given.gather(1, nxt), given.gather(1, prev))


class PackedRows:
    """Fixed-length rows with deterministic, step-addressable batches.

    The batch for optimiser step ``s`` depends only on (seed, s), so a resumed run sees
    exactly the data an uninterrupted run would have seen, with no loader state to save.
    """

    def __init__(
        self, rows: torch.Tensor | ShardRows, pad_id: int, pad_fraction: float, given: torch.Tensor | None = None
    ):
        self.rows = rows  # (N, L): a tensor, or rows memory-mapped from token shards
        self.pad_id = pad_id
        self.pad_fraction = pad_fraction
        self.given = given  # (N, L) bool: positions given as the condition (seq2seq sources), or None
        self._order: tuple[int, int, torch.Tensor] | None = None  # (epoch, seed, permutation) last used

    def __len__(self) -> int:
        return self.rows.shape[0]

    def _epoch_order(self, epoch: int, seed: int) -> torch.Tensor:
        if self._order is None or self._order[:2] != (epoch, seed):
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            self._order = (epoch, seed, torch.randperm(len(self), generator=g))
        return self._order[2]

    def _indices(self, step: int, batch_size: int, seed: int) -> list[int]:
        n = len(self)
        start = step * batch_size
        idx: list[int] = []
        while len(idx) < batch_size:
            epoch, offset = divmod(start + len(idx), n)
            order = self._epoch_order(epoch, seed)
            idx.extend(order[offset : offset + batch_size - len(idx)].tolist())
        return idx

    def with_padding(self, pad_fraction: float) -> PackedRows:
        """The same rows with another padding fraction (0: none, for families that end text with EOS)."""
        return PackedRows(self.rows, self.pad_id, pad_fraction, self.given)

    def _pad_slots(self, step: int, batch_size: int, seed: int, L: int) -> torch.Tensor:
        """Where step ``step``'s padding goes, drawn for the whole batch. (B, L) bool"""
        g = torch.Generator().manual_seed(seed * 7_919 + step + 1)
        return torch.rand(batch_size, L, generator=g) < self.pad_fraction

    def batch(self, step: int, batch_size: int, seed: int, part: slice = slice(None)) -> torch.Tensor:
        """Rows ``part`` of step ``step``'s batch of ``batch_size`` rows (epoch-wise shuffled, wrapping
        across epochs), with padding. Only those rows are read; their padding is drawn for the whole
        batch, so a row is the same whichever process reads it. (b, L)"""
        idx = self._indices(step, batch_size, seed)
        rows = self.rows[idx[part]]
        if self.pad_fraction <= 0:
            return rows
        return place_padding(rows, self._pad_slots(step, len(idx), seed, rows.shape[1])[part], self.pad_id)

    def batch_given(self, step: int, batch_size: int, seed: int, part: slice = slice(None)) -> torch.Tensor | None:
        """The given-position masks of ``batch(step, ...)``'s rows (b, L), moved with the padding that
        ``batch`` inserts so that they still cover the same tokens; None for plain text."""
        if self.given is None:
            return None
        given = self.given[self._indices(step, batch_size, seed)[part]]
        if self.pad_fraction <= 0:
            return given
        return shift_given(given, self._pad_slots(step, batch_size, seed, given.shape[1])[part])

    def fixed_batches(
        self, batch_size: int, n_batches: int, seed: int = 12345
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """The first rows, padded with a fixed seed, and their given masks: the same validation
        batches every time."""
        g = torch.Generator().manual_seed(seed)
        out = []
        for i in range(0, min(len(self), batch_size * n_batches), batch_size):
            rows = self.rows[i : i + batch_size]
            given = None if self.given is None else self.given[i : i + batch_size]
            if self.pad_fraction > 0:
                is_pad = torch.rand(rows.shape, generator=g) < self.pad_fraction
                rows = place_padding(rows, is_pad, self.pad_id)
                given = None if given is None else shift_given(given, is_pad)
            out.append((rows, given))
        return out


def pack_pairs(tok: Tokenizer, pairs: list[tuple[str, str]], seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """seq2seq rows: ``src <eos> tgt <eos>`` then padding, one pair per row; the source and its
    ``<eos>`` are given. Targets that do not fit are cut; pairs whose source alone fills the
    row are dropped. Returns ids (N, L) and given (N, L)."""
    ids, src_lens = [], []
    for src, tgt in zip(tok.encode_batch([p[0] for p in pairs]), tok.encode_batch([p[1] for p in pairs])):
        head = [*src, tok.eos_id]
        if len(head) >= seq_len:
            continue
        row = (head + [*tgt, tok.eos_id])[:seq_len]
        ids.append(row + [tok.pad_id] * (seq_len - len(row)))
        src_lens.append(len(head))
    if not ids:
        raise SedlmError(f"no source fits in data.seq_len={seq_len} tokens; raise data.seq_len or shorten the sources")
    return torch.tensor(ids, dtype=torch.long), seq2seq_mask(torch.tensor(src_lens), seq_len)
