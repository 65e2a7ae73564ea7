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
imports nltk, which takes a second or more). ``scores`` computes them with the faster, equal scorers of
``lexicon_scorers.py`` once a probe set shows they agree with the installed packages (else with the packages).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np

from ml.models.sentiment import text as tx

log = logging.getLogger(__name__)

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


# Texts that go through every rule of both scorers (negation, modifiers, "but", caps, "!", "?", emoticons,
# idioms, "least", "kind of", emoji): the scorers must agree with the packages on them to be used.
PROBES = (
    "VADER is VERY SMART, uber handsome, and FRIGGIN FUNNY!!!", "The plot was good, but the characters are "
    "uncompelling and the dialog is not great.", "At least it isn't a horrible book.", "It was kind of good?? :)",
    "not really good at all", "very not bad", "never so happy", "without a doubt, excellent!", "the shit",
    "Today only kinda sux! But I'll get by, lol", "Catch utf-8 emoji such as \U0001f498 and \U0001f48b",
    "I'm not very sure it was the least bit helpful (!) :-( <3", "no no no, good grief", "really terribly nice",
)


def _by_packages(light_text: str, norm_tokens: list[str]) -> tuple[dict[str, float], tuple[float, float]]:
    vader, textblob = _analyzers()
    return vader.polarity_scores(light_text), tuple(textblob(norm_tokens)[:2])


@lru_cache(maxsize=1)
def scorers() -> Callable[[str, list[str]], tuple[dict[str, float], Any]]:
    """VADER's scores and TextBlob's (polarity, subjectivity) of one text: the fast scorers when they agree
    with the packages on ``PROBES``, else the packages themselves."""
    from textblob.en import sentiment as textblob_sentiment

    from ml.models.sentiment.lexicon_scorers import TextBlobScorer, VaderScorer

    vader, textblob = VaderScorer(), TextBlobScorer(textblob_sentiment)

    def fast(light_text: str, norm_tokens: list[str]) -> tuple[dict[str, float], Any]:
        return vader.polarity_scores(light_text), textblob(norm_tokens)

    for probe in PROBES:
        light = tx.light(probe)
        norm_tokens = tx.tokens(light.lower())
        if fast(light, norm_tokens) != _by_packages(light, norm_tokens):
            log.warning("fast lexicon scorers differ from the installed packages on %r; using the packages", probe)
            return _by_packages
    return fast


def scores(light_text: str, norm_tokens: list[str]) -> np.ndarray:
    """The six values of NAMES for one text (its ``light`` form and the ``tokens`` of its normal form)."""
    s, (polarity, subjectivity) = scorers()(light_text, norm_tokens)
    return np.array([s["neg"], s["neu"], s["pos"], s["compound"], polarity, subjectivity])
