"""The serving path's lexicon scorers (ml/models/sentiment/lexicon_scorers.py) give exactly the scores of the
installed VADER and TextBlob packages: on every rule the probes exercise, on texts of the data's schemas
(generated here; the shared datasets' files too when they sit beside the checkout), and a disagreement
found at load sends scoring back to the packages. The model-level equality (serving path against the
explicit stack computed with the packages) is in test_sentiment_algorithm.py."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ml.models.sentiment import algorithm, data, lexicons
from ml.models.sentiment.lexicon_scorers import TextBlobScorer, VaderScorer

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
EDGES = [
    "not good", "not very good", "very not good", "really not bad!", "not a good idea", "never so good",
    "no good", "no no good", "no, or nor good", "at least good", "very least good", "the least good",
    "good but bad", "bad but good but", "kind of good", "sort of bad", "GOOD and bad", "GOOD", "VERY GOOD movie",
    "without doubt good", "without a doubt good", "the shit", "yeah right great", "cut the mustard nice",
    "good!!!!!", "good??", "good????", ":) :( :D <3 ;)", "great :-)", "x", "!!!", "", "   ", "'", "n't good",
    "isn't bad", "ain't nothing good", "so so good", "this this great", "terribly good", "awfully bad",
    "I \U0001f498 you \U0001f602", "kind", "kind of", "hardly good at all", "sorta kinda ok",
]


def _texts(data_dir: Path, limit: int | None = None) -> list[str]:
    texts = data.load(data_dir)["text"].tolist()
    human = data.load_human(data_dir)
    if human is not None:
        texts += human["text"].tolist()
    return texts[:limit] if limit else texts


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sentiment-corpus")
    data.generate_sample(out, rows=1500, seed=3)
    return out


@pytest.fixture(scope="module")
def corpus(sample_dir) -> list[str]:
    texts = [*EDGES, *lexicons.PROBES, *_texts(sample_dir)]
    if SHARED.is_dir():  # the real files (all 48,516 were compared when this was written; 3,000 here)
        texts += _texts(SHARED)[::16][:3000]
    return texts


def test_the_scorers_equal_the_packages_on_every_text(corpus):
    from textblob.en import sentiment as textblob_sentiment

    vader, textblob = VaderScorer(), TextBlobScorer(textblob_sentiment)
    package_vader, package_textblob = lexicons._analyzers()
    for raw in corpus:
        prepared = algorithm.prepare(raw, algorithm.DEFAULT_PARAMS["max_chars"])
        assert vader.polarity_scores(prepared.light) == package_vader.polarity_scores(prepared.light), raw
        assert vader.polarity_scores(raw) == package_vader.polarity_scores(raw), raw
        assert textblob(prepared.tokens) == tuple(package_textblob(prepared.tokens)[:2]), raw
        words = raw.lower().split()  # other tokenisations too: the rules, not our tokeniser, are under test
        assert textblob(words) == tuple(package_textblob(words)[:2]), raw


def test_scores_use_the_fast_scorers_when_they_agree():
    assert lexicons.scorers() is not lexicons._by_packages
    prepared = algorithm.prepare("NOT good at all!!! :(", 2000)
    vader, (polarity, subjectivity) = lexicons._by_packages(prepared.light, prepared.tokens)
    assert lexicons.scores(prepared.light, prepared.tokens).tolist() == [
        vader["neg"], vader["neu"], vader["pos"], vader["compound"], polarity, subjectivity]


def test_a_disagreement_on_the_probes_falls_back_to_the_packages(monkeypatch, caplog):
    monkeypatch.setattr(TextBlobScorer, "__call__", lambda self, words: (0.5, 0.5))
    lexicons.scorers.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=lexicons.__name__):
            assert lexicons.scorers() is lexicons._by_packages
        assert "differ from the installed packages" in caplog.text
    finally:
        lexicons.scorers.cache_clear()


def test_the_comparison_command_reads_every_text_of_a_data_directory(sample_dir, capsys):
    from ml.models.sentiment.compare_lexicons import main

    assert main(["--data", str(sample_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{len(_texts(sample_dir))} texts, 0 with different scores; CPU per text: fast scorers" in out
