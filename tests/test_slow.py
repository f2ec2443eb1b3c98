"""Long tests: run with `make test-slow`."""

import pytest

from sedlm import SED
from sedlm.data.corpora import load_documents
from sedlm.quickstart import quickstart


@pytest.mark.slow
def test_full_quickstart_within_budget(tmp_path):
    summary = quickstart(tmp_path / "qs", log=lambda s: None)
    assert summary["seconds"] < 6 * 60
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
