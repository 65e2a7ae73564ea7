"""Normalisation and tokenisation of raw or pre-cleaned texts; one code path for training and serving.

``light(text)``: html entities decoded, typographic apostrophes and the backtick made ``'``, URLs and
@mentions removed (the pre-cleaned corpora have none), a character repeated 3+ times cut to two
("soooo" -> "soo", "!!!!" -> "!!"), whitespace collapsed. Case is kept: lexicons read it ("GREAT").
``normalize(text)``: ``light`` lower-cased; every n-gram and token feature is computed from it.
Emoji stay as characters: the character n-grams see them and VADER reads them with its emoji lexicon.
"""

from __future__ import annotations

import html
import re
from itertools import pairwise

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION = re.compile(r"@\w+")
_REPEAT = re.compile(r"(.)\1{2,}")
_APOSTROPHES = str.maketrans({"`": "'", "\u2019": "'", "\u2018": "'", "\u00b4": "'"})
_SPACE = re.compile(r"\s+")
# Style of the lexicon-labelled corpora: no upper case, no ASCII punctuation, no one-letter word.
_NOT_PRECLEANED = re.compile(r"[A-Z!-/:-@\[-`{-~]|(?:^|\s)[a-z](?=\s|$)")
_WORD = re.compile(r"[a-z0-9']+|[^\w\s]")
NEGATIONS = frozenset({"not", "no", "never", "nor", "cannot", "cant", "dont", "didnt", "doesnt", "isnt",
                       "wasnt", "wont", "aint", "without", "nothing"})
_CLAUSE_END = frozenset(".,!?;:")
NEGATION_SCOPE = 3  # words after a negation that are marked ``neg_``


def light(text: str) -> str:
    t = html.unescape(text).translate(_APOSTROPHES)
    t = _URL.sub(" ", t)
    t = _MENTION.sub(" ", t)
    t = _REPEAT.sub(r"\1\1", t)
    return _SPACE.sub(" ", t).strip()


def normalize(text: str) -> str:
    return light(text).lower()


def looks_precleaned(raw: str) -> bool:
    """True for text in the style of the lexicon-labelled files (see module docstring)."""
    return _NOT_PRECLEANED.search(raw) is None


def char_grams(norm: str, lo: int = 1, hi: int = 5) -> list[str]:
    """Character n-grams inside each space-padded word (n = lo..hi)."""
    out: list[str] = []
    for w in norm.split():
        w = f" {w} "
        size = len(w)
        for n in range(lo, min(hi, size) + 1):
            out.extend(w[i:i + n] for i in range(size - n + 1))
    return out


def tokens(norm: str) -> list[str]:
    """Words and single punctuation marks of a normalised text, in order."""
    return _WORD.findall(norm)


def words(toks: list[str]) -> list[str]:
    """Word unigrams and bigrams of a text's ``tokens`` (words and single punctuation marks)."""
    return toks + [f"{a} {b}" for a, b in pairwise(toks)]


def lexicon_tokens(toks: list[str], lexicons: dict[str, dict[str, str]]) -> list[str]:
    """Negation-marked words of a text's ``tokens`` plus one class token per lexicon hit, and bigrams
    of the words.

    ``lexicons`` maps a tag to {word: class}; a word in lexicon ``V`` with class ``P2`` adds the token
    ``_VP2``. Within ``NEGATION_SCOPE`` words after a negation (up to a clause mark) every token gets
    the prefix ``neg_``, so "not good" gives ``neg_good`` and ``neg__VP2``, not ``good``.
    """
    out: list[str] = []
    plain: list[str] = []
    scope = 0
    for t in toks:
        if t in _CLAUSE_END:
            scope = 0
            out.append(t)
            plain.append(t)
            continue
        prefix = "neg_" if scope else ""
        word = prefix + t
        out.append(word)
        plain.append(word)
        for tag, lexicon in lexicons.items():
            cls = lexicon.get(t)
            if cls is not None:
                out.append(f"{prefix}_{tag}{cls}")
        if t in NEGATIONS or t.endswith("n't"):
            scope = NEGATION_SCOPE
        elif scope:
            scope -= 1
    out.extend(f"{a} {b}" for a, b in pairwise(plain))
    return out
