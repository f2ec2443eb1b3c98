"""Shared fixtures: a small synthetic corpus and overrides for models that train in seconds."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

SUBJECTS = ["the king", "a fool", "my lord", "the queen", "good sir", "the ghost", "our army", "the night"]
VERBS = ["speaks", "waits", "sleeps", "fights", "laughs", "returns", "weeps", "falls"]
PLACES = ["in the castle", "by the sea", "at the gate", "under the moon", "in the field", "on the hill"]


def make_documents(n_docs: int = 24, sentences: int = 30, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        lines = [f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} {rng.choice(PLACES)}." for _ in range(sentences)]
        docs.append(" ".join(lines))
    return docs


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory) -> Path:
    """A .txt corpus: blank-line-separated documents."""
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text("\n\n".join(make_documents()))
    return path


# A model small enough to train for a few steps in a second or two.
TINY = [
    "model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.d_embed=8",
    "data.vocab_size=300", "data.seq_len=16", "data.val_fraction=0.1",
    "train.batch_size=8", "train.max_steps=6", "train.log_every=2", "train.eval_every=3",
    "train.eval_batches=2", "train.checkpoint_every=3", "train.warmup_steps=2",
    "embed.kind=random", "sample.steps=5", "sample.n=2",
]


@pytest.fixture
def tiny_overrides(corpus_file) -> list[str]:
    return [*TINY, f"data.source={corpus_file}"]
