"""Text-quality metrics that need no model.

unigram entropy   H = -sum_w p(w) log2 p(w) over the pooled word/punctuation tokens of a set of
                  texts (the SED paper's guard against repetitive samples that game NLL);
                  compare only sets of equal size and length, since H grows with sample size.
real-word share   fraction of generated alphabetic words that occur in a reference vocabulary
                  (e.g. the training corpus): how often the model spells real words.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Iterable

_TOKEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|\d+|[^\w\s]")
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


def word_tokens(text: str) -> list[str]:
    """Lower-cased words, numbers and single punctuation marks."""
    return [w.lower() for w in _TOKEN.findall(text)]


def unigram_entropy(texts: Iterable[str]) -> float:
    """Entropy in bits of the pooled unigram distribution of ``word_tokens`` over all texts."""
    counts = Counter(w for t in texts for w in word_tokens(t))
    total = sum(counts.values())
    if total == 0:
        return 0.0
    return -sum(c / total * math.log2(c / total) for c in counts.values())


def vocabulary(texts: Iterable[str]) -> set[str]:
    """Lower-cased alphabetic words of a reference corpus."""
    return {w.lower() for t in texts for w in _WORD.findall(t)}


def real_word_share(texts: Iterable[str], vocab: set[str]) -> float:
    """Share of alphabetic words in ``texts`` that belong to ``vocab`` (0 when there are none)."""
    words = [w.lower() for t in texts for w in _WORD.findall(t)]
    return sum(w in vocab for w in words) / len(words) if words else 0.0
