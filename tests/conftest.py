"""Shared fixtures: a small synthetic corpus and overrides for models that train in seconds."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# property and fuzz tests draw the same examples on every clone (a test must not pass on most runs only);
# HYPOTHESIS_PROFILE=explore draws fresh ones when hunting for new failures
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

# CLI calls made inside the test process keep one thread count (auto would follow the machine's load,
# and thread count can change the last bits of CPU arithmetic that exact-repeat tests compare)
os.environ.setdefault("SEDLM_THREADS", str(torch.get_num_threads()))

SUBJECTS = ["the king", "a fool", "my lord", "the queen", "good sir", "the ghost", "our army", "the night"]
VERBS = ["speaks", "waits", "sleeps", "fights", "laughs", "returns", "weeps", "falls"]
PLACES = ["in the castle", "by the sea", "at the gate", "under the moon", "in the field", "on the hill"]


def make_documents(n_docs: int = 24, sentences: int = 30, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        lines = [
            f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} {rng.choice(PLACES)}." for _ in range(sentences)
        ]
        docs.append(" ".join(lines))
    return docs


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory) -> Path:
    """A .txt corpus: blank-line-separated documents."""
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text("\n\n".join(make_documents()))
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Many small sequential tensor ops: on a shared machine intra-op threads only contend."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# A model small enough to train for a few steps in a second or two.
TINY = [
    "model.d_model=32",
    "model.n_layers=1",
    "model.n_heads=2",
    "model.d_embed=8",
    "data.vocab_size=300",
    "data.seq_len=16",
    "data.val_fraction=0.1",
    "train.batch_size=8",
    "train.max_steps=6",
    "train.log_every=2",
    "train.eval_every=3",
    "train.eval_batches=2",
    "train.checkpoint_every=3",
    "train.warmup_steps=2",
    "embed.kind=random",
    "sample.steps=5",
    "sample.n=2",
]


@pytest.fixture
def tiny_overrides(corpus_file) -> list[str]:
    return [*TINY, f"data.source={corpus_file}"]


# Sentences for the tiny judge LM built in tests (a real causal LM, trained on nothing).
CORPUS = [
    "The king speaks in the castle.",
    "A fool waits by the sea.",
    "My lord sleeps at the gate.",
    "The queen fights under the moon.",
    "Good sir laughs in the field.",
    "The ghost returns on the hill.",
] * 20


def _tokenizer(with_specials: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    kw = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"} if with_specials else {}
    return PreTrainedTokenizerFast(tokenizer_object=tk, **kw)


@pytest.fixture(scope="session")
def tiny_judge_dir(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = _tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=1, n_head=2))
    path = tmp_path_factory.mktemp("judge") / "tiny-gpt2"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
