import math

from sedlm import SED
from sedlm.quickstart import quickstart

from conftest import TINY


def test_quickstart_runs_on_the_bundled_corpus(tmp_path):
    lines = []
    shrink = [o for o in TINY if not o.startswith(("data.vocab_size", "data.val_fraction", "data.seq_len"))]
    summary = quickstart(tmp_path / "qs", minutes=0.2, log=lines.append,
                         overrides=[*shrink, "data.max_chars=200000", "data.vocab_size=512", "data.seq_len=48",
                                    "sample.steps=4"])
    assert summary["steps"] == 6
    assert 0.0 <= summary["real_word_share"] <= 1.0
    assert summary["data_unigram_entropy"] > 4.0  # real Shakespeare lines
    assert math.isfinite(summary["val_loss"])
    assert lines[-1].startswith("quickstart: val_loss") and "unigram entropy" in lines[-1]
    assert sum(line.startswith("--- sample") for line in lines) == 4
    infill = next(line for line in lines if line.startswith("--- infill of"))
    filled = infill.split("\n", 1)[1]
    assert filled.startswith("To be, or not to be,") and " the question:" in filled and filled.endswith(" suffer")
    assert SED.from_pretrained(tmp_path / "qs").generate(n=1, steps=3)
