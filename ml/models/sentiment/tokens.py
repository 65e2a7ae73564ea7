"""Tokens and feature weights of the sentiment model.

The texts are already lower-cased with punctuation stripped, so tokens are whitespace-separated
words. Two learned-model choices live here, both tuned on a validation split only:

- negation-aware tokens: a word right after a negation word becomes ``not_<word>`` (a separate
  feature), so "not good" does not count as "good";
- neutral-evidence weighting: the labels say a text is neutral when it holds no polar word, so a
  token that shows up in many *neutral training texts* is unlikely to carry polarity. Tokens whose
  share of neutral documents exceeds ``neutral_ratio`` get the smaller feature value
  ``off_weight`` (stronger effective regularisation) and cannot dominate the decision; tokens
  that are (almost) never neutral keep full weight. The ratio comes from training labels only.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

NOT_PREFIX = "not_"


def tokenize(text: str, max_chars: int, negations: frozenset[str]) -> list[str]:
    """Lower-cased whitespace tokens of the first ``max_chars`` characters, negation-marked."""
    words = text[:max_chars].lower().split()
    out = []
    prev = ""
    for w in words:
        out.append(NOT_PREFIX + w if prev in negations else w)
        prev = w
    return out


def build_vocabulary(token_lists: list[list[str]]) -> dict[str, int]:
    """Every distinct training token, numbered in order of first appearance (deterministic)."""
    vocab: dict[str, int] = {}
    for tokens in token_lists:
        for t in tokens:
            if t not in vocab:
                vocab[t] = len(vocab)
    return vocab


def binary_matrix(token_lists: list[list[str]], vocab: dict[str, int]) -> sp.csr_matrix:
    """Presence (0/1) matrix; unknown tokens are ignored, as at serving time."""
    indptr, indices = [0], []
    for tokens in token_lists:
        ids = sorted({vocab[t] for t in tokens if t in vocab})
        indices.extend(ids)
        indptr.append(len(indices))
    values = np.ones(len(indices), dtype=np.float64)
    return sp.csr_matrix((values, indices, indptr), shape=(len(token_lists), len(vocab)))


def neutral_weights(x: sp.csr_matrix, labels: np.ndarray, neutral_ratio: float, off_weight: float) -> np.ndarray:
    """Per-token feature value: 1.0 when rarely seen in neutral texts, ``off_weight`` otherwise."""
    df_all = np.asarray(x.sum(axis=0)).ravel()
    df_neutral = np.asarray(x[labels == 0].sum(axis=0)).ravel()
    ratio = np.divide(df_neutral, df_all, out=np.zeros_like(df_all), where=df_all > 0)
    return np.where(ratio <= neutral_ratio, 1.0, off_weight)
