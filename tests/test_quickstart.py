import math

from conftest import TINY

from sedlm import SED
from sedlm.quickstart import quickstart


def test_quickstart_runs_on_the_bundled_corpus(tmp_path):
    lines = []
    shrink = [o for o in TINY if not o.startswith(("data.vocab_size", "data.val_fraction", "data.seq_len"))]
    summary = quickstart(
        tmp_path / "qs",
        steps=6,
        log=lines.append,
        overrides=[*shrink, "data.max_chars=200000", "data.vocab_size=512", "data.seq_len=48", "sample.steps=4"],
    )
    assert summary["steps"] == 6
    assert "6 optimiser steps" in lines[0]
    assert 0.0 <= summary["real_word_share"] <= 1.0
    assert summary["data_unigram_entropy"] > 4.0  # real Shakespeare lines
    assert math.isfinite(summary["val_loss"])
    assert lines[-1].startswith("quickstart: val_loss") and "unigram entropy" in lines[-1]
    assert sum(line.startswith("--- sample") for line in lines) == 4
    infill = next(line for line in lines if line.startswith("--- infill of"))
    filled = infill.split("\n", 1)[1]
    assert filled.startswith("To be, or not to be,") and " the question:" in filled and filled.endswith(" suffer")
    assert SED.from_pretrained(tmp_path / "qs").generate(n=1, steps=3)


def test_quickstart_is_reproducible_for_a_seed(tmp_path):
    """A fixed step count, not a clock: two runs give the same weights and the same samples."""
    import torch
    from safetensors.torch import load_file

    shrink = [
        o for o in TINY if not o.startswith(("data.vocab_size", "data.val_fraction", "data.seq_len", "train.max_steps"))
    ]
    over = [*shrink, "data.max_chars=100000", "data.vocab_size=512", "data.seq_len=32", "sample.steps=3"]
    a = quickstart(tmp_path / "a", steps=4, log=lambda s: None, overrides=over)
    b = quickstart(tmp_path / "b", steps=4, log=lambda s: None, overrides=over)
    assert a["steps"] == b["steps"] == 4 and a["val_loss"] == b["val_loss"]
    wa, wb = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert SED.from_pretrained(tmp_path / "a").generate(n=2, steps=3) == SED.from_pretrained(tmp_path / "b").generate(
        n=2, steps=3
    )
