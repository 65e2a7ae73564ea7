"""Faster scorers that give the lexicon packages' own scores, bit for bit, on the request path.

The two lexicon scores were ~45 us of a ~200 us prediction (quiet 2-core VM), most of it the packages' Python
overhead on words that carry no sentiment:

- ``TextBlobScorer``: pattern's sentiment of a word list (what TextBlob's ``en.sentiment`` computes for a
  list: known words averaged, a known adverb ("RB" sense) modifying the next known word, negations
  flipping it, "!" boosting the previous one, emoticons). Compiled once from the installed lexicon into
  plain dicts: pattern's lazily-loaded dictionary goes through a Python method on every membership test
  and lookup, which was most of its cost.
- ``VaderScorer``: VADER's analyzer with one shortcut. A word missing from VADER's lexicon always scores a
  valence of 0 in VADER's loop (as a booster, in "kind of", or as a word without valence), so it gets that
  0 without the per-word calls; every word in the lexicon, the "but" rule and the final scoring go through
  VADER's own methods, except two of its helpers that lower-cased the whole text for each of the three
  words before a lexicon word: the negation rule and the idiom rule read only the words they look at
  here. Texts with an emoji (which VADER first replaces by its description) are scored by VADER's own
  ``polarity_scores``.

Equality with the packages is the contract: ``tests/ml/test_sentiment_lexicon_scorers.py`` compares texts of
the corpora (real files when present), ``lexicons.scorers`` checks a probe set at load and falls back to the
packages if an upgrade changed their rules, and after an upgrade

    python -m ml.models.sentiment.compare_lexicons --data DIR

compares both on every text of a data directory and prints the CPU each takes per text (exit 1 on any
difference).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from vaderSentiment.vaderSentiment import (
    BOOSTER_DICT,
    N_SCALAR,
    NEGATE,
    SPECIAL_CASES,
    SentimentIntensityAnalyzer,
    SentiText,
)

_NEGATE = frozenset(NEGATE)


class TextBlobScorer:
    """(polarity, subjectivity) of a word list, as pattern's ``Sentiment.__call__`` gives them."""

    def __init__(self, sentiment: Any) -> None:
        from textblob._text import EMOTICONS, PUNCTUATION

        len(sentiment)  # pattern loads its lexicon on first use
        entries = dict(sentiment.items())
        # Looked up with no part of speech, as for a plain word list: a word counts when it has an all-senses entry.
        self._known: dict[str, tuple[float, float, float]] = {
            w: tuple(senses[None]) for w, senses in entries.items() if None in senses}
        modifiers = tuple(sentiment.modifiers)
        self._modifies = frozenset(w for w, senses in entries.items() if any(m in senses for m in modifiers))
        self._negations = tuple(sentiment.negations)
        self._is_modifier: Callable[[str], bool] = sentiment.modifier
        self._punctuation: str = PUNCTUATION
        self._emoticons: dict[str, float] = {}
        for (_mood, polarity), faces in EMOTICONS.items():  # the first mood that lists a face wins
            for face in faces:
                self._emoticons.setdefault(face.lower(), polarity)

    def __call__(self, words: Sequence[str]) -> tuple[float, float]:
        found: list[list[float]] = []  # per assessment: polarity, subjectivity, intensity, sign (1 or -1)
        modifier: str | None = None  # a known adverb just before (it scales the next known word)
        negation: str | None = None  # a negation just before (it flips the next known word)
        for w in words:
            entry = self._known.get(w)
            if entry is not None:
                p, s, i = entry
                if modifier is None:
                    found.append([p, s, i, 1])
                else:
                    last = found[-1]
                    last[0] = max(-1.0, min(p * last[2], +1.0))
                    last[1] = max(-1.0, min(s * last[2], +1.0))
                    last[2] = i
                if negation is not None:
                    last = found[-1]
                    last[2] = 1.0 / last[2]
                    last[3] = -1
                modifier = w if w in self._modifies else None
                negation = w if w in self._negations else None
                continue
            if w in self._negations:
                negation = w
            elif negation is not None and len(w.strip("'")) > 1:
                negation = None
            if negation is not None and modifier is not None and self._is_modifier(modifier):
                found[-1][3] = -1
                negation = None
            elif modifier is not None and len(w) > 2:
                modifier = None
            if w == "!" and found:
                found[-1][0] = max(-1.0, min(found[-1][0] * 1.25, +1.0))
            if w == "(!)":
                found.append([0.0, 1.0, 1.0, 1])
            if w.isalpha() is False and len(w) <= 5 and w not in self._punctuation:
                face = self._emoticons.get(w)
                if face is not None:
                    found.append([face, 1.0, 1.0, 1])
        polarity: float = 0
        subjectivity: float = 0
        for p, s, _i, sign in found:
            polarity += p * -0.5 if sign < 0 else p
            subjectivity += s
        n = float(len(found) or 1)
        return polarity / n, subjectivity / n


