"""Long tests: run with `make test-slow`."""

import pytest

from sedlm import SED
from sedlm.data.corpora import load_documents
from sedlm.quickstart import quickstart


@pytest.mark.slow
def test_full_quickstart(tmp_path):
    summary = quickstart(tmp_path / "qs", log=lambda s: None)
    assert summary["steps"] == 600  # a fixed step count: the time it takes is a benchmark figure, not a test
    assert summary["real_word_share"] > 0.5
    assert len(SED.from_pretrained(tmp_path / "qs").generate(n=2, steps=50)) == 2


@pytest.mark.slow
def test_wiki_corpus_is_prose_without_markup():
    docs = load_documents("corpus:wiki")
    assert len(docs) > 350
    text = "\n".join(docs)
    assert sum(len(d.split()) for d in docs) > 400_000
    for marker in ("[[", "]]", "{{", "}}", "<ref"):
        assert marker not in text


@pytest.mark.slow
def test_compiled_sampling_matches_eager(tmp_path, tiny_overrides):
    import torch

    from sedlm.api import SED
    from sedlm.families import load_config
    from sedlm.train.trainer import train

    train(load_config(None, tiny_overrides), tmp_path / "run", progress=False, log=lambda s: None)
    model = SED.from_pretrained(tmp_path / "run")
    eager = model.generate_ids(n=2, steps=4, sampler="ddim", seed=0)
    compiled = model.generate_ids(n=2, steps=4, sampler="ddim", seed=0, compile=True)
    assert torch.equal(eager, compiled)


@pytest.mark.slow
def test_compiled_training_follows_the_eager_loss_curve(tmp_path, tiny_overrides):
    import numpy as np

    from sedlm.families import load_config
    from sedlm.train.trainer import train

    runs = {
        c: train(
            load_config(None, [*tiny_overrides, "train.log_every=1", f"train.compile={c}"]),
            tmp_path / str(c),
            progress=False,
            log=lambda s: None,
        )
        for c in (False, True)
    }
    eager, compiled = ([r["loss"] for r in runs[c].history] for c in (False, True))
    np.testing.assert_allclose(compiled, eager, rtol=1e-3)
