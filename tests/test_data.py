import json

import numpy as np
import pytest
import torch

from sedlm.data.corpora import CORPORA, load_documents, shakespeare_documents, split_documents
from sedlm.data.packing import PackedRows, insert_padding, pack_rows, tokenize_documents
from sedlm.data.tokenizer import gpt2_tokenizer, load_tokenizer, train_bpe
from sedlm.errors import SedlmError

from conftest import make_documents


def test_shakespeare_skips_first_folio_duplicates():
    docs = shakespeare_documents()
    assert len(docs) >= 35
    assert any(d.startswith("HAMLET") for d in docs)
    assert sum(len(d.split()) for d in docs) > 800_000
    # The _gut_f files hold the same plays; including them would duplicate Hamlet.
    assert sum(d.startswith("HAMLET") for d in docs) == 1


def test_registry_lists_both_corpora():
    assert set(CORPORA) >= {"shakespeare", "wiki"}
    with pytest.raises(SedlmError, match="bundled corpora: shakespeare, wiki"):
        load_documents("corpus:nope")


def test_split_is_document_level_and_never_leaks():
    docs = make_documents(40) + make_documents(5)  # the last 5 repeat the first 5 exactly
    train, val = split_documents(docs, 0.1, seed=3)
    assert val and train
    assert not set(train) & set(val)
    assert len(train) + len(val) == len(docs)
    assert split_documents(docs, 0.1, seed=3) == (train, val)  # deterministic
    assert split_documents(docs, 0.1, seed=4) != (train, val)


def test_user_sources(tmp_path, corpus_file):
    assert len(load_documents(str(corpus_file))) == 24  # one document per paragraph block
    jl = tmp_path / "d.jsonl"
    jl.write_text("\n".join(json.dumps({"text": t}) for t in ["one doc", "two doc", ""]))
    assert load_documents(str(jl)) == ["one doc", "two doc"]
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "a.txt").write_text("first file\n\nstill first")
    (folder / "b.txt").write_text("second file")
    assert load_documents(str(folder)) == ["first file\n\nstill first", "second file"]


def test_bad_sources_raise_clear_errors(tmp_path):
    with pytest.raises(SedlmError, match="not found"):
        load_documents(str(tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n ")
    with pytest.raises(SedlmError, match="contains no text"):
        load_documents(str(empty))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"txt": "x"}\n')
    with pytest.raises(SedlmError, match="no string 'text' field"):
        load_documents(str(bad))
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(SedlmError, match="holds no .txt"):
        load_documents(str(tmp_path / "emptydir"))


def test_hf_source_through_local_text_builder(tmp_path):
    f = tmp_path / "lines.txt"
    f.write_text("alpha beta\ngamma delta\n\nepsilon\n")
    docs = load_documents(f"hf:text?data_files={f}")
    assert docs == ["alpha beta", "gamma delta", "epsilon"]


def test_bpe_train_save_load_round_trip(tmp_path):
    docs = make_documents(10)
    tok = train_bpe(docs, 300)
    assert tok.vocab_size <= 300
    text = "The king speaks in the castle."
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    tok.save(tmp_path / "tokenizer.json")
    again = load_tokenizer(tmp_path / "tokenizer.json")
    assert again.encode(text) == ids and again.pad_id == tok.pad_id
    assert load_tokenizer(tmp_path).encode(text) == ids  # a folder holding tokenizer.json


def test_gpt2_bpe_is_exact():
    tok = gpt2_tokenizer()
    assert tok.encode("Hello world") == [15496, 995]  # GPT-2's ids
    assert tok.eos_id == 50256
    assert tok.vocab_size == 50257 + 2  # plus <pad> and <mask>


def test_decode_strips_padding():
    tok = train_bpe(make_documents(10), 300)
    ids = tok.encode("the king waits")
    padded = [tok.pad_id] + ids[:1] + [tok.pad_id, tok.pad_id] + ids[1:] + [tok.pad_id]
    assert tok.decode(padded) == "the king waits"


def test_packing_and_padding_insertion():
    tok = train_bpe(make_documents(10), 300)
    ids = tokenize_documents(tok, make_documents(4))
    assert (ids == tok.eos_id).sum() == 4
    rows = pack_rows(ids, 16)
    assert rows.shape[1] == 16 and rows.shape[0] == len(ids) // 16
    g = torch.Generator().manual_seed(0)
    padded = insert_padding(rows, tok.pad_id, 0.25, g)
    is_pad = padded == tok.pad_id
    assert 0.15 < is_pad.float().mean() < 0.35
    for r in range(rows.shape[0]):  # content keeps its order, only the tail is dropped
        content = padded[r][~is_pad[r]]
        assert torch.equal(content, rows[r][: len(content)])
    with pytest.raises(SedlmError, match="fewer than one row"):
        pack_rows(np.arange(5), 16)


def test_batches_are_a_function_of_the_step():
    rows = PackedRows(torch.arange(200).view(20, 10), pad_id=-1, pad_fraction=0.1)
    assert torch.equal(rows.batch(7, 4, seed=1), rows.batch(7, 4, seed=1))
    assert not torch.equal(rows.batch(7, 4, seed=1), rows.batch(8, 4, seed=1))
    # one epoch visits every row exactly once
    seen = torch.cat([PackedRows(torch.arange(20)[:, None], -1, 0.0).batch(s, 5, seed=0) for s in range(4)])
    assert sorted(seen.flatten().tolist()) == list(range(20))
