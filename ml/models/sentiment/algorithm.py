"""Learning algorithm of the sentiment model: a stack of tf-idf logistic heads and lexicon scores.

Learns human judgement from the human-labelled tweets; the lexicon-labelled files (labels = the sign
of TextBlob's polarity) are weak supervision that gets a head of its own instead of being mixed in.

- Text: ``text.normalize`` (html entities, URLs, @mentions, elongations, case) -- the same function
  at training and serving time, inside ``SentimentModel``.
- Level 1, fitted on the human-labelled rows only: four multinomial logistic heads over sublinear
  tf-idf spaces -- char n-grams (1-5, inside words), word uni+bigrams, both together, and
  negation-marked words with lexicon class tokens (``text.lexicon_tokens``) -- plus six lexicon
  scores (VADER, TextBlob; ``lexicons.py``). Level 2 is trained on their out-of-fold scores.
- Routing: a text goes to head 1 when it looks pre-cleaned (``text.looks_precleaned``) and a
  logistic domain classifier (char + word spaces; human-labelled rows vs lexicon-labelled rows)
  says it is from the lexicon-labelled corpora; otherwise to head 0.
- Level 2: one multinomial logistic model over ``[z * (1 - d), z * d, d]`` (z = 12 head scores and
  6 lexicon scores, d = route), fitted on the human rows (weight 1) and a sample of lexicon-labelled
  rows (weight ``weak_weight``). Head 0 learns human judgement from human rows; head 1 learns the
  lexicon labels of pre-cleaned text. The noisy weak labels thus never pull the human head towards
  the labelling tool, and the model still reproduces the lexicon labels on the files they came from.

Everything after the features is linear, so ``_fold`` collapses both levels into one weight matrix
per space (columns: head-0 logits, head-1 logits, domain score). Serving needs neither scikit-learn
nor pickle: a prediction is a dictionary lookup per n-gram/token, a sum of weight rows and six lexicon
scores. Without lexicon-labelled rows the model has head 0 only.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from ml.models.sentiment import lexicons
from ml.models.sentiment import text as tx

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

log = logging.getLogger(__name__)
CLASSES = (-1, 0, 1)
FORMAT = "mlplat-sentiment-stack/3"  # 3: TextBlob scores word tokens (lexicons.py)
SPACES = ("char", "word", "lex")
HEADS = {"char_word": ("char", "word"), "char": ("char",), "word": ("word",), "lex": ("lex",)}
LEXICON_PACKAGES = ("vaderSentiment", "textblob")
WORD_CACHE_SIZE = 100_000  # distinct words whose char n-gram ids are kept
DEFAULT_PARAMS: dict[str, Any] = {
    "C_text": 1.0,  # level-1 heads
    "C_stack": 3.0,  # level 2
    "min_df": 2,
    "folds": 5,  # out-of-fold level-1 scores
    "weak_rows": 10000,  # lexicon-labelled rows sampled for routing and head 1
    "weak_weight": 0.5,
    "max_chars": 2000,
}


def _tokens(space: str, p: Prepared) -> list[str]:
    if space == "char":
        return tx.char_grams(p.norm)
    if space == "word":
        return tx.words(p.tokens)
    return tx.lexicon_tokens(p.tokens, lexicons.word_classes())


@dataclass
class Space:
    """Vocabulary + idf of one sublinear tf-idf space (l2-normalised rows), as scikit-learn computes it."""

    vocabulary: dict[str, int]
    idf: np.ndarray

    @classmethod
    def fit(cls, token_lists: list[list[str]], min_df: int) -> Space:
        df: dict[str, int] = {}
        for toks in token_lists:
            for t in set(toks):
                df[t] = df.get(t, 0) + 1
        kept = sorted(t for t, n in df.items() if n >= min_df)
        n_docs = len(token_lists)
        idf = np.array([np.log((1 + n_docs) / (1 + df[t])) + 1.0 for t in kept])
        return cls({t: i for i, t in enumerate(kept)}, idf)

    def vector(self, tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
        counts: dict[int, int] = {}
        vocab = self.vocabulary
        for t in tokens:
            i = vocab.get(t)
            if i is not None:
                counts[i] = counts.get(i, 0) + 1
        if not counts:
            return np.empty(0, dtype=np.int64), np.empty(0)
        idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        val = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))) * self.idf[idx]
        return idx, val / np.sqrt(val @ val)

    def matrix(self, token_lists: list[list[str]]) -> sp.csr_matrix:
        indptr, indices, data = [0], [], []
        for toks in token_lists:
            idx, val = self.vector(toks)
            indices.append(idx)
            data.append(val)
            indptr.append(indptr[-1] + len(idx))
        return sp.csr_matrix(
            (np.concatenate(data) if data else [], np.concatenate(indices) if indices else [], indptr),
            shape=(len(token_lists), len(self.vocabulary)),
        )


def _aligned_rows(table: np.ndarray) -> np.ndarray:
    """A C-contiguous float64 copy of a (n, 8) table whose rows start on 64-byte boundaries."""
    buffer = np.empty(table.size + 8, dtype=np.float64)
    start = (-buffer.ctypes.data % 64) // 8
    rows = buffer[start:start + table.size].reshape(table.shape)
    rows[:] = table
    return rows


@dataclass
class Prepared:
    """One text in the forms the features read; tokenised once (word, lexicon and TextBlob features
    share the tokens)."""

    light: str
    norm: str
    tokens: list[str]
    precleaned: bool


def prepare(raw: str, max_chars: int) -> Prepared:
    raw = raw[:max_chars]
    lt = tx.light(raw)
    norm = lt.lower()
    return Prepared(lt, norm, tx.tokens(norm), tx.looks_precleaned(raw))


def _check_texts(texts: list[str]) -> list[str]:
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings, not a single string")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise ValueError(f"text {i} is {type(t).__name__}, expected str")
        if not t.strip():
            raise ValueError(f"text {i} is empty or whitespace-only")
    return out


@dataclass
class SentimentModel:
    spaces: dict[str, Space]
    weights: dict[str, np.ndarray]  # per space (n_tokens, 7): route-0 logits, route-1 logits, domain score
    dense: np.ndarray  # (2, 6, 3): lexicon scores -> logits, per route
    bias: np.ndarray  # (2, 3)
    domain_bias: float  # route 1 needs domain score + bias > 0 (and the pre-cleaned style)
    params: dict[str, Any] = field(default_factory=dict)
    lexicon_versions: dict[str, str] = field(default_factory=dict)

    @property
    def max_chars(self) -> int:
        return int(self.params["max_chars"])

    def __post_init__(self) -> None:
        # Serving layout: the spaces' vocabularies as one id range (char, word, lex), per-word char n-gram ids
        # cached, and per id one 64-byte row [7 weights, idf] on a 64-byte boundary: a text gathers ~300 rows,
        # one cache line each (the server's other work evicts them between requests; three separate arrays
        # cost three or four lines an id).
        self._offsets, start = {}, 0
        for name in SPACES:
            self._offsets[name] = start
            start += len(self.spaces[name].vocabulary)
        self._bounds = np.array([self._offsets[n] for n in SPACES[1:]], dtype=np.int64)
        self._rows = _aligned_rows(np.hstack([np.vstack([self.weights[n] for n in SPACES]),
                                              np.concatenate([self.spaces[n].idf for n in SPACES])[:, None]]))
        self._word_cache: dict[str, np.ndarray] = {}

    def _char_ids(self, word: str) -> np.ndarray:
        ids = self._word_cache.get(word)
        if ids is None:
            vocab, off = self.spaces["char"].vocabulary, self._offsets["char"]
            ids = np.array([vocab[g] + off for g in tx.char_grams(word) if g in vocab], dtype=np.int64)
            if len(self._word_cache) >= WORD_CACHE_SIZE:
                self._word_cache.clear()
            self._word_cache[word] = ids
        return ids

    def _score(self, raw: str) -> tuple[int, np.ndarray]:
        """(route, logits) of one text: the sparse part is one sum of weight rows over all spaces."""
        p = prepare(raw, self.max_chars)
        parts = [self._char_ids(word) for word in p.norm.split()]
        tokens: list[int] = []
        for name in ("word", "lex"):
            vocab, off = self.spaces[name].vocabulary, self._offsets[name]
            tokens.extend(vocab[t] + off for t in _tokens(name, p) if t in vocab)
        parts.append(np.array(tokens, dtype=np.int64))
        ids = np.concatenate(parts)
        acc = np.zeros(7)
        if len(ids):
            idx, counts = np.unique(ids, return_counts=True)
            rows = self._rows[idx]
            val = (1.0 + np.log(counts)) * rows[:, 7]
            seg = np.searchsorted(self._bounds, idx, side="right")  # the space of each id (ranges in SPACES order)
            val /= np.sqrt(np.bincount(seg, val * val, minlength=len(SPACES)))[seg]  # l2 per space
            acc = val @ rows[:, :7]
        route = 1 if (p.precleaned and acc[6] + self.domain_bias > 0) else 0
        lex = lexicons.scores(p.light, p.tokens)
        return route, acc[3 * route:3 * route + 3] + lex @ self.dense[route] + self.bias[route]

    def routes(self, texts: list[str]) -> np.ndarray:
        """Which head scores each text: 0 human judgement, 1 the lexicon labels of pre-cleaned text."""
        return np.array([self._score(t)[0] for t in _check_texts(texts)], dtype=np.int64)

    def decision_function(self, texts: list[str]) -> np.ndarray:
        texts = _check_texts(texts)
        out = np.empty((len(texts), len(CLASSES)))
        for i, t in enumerate(texts):
            out[i] = self._score(t)[1]
        return out

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """(n, 3) class probabilities, columns in CLASSES order (-1, 0, 1)."""
        z = self.decision_function(texts)
        e = np.exp(z - z.max(axis=1, keepdims=True))  # softmax, without scipy's per-call overhead
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, texts: list[str]) -> np.ndarray:
        return np.asarray(CLASSES)[self.decision_function(texts).argmax(axis=1)]

    def save(self, dir: Path) -> None:
        dir = Path(dir)
        dir.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "classes": list(CLASSES),
            "params": self.params,
            "lexicon_versions": self.lexicon_versions,
            "domain_bias": self.domain_bias,
            "vocabularies": {n: sorted(s.vocabulary, key=s.vocabulary.__getitem__) for n, s in self.spaces.items()},
        }
        (dir / "model.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        arrays = {f"idf_{n}": s.idf for n, s in self.spaces.items()}
        arrays |= {f"weights_{n}": w for n, w in self.weights.items()}
        np.savez(dir / "weights.npz", dense=self.dense, bias=self.bias, **arrays)

    @classmethod
    def load(cls, dir: Path) -> SentimentModel:
        dir = Path(dir)
        try:
            meta = json.loads((dir / "model.json").read_text(encoding="utf-8"))
            arrays = np.load(dir / "weights.npz", allow_pickle=False)
        except FileNotFoundError as exc:
            raise ValueError(f"{dir}: not a sentiment model directory ({exc.filename} missing)") from exc
        if meta.get("format") != FORMAT or meta.get("classes") != list(CLASSES):
            raise ValueError(f"{dir}: unsupported model format {meta.get('format')!r}, expected {FORMAT!r}")
        spaces, weights = {}, {}
        for n, vocab in meta["vocabularies"].items():
            spaces[n] = Space({t: i for i, t in enumerate(vocab)}, arrays[f"idf_{n}"])
            weights[n] = arrays[f"weights_{n}"]
            if weights[n].shape != (len(vocab), 7) or spaces[n].idf.shape != (len(vocab),):
                raise ValueError(f"{dir}: arrays of space {n!r} do not match its {len(vocab)} tokens")
        installed = _lexicon_versions()
        if meta["lexicon_versions"] != installed:
            log.warning("%s: trained with lexicons %s, installed %s", dir, meta["lexicon_versions"], installed)
        lexicons.word_classes()  # import the lexicon packages now, not on the first request
        lexicons.scorers()  # and compile (and check) the serving scorers
        return cls(spaces, weights, arrays["dense"], arrays["bias"], float(meta["domain_bias"]), meta["params"],
                   meta["lexicon_versions"])


def _lexicon_versions() -> dict[str, str]:
    return {p: metadata.version(p) for p in LEXICON_PACKAGES}


def _logistic(C: float, seed: int, solver: str = "saga") -> LogisticRegression:
    from sklearn.linear_model import LogisticRegression

    if solver == "saga":
        return LogisticRegression(C=C, solver="saga", max_iter=300, tol=1e-3, random_state=seed)
    return LogisticRegression(C=C, max_iter=5000)


def _oof(make: Callable[[], LogisticRegression], x: sp.csr_matrix, y: np.ndarray, folds: int,
         seed: int) -> np.ndarray:
    """Out-of-fold decision values of ``make()`` fitted on ``x``, ``y`` (stratified folds)."""
    from sklearn.model_selection import StratifiedKFold

    out = None
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        d = make().fit(x[tr], y[tr]).decision_function(x[te])
        if out is None:
            out = np.zeros((len(y), *d.shape[1:]))
        out[te] = d
    return out


def fit(texts: list[str], labels: Sequence[int] | np.ndarray, weak_texts: list[str] | None = None,
        weak_labels: Sequence[int] | np.ndarray | None = None, params: dict | None = None,
        seed: int = 0) -> SentimentModel:
    """Train on human-labelled ``texts`` (-1/0/1) and optionally lexicon-labelled ``weak_texts``."""
    unknown = set(params or {}) - set(DEFAULT_PARAMS)
    if unknown:
        raise ValueError(f"unknown sentiment params {sorted(unknown)}; known: {sorted(DEFAULT_PARAMS)}")
    p = {**DEFAULT_PARAMS, **(params or {})}
    texts = _check_texts(texts)
    y = _check_labels(labels, len(texts), "training", int(p["folds"]))
    weak = weak_texts is not None and len(weak_texts) > 0
    if weak:
        weak_texts = _check_texts(weak_texts)
        yw = _check_labels(weak_labels, len(weak_texts), "lexicon-labelled", 1)
        if len(weak_texts) > p["weak_rows"]:
            keep = np.sort(np.random.default_rng(seed).choice(len(weak_texts), int(p["weak_rows"]), replace=False))
            weak_texts, yw = [weak_texts[i] for i in keep], yw[keep]
    max_chars, folds = int(p["max_chars"]), int(p["folds"])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        from sklearn.exceptions import ConvergenceWarning

        warnings.simplefilter("ignore", category=ConvergenceWarning)
        hp = [prepare(t, max_chars) for t in texts]
        wp = [prepare(t, max_chars) for t in weak_texts] if weak else []
        spaces, xh, xw = {}, {}, {}
        for name in SPACES:
            toks = [_tokens(name, q) for q in hp]
            spaces[name] = Space.fit(toks, int(p["min_df"]))
            xh[name] = spaces[name].matrix(toks)
            xw[name] = spaces[name].matrix([_tokens(name, q) for q in wp]) if weak else None

        def stack(xs: dict[str, sp.csr_matrix], names: tuple[str, ...]) -> sp.csr_matrix:
            return sp.hstack([xs[n] for n in names]).tocsr()

        # level 1: out-of-fold scores on human rows, full-fit scores on weak rows
        head_models, zh, zw = {}, [], []
        for head, names in HEADS.items():
            xa = stack(xh, names)
            zh.append(_oof(lambda: _logistic(p["C_text"], seed), xa, y, folds, seed))
            head_models[head] = _logistic(p["C_text"], seed).fit(xa, y)
            if weak:
                zw.append(head_models[head].decision_function(stack(xw, names)))
        lh = np.array([lexicons.scores(q.light, q.tokens) for q in hp])
        zh = np.hstack([*zh, lh])
        # routing
        n_words = len(spaces["char"].vocabulary) + len(spaces["word"].vocabulary)
        if weak:
            xd = sp.vstack([stack(xh, ("char", "word")), stack(xw, ("char", "word"))]).tocsr()
            yd = np.r_[np.zeros(len(y)), np.ones(len(yw))]
            dom_scores = _oof(lambda: _logistic(p["C_text"], seed), xd, yd, folds, seed)
            dom = _logistic(p["C_text"], seed).fit(xd, yd)
            dom_w, dom_b = dom.coef_[0], float(dom.intercept_[0])
            pre = np.array([q.precleaned for q in hp + wp])
            d = ((dom_scores > 0) & pre).astype(float)
            lw = np.array([lexicons.scores(q.light, q.tokens) for q in wp])
            z = np.vstack([zh, np.hstack([*zw, lw])])
            ya = np.r_[y, yw]
            sw = np.r_[np.ones(len(y)), np.full(len(yw), float(p["weak_weight"]))]
        else:
            dom_w, dom_b = np.zeros(n_words), -1.0
            d, z, ya, sw = np.zeros(len(y)), zh, y, np.ones(len(y))
        aug = np.hstack([z * (1 - d)[:, None], z * d[:, None], d[:, None]])
        top = _logistic(p["C_stack"], seed, solver="lbfgs").fit(aug, ya, sample_weight=sw)
    log.info("routed to the lexicon head: %d of %d human rows, %d of %d weak rows", int(d[:len(y)].sum()), len(y),
             int(d[len(y):].sum()), len(d) - len(y))
    return _fold(spaces, head_models, top, dom_w, dom_b, p, z.shape[1])


def _check_labels(labels: Sequence[int] | np.ndarray | None, n: int, what: str, min_per_class: int) -> np.ndarray:
    y = np.asarray(labels)
    if len(y) != n:
        raise ValueError(f"{n} {what} texts but {len(y)} labels")
    bad = ~np.isin(y, CLASSES)
    if bad.any():
        raise ValueError(f"label {y[bad][:1].tolist()[0]!r} is not one of {CLASSES}")
    missing = set(CLASSES) - set(np.unique(y).tolist())
    if missing:
        raise ValueError(f"{what} labels lack class(es) {sorted(missing)}; need all of {CLASSES}")
    counts = {c: int((y == c).sum()) for c in CLASSES}
    if min(counts.values()) < min_per_class:
        raise ValueError(f"{what} labels need at least {min_per_class} rows per class (out-of-fold scores), "
                         f"got {counts}")
    return y.astype(np.int64)


def _fold(spaces: dict[str, Space], head_models: dict[str, LogisticRegression], top: LogisticRegression,
          dom_w: np.ndarray, dom_b: float, p: dict[str, Any], m: int) -> SentimentModel:
    """Collapse level 1 and level 2 into per-space weight rows (exact: everything is linear)."""
    order = [list(top.classes_).index(c) for c in CLASSES]
    k = top.coef_[order]  # (3, 2m + 1)
    k0 = top.intercept_[order]
    sizes = {n: len(s.vocabulary) for n, s in spaces.items()}
    weights = {n: np.zeros((sizes[n], 7)) for n in spaces}
    bias = np.zeros((2, 3))
    for r in (0, 1):
        kr = k[:, r * m:(r + 1) * m]  # (3, m)
        bias[r] = k0 + (k[:, 2 * m] if r else 0.0)
        for j, (head, names) in enumerate(HEADS.items()):
            hm = head_models[head]
            horder = [list(hm.classes_).index(c) for c in CLASSES]
            w, b = hm.coef_[horder], hm.intercept_[horder]  # (3, n_features of head)
            kh = kr[:, 3 * j:3 * j + 3]  # (3 logits, 3 head scores)
            bias[r] += kh @ b
            start = 0
            for n in names:
                weights[n][:, 3 * r:3 * r + 3] += (kh @ w[:, start:start + sizes[n]]).T
                start += sizes[n]
    dense = np.stack([k[:, r * m + 3 * len(HEADS):(r + 1) * m].T for r in (0, 1)])  # (2, 6, 3)
    weights["char"][:, 6] = dom_w[:sizes["char"]]
    weights["word"][:, 6] = dom_w[sizes["char"]:]
    return SentimentModel(spaces, weights, dense, bias, float(dom_b), p, _lexicon_versions())


def split(df: pd.DataFrame, seed: int = 0, test_size: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train / held-out split stratified by label and (when present) source."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be between 0 and 1, got {test_size}")
    strata = df["label"].astype(str)
    if "source" in df.columns:
        strata = strata + "/" + df["source"].astype(str)
    train, test = train_test_split(df, test_size=test_size, random_state=seed, stratify=strata)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def evaluate(model: SentimentModel, df: pd.DataFrame) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    if df.empty:
        raise ValueError("cannot evaluate on an empty frame")
    y = df["label"].to_numpy()
    pred = model.predict(df["text"].tolist())
    per_class = f1_score(y, pred, labels=list(CLASSES), average=None, zero_division=0)
    return {
        "macro_f1": float(f1_score(y, pred, labels=list(CLASSES), average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(y, pred)),
        "f1_negative": float(per_class[0]),
        "f1_neutral": float(per_class[1]),
        "f1_positive": float(per_class[2]),
        "rows": len(df),
    }
