"""The discrete families' categorical draw: exact frequencies, zero weights never drawn, batched rows."""

import math

import torch

from sedlm.sampling.categorical import categorical


def test_frequencies_match_unnormalised_weights_and_zero_weights_never_come():
    w = torch.tensor([1.5, 0.0, 0.9, 0.6, 0.0])  # sums to 3, not 1
    n = 200_000
    idx = categorical(w.expand(n, -1), torch.Generator().manual_seed(0))
    counts = torch.bincount(idx, minlength=5).double()
    assert counts[1] == 0 and counts[4] == 0  # a trailing zero weight too
    p = w.double() / w.sum()
    expected = n * p[[0, 2, 3]]
    chi2 = float(((counts[[0, 2, 3]] - expected) ** 2 / expected).sum())
    assert chi2 < 13.8  # chi-square with 2 degrees of freedom, p = 0.001


def test_a_large_vocabulary_keeps_its_tail():
    """Draws from a peaky distribution over 8,192 tokens have the distribution's entropy: E[-log p(draw)] = H."""
    g = torch.Generator().manual_seed(1)
    p = torch.softmax(torch.randn(8192, generator=g, dtype=torch.float64) * 3, -1)
    draws = torch.cat([categorical(p.expand(2000, -1), g) for _ in range(20)])  # 40,000 draws
    nll = -p[draws].log()
    H = float(-(p * p.log()).sum())
    assert abs(float(nll.mean()) - H) < 4 * float(nll.std()) / math.sqrt(len(nll))


def test_batched_rows_are_drawn_independently_and_reproducibly():
    w = torch.zeros(2, 3, 7)
    hot = torch.tensor([[0, 6, 3], [5, 1, 2]])
    w.scatter_(-1, hot[..., None], 1.0)  # one-hot rows: the draw must be the hot index
    assert torch.equal(categorical(w, torch.Generator().manual_seed(0)), hot)
    flat = torch.rand(64, 50, generator=torch.Generator().manual_seed(2))
    a = categorical(flat, torch.Generator().manual_seed(3))
    b = categorical(flat, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (64,) and a.dtype == torch.long
