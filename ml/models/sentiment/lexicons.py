"""Lexicon scores from two maintained PyPI packages whose lexicons ship inside the wheel.

- VADER (``vaderSentiment``, MIT): rule-based valence for social-media text; ``neg``, ``neu``, ``pos``,
  ``compound`` of the case-kept text; its word lexicon (-4..4) gives the ``V`` class tokens.
- TextBlob (``textblob``, MIT; pattern's en-sentiment lexicon): polarity and subjectivity of the
  normalised text's tokens (``text.tokens``): given a word list, pattern skips its own regex
  tokeniser, which was more than half of its cost and most of a long tweet's p99 (single-text p99
  through the runtime 1.1-1.3 ms -> 0.7 ms); emoticons are split by that tokeniser, so only VADER
  reads them. Its adjective lexicon gives the ``T`` class tokens. The lexicon-labelled files
  were labelled by TextBlob's polarity sign, so this feature is also how the model can follow those
  labels on text in their style.

Nothing is downloaded: both read files inside their installed package. Imported lazily (TextBlob
imports nltk, which takes a second or more).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

NAMES = ("vader_neg", "vader_neu", "vader_pos", "vader_compound", "textblob_polarity", "textblob_subjectivity")


def _cls(value: float, cuts: tuple[float, float]) -> str:
    return ("P" if value > 0 else "N") + str(sum(abs(value) > c for c in cuts))


@lru_cache(maxsize=1)
def _analyzers():
    from textblob.en import sentiment as textblob_sentiment
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer(), textblob_sentiment


@lru_cache(maxsize=1)
def word_classes() -> dict[str, dict[str, str]]:
    """{"V": VADER word -> class, "T": TextBlob word -> class}; classes P0..P2 / N0..N2 by strength."""
    vader, textblob = _analyzers()
    v = {w: _cls(s, (1.5, 2.5)) for w, s in vader.lexicon.items() if s}
    t = {}
    for w, senses in textblob.items():
        s = senses.get(None, [0.0])[0]
        if s:
            t[w] = _cls(s, (0.3, 0.6))
    return {"V": v, "T": t}


def scores(light_text: str, norm_tokens: list[str]) -> np.ndarray:
    """The six values of NAMES for one text (its ``light`` form and the ``tokens`` of its normal form)."""
    vader, textblob = _analyzers()
    s = vader.polarity_scores(light_text)
    polarity, subjectivity = textblob(norm_tokens)[:2]
    return np.array([s["neg"], s["neu"], s["pos"], s["compound"], polarity, subjectivity])