class VaderScorer(SentimentIntensityAnalyzer):
    """VADER's ``polarity_scores``, skipping the per-word calls for words outside its lexicon (module docstring)."""

    def polarity_scores(self, text: str) -> dict[str, float]:
        if not self.emojis.keys().isdisjoint(text):
            return super().polarity_scores(text)
        text = text.strip()  # what VADER's emoji pass returns for a text without emoji
        sentitext = SentiText(text)
        words = sentitext.words_and_emoticons
        lexicon = self.lexicon
        sentiments: list[float] = []
        for i, word in enumerate(words):
            low = word.lower()
            if low not in lexicon:
                sentiments.append(0)  # VADER's valence of such a word in every branch of its loop
            elif low in BOOSTER_DICT or (low == "kind" and i < len(words) - 1 and words[i + 1].lower() == "of"):
                sentiments.append(0)
            else:
                sentiments = self.sentiment_valence(0, sentitext, word, i, sentiments)
        sentiments = self._but_check(words, sentiments)
        return self.score_valence(sentiments, text)

    @staticmethod
    def _negation_check(valence: float, words_and_emoticons: list[str], start_i: int, i: int) -> float:
        """VADER's negation rule for the word ``start_i + 1`` places before word ``i``."""
        def low(k: int) -> str:  # the word k places before word i
            return str(words_and_emoticons[i - k]).lower()

        def negation(word: str) -> bool:  # VADER's `negated` of one word
            return word in _NEGATE or "n't" in word

        if start_i == 0:
            if negation(low(1)):
                valence = valence * N_SCALAR
        elif start_i == 1:
            if low(2) == "never" and low(1) in ("so", "this"):
                valence = valence * 1.25
            elif low(2) == "without" and low(1) == "doubt":
                pass
            elif negation(low(2)):
                valence = valence * N_SCALAR
        elif start_i == 2:
            if (low(3) == "never" and low(2) in ("so", "this")) or low(1) in ("so", "this"):
                valence = valence * 1.25
            elif low(3) == "without" and (low(2) == "doubt" or low(1) == "doubt"):
                pass
            elif negation(low(3)):
                valence = valence * N_SCALAR
        return valence

    @staticmethod
    def _special_idioms_check(valence: float, words_and_emoticons: list[str], i: int) -> float:
        """VADER's idiom rule around word ``i`` (called with i >= 3)."""
        def low(k: int) -> str:
            return str(words_and_emoticons[k]).lower()

        w3, w2, w1, w0 = low(i - 3), low(i - 2), low(i - 1), low(i)
        threetwoone, threetwo, twoone = f"{w3} {w2} {w1}", f"{w3} {w2}", f"{w2} {w1}"
        for seq in (f"{w1} {w0}", f"{w2} {w1} {w0}", twoone, threetwoone, threetwo):
            if seq in SPECIAL_CASES:
                valence = SPECIAL_CASES[seq]
                break
        n = len(words_and_emoticons)
        if n - 1 > i and (seq := f"{w0} {low(i + 1)}") in SPECIAL_CASES:
            valence = SPECIAL_CASES[seq]
        if n - 1 > i + 1 and (seq := f"{w0} {low(i + 1)} {low(i + 2)}") in SPECIAL_CASES:
            valence = SPECIAL_CASES[seq]
        for n_gram in (threetwoone, threetwo, twoone):  # boosters of two or three words ("kind of")
            if n_gram in BOOSTER_DICT:
                valence = valence + BOOSTER_DICT[n_gram]
        return valence
