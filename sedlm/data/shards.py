"""Token shards: a corpus tokenised once into memory-mapped files, read back as packed rows.

``sedlm prepare`` writes a folder:

    index.json        format, dtype, vocab size, eos id, and per split the shard files and their token counts
    tokenizer.json
    train-00000.bin   flat token ids (each document followed by the end-of-document id), uint16 when the
    val-00000.bin     vocabulary fits, else uint32

Documents stream in and tokens leave for disk whenever the in-memory buffer reaches its cap, so a
corpus of any size is prepared in bounded memory. The folder is built under a temporary name and
renamed at the end: an interrupted or failed ``prepare`` leaves nothing behind.

Training reads rows of ``seq_len`` tokens straight from the memory maps (``ShardRows``); only the
rows of the current batch are ever copied into memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sedlm.data.tokenizer import Tokenizer, load_tokenizer
from sedlm.errors import SedlmError
from sedlm.progress import progress as show_progress

INDEX = "index.json"
SHARD_FORMAT = 1
SPLITS = ("train", "val")


def is_prepared(path: str | Path) -> bool:
    """True for a folder written by ``sedlm prepare``."""
    return (Path(path) / INDEX).is_file()


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def in_validation(doc: str, val_fraction: float, seed: int) -> bool:
    """Streaming document-level split: a document (and every exact copy of it) goes to validation
    when its hash, read as a number in [0, 1), falls below ``val_fraction``."""
    h = int.from_bytes(hashlib.sha1(f"{seed}\0{doc}".encode()).digest()[:8], "big")
    return h / 2**64 < val_fraction


class _ShardWriter:
    """Appends token ids to ``<split>-NNNNN.bin`` files, holding at most ``buffer_tokens`` in memory
    and starting a new file every ``shard_tokens`` tokens."""

    def __init__(self, folder: Path, split: str, dtype: np.dtype, shard_tokens: int, buffer_tokens: int):
        self.folder, self.split, self.dtype = folder, split, dtype
        self.shard_tokens, self.buffer_tokens = shard_tokens, buffer_tokens
        self.shards: list[dict[str, int | str]] = []
        self._buf: list[np.ndarray] = []
        self._buffered = 0
        self.peak_buffered = 0

    def add(self, ids: list[int]) -> None:
        self._buf.append(np.asarray(ids, dtype=self.dtype))
        self._buffered += len(ids)
        self.peak_buffered = max(self.peak_buffered, self._buffered)
        if self._buffered >= self.buffer_tokens:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        data = np.concatenate(self._buf)
        self._buf, self._buffered = [], 0
        while len(data):
            if not self.shards or self.shards[-1]["tokens"] >= self.shard_tokens:
                self.shards.append({"file": f"{self.split}-{len(self.shards):05d}.bin", "tokens": 0})
            shard = self.shards[-1]
            room = self.shard_tokens - int(shard["tokens"])
            with open(self.folder / str(shard["file"]), "ab") as f:
                data[:room].tofile(f)
            shard["tokens"] = int(shard["tokens"]) + len(data[:room])
            data = data[room:]

    @property
    def tokens(self) -> int:
        return sum(int(s["tokens"]) for s in self.shards) + self._buffered


@dataclass
class PrepareResult:
    out: Path
    tokens: dict[str, int]
    documents: dict[str, int]
    shards: dict[str, int]
    dtype: str
    peak_buffered_tokens: int


def _batches(docs: Iterable[str], max_chars: int) -> Iterator[list[str]]:
    batch, chars = [], 0
    for d in docs:
        batch.append(d)
        chars += len(d)
        if chars >= max_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def prepare_shards(
    documents: Callable[[], Iterable[str]],
    out: str | Path,
    tokenizer: Tokenizer | Callable[[Iterable[str]], Tokenizer],
    *,
    val_fraction: float = 0.05,
    split_seed: int = 0,
    shard_tokens: int = 100_000_000,
    max_memory_mb: float = 256.0,
    tokenizer_chars: int = 50_000_000,
    source: str = "",
    progress: bool = True,
) -> PrepareResult:
    """Tokenise the documents that ``documents()`` yields into a prepared folder at ``out``.

    ``tokenizer`` is a ready tokenizer, or a function that trains one from training documents (it
    sees at most ``tokenizer_chars`` characters; ``documents()`` is then read twice).
    ``max_memory_mb`` caps the token buffer (and, with it, the text read ahead for tokenising).
    """
    out = Path(out)
    if min(shard_tokens, max_memory_mb, tokenizer_chars) <= 0:
        raise SedlmError("shard tokens, memory cap and tokenizer characters must be positive")
    if out.exists() and any(out.iterdir()):
        raise SedlmError(f"'{out}' already exists and is not empty; choose another --out or remove it")
    if isinstance(tokenizer, Tokenizer):
        tok = tokenizer
    else:
        tok = tokenizer(_capped(_split(documents(), "train", val_fraction, split_seed), tokenizer_chars))
    dtype = token_dtype(tok.vocab_size)
    buffer_tokens = max(1, int(max_memory_mb * 2**20 / 2 / dtype.itemsize))  # half the cap for tokens
    read_ahead_chars = max(1, int(max_memory_mb * 2**20 / 2 / 4))  # the other half for text (<= 4 bytes/char)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's private mode is not wanted for a data folder
    try:
        writers = {s: _ShardWriter(tmp, s, dtype, shard_tokens, buffer_tokens) for s in SPLITS}
        n_docs = dict.fromkeys(SPLITS, 0)
        bar = show_progress(desc="tokenising", unit=" docs", enabled=progress, dynamic_ncols=True)
        for batch in _batches(documents(), read_ahead_chars):
            split = ["val" if in_validation(d, val_fraction, split_seed) else "train" for d in batch]
            for s, ids in zip(split, tok.encode_batch(batch)):
                writers[s].add([*ids, tok.eos_id])
                n_docs[s] += 1
            bar.update(len(batch))
            bar.set_postfix(tokens=f"{sum(w.tokens for w in writers.values()):,}")
        bar.close()
        for w in writers.values():
            w.flush()
        if n_docs["train"] == 0:
            raise SedlmError(f"data source '{source}' holds no training documents; point --data at a non-empty corpus")
        tok.save(tmp / "tokenizer.json")
        index = {
            "format": SHARD_FORMAT,
            "dtype": dtype.name,
            "vocab_size": tok.vocab_size,
            "eos_id": tok.eos_id,
            "source": source,
            "val_fraction": val_fraction,
            "split_seed": split_seed,
            "splits": {s: {"documents": n_docs[s], "tokens": w.tokens, "shards": w.shards} for s, w in writers.items()},
        }
        (tmp / INDEX).write_text(json.dumps(index, indent=2))
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PrepareResult(
        out,
        {s: w.tokens for s, w in writers.items()},
        n_docs,
        {s: len(w.shards) for s, w in writers.items()},
        dtype.name,
        max(w.peak_buffered for w in writers.values()),
    )


def _split(docs: Iterable[str], split: str, val_fraction: float, seed: int) -> Iterator[str]:
    return (d for d in docs if (in_validation(d, val_fraction, seed) == (split == "val")))


def _capped(docs: Iterable[str], max_chars: int) -> Iterator[str]:
    total = 0
    for d in docs:
        if total >= max_chars:
            return
        total += len(d)
        yield d


class TokenStream:
    """The shards of one split as a single flat, read-only token sequence (memory-mapped)."""

    def __init__(self, folder: Path, shards: list[dict], dtype: str):
        self.maps = [
            np.memmap(folder / s["file"], dtype=np.dtype(dtype), mode="r", shape=(int(s["tokens"]),))
            for s in shards
            if int(s["tokens"]) > 0
        ]
        self.starts = np.cumsum([0, *[len(m) for m in self.maps]])  # (n_shards + 1,)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) as int64, across shard boundaries."""
        parts, pos, end = [], start, start + length
        k = int(np.searchsorted(self.starts, pos, side="right")) - 1
        while pos < end:
            local = pos - int(self.starts[k])
            take = min(end - pos, len(self.maps[k]) - local)
            parts.append(np.asarray(self.maps[k][local : local + take], dtype=np.int64))
            pos += take
            k += 1
        return np.concatenate(parts) if len(parts) > 1 else parts[0]


class ShardRows:
    """Rows of ``seq_len`` consecutive tokens of a ``TokenStream``, indexable like an (N, L) tensor;
    the tail shorter than a row is dropped. Indexing copies only the rows asked for."""

    def __init__(self, stream: TokenStream, seq_len: int):
        n = len(stream) // seq_len
        if n == 0:
            raise SedlmError(
                f"the prepared split holds {len(stream)} tokens, fewer than one row of data.seq_len={seq_len}"
            )
        self.stream, self.seq_len = stream, seq_len
        self.shape = torch.Size((n, seq_len))

    def __len__(self) -> int:
        return self.shape[0]

    def numel(self) -> int:
        return self.shape[0] * self.shape[1]

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, slice):
            index = range(*index.indices(len(self)))
        elif torch.is_tensor(index):
            index = index.tolist()
        rows = [self.stream.read(int(i) * self.seq_len, self.seq_len) for i in index]
        if not rows:
            return torch.zeros(0, self.seq_len, dtype=torch.long)
        return torch.from_numpy(np.stack(rows))  # (B, L)


def read_index(path: str | Path) -> dict:
    p = Path(path) / INDEX
    try:
        index = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        raise SedlmError(f"'{p}' is missing or not valid JSON; run `sedlm prepare` again") from None
    if index.get("format", 0) > SHARD_FORMAT:
        raise SedlmError(f"'{path}' was prepared by a newer sedlm (format {index['format']}); upgrade sedlm")
    return index


def load_prepared(path: str | Path, seq_len: int) -> tuple[Tokenizer, ShardRows, ShardRows | None]:
    """The tokenizer and the train / validation rows of a prepared folder (validation None if it
    has less than one row)."""
    path = Path(path)
    index = read_index(path)
    tok = load_tokenizer(path / "tokenizer.json")
    splits = {}
    for s in SPLITS:
        info = index["splits"][s]
        for shard in info["shards"]:
            f = path / shard["file"]
            expected = int(shard["tokens"]) * np.dtype(index["dtype"]).itemsize
            if not f.is_file() or f.stat().st_size != expected:
                raise SedlmError(f"shard '{f}' is missing or has the wrong size; run `sedlm prepare` again")
        stream = TokenStream(path, info["shards"], index["dtype"])
        splits[s] = ShardRows(stream, seq_len) if len(stream) >= seq_len else None
    if splits["train"] is None:
        raise SedlmError(f"'{path}' holds fewer training tokens than one row of data.seq_len={seq_len}")
    return tok, splits["train"], splits["val"]
