"""The sentiment model's `ModelPlugin`: the only way the platform reaches this package (sample data, data
check, training through `train.py`, evaluation, requests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ml.model_plugin import ModelPlugin
from ml.models.sentiment import algorithm, data, train
from ml.training.outputs import TrainOutput


class SentimentPlugin(ModelPlugin):
    evaluation_protocol = (
        "Held out (seed): 20 % of the human-labelled tweets (stratified by label) and 20 % of the "
        "lexicon-labelled rows (stratified by label and source); the model is fitted on the other 80 % of each "
        "(its level-2 model on out-of-fold level-1 scores). human_* metrics compare with people's labels (the "
        "quality gate), lexicon_* metrics with the lexicon tool's. The documented 5-fold cross-validation over "
        "the human-labelled file: `python -m ml.models.sentiment.measure --data DIR`.")
    limitations = (
        "English tweets of 2009-2012 (human labels) and pre-cleaned Indian-politics tweets and Reddit comments "
        "(lexicon labels); other domains, languages and long documents are untested.",
        "Text that looks pre-cleaned (no capitals, no punctuation, no one-letter words) and resembles the "
        "lexicon-labelled corpora is scored by the head that reproduces their lexicon labels, not human judgement.",
        "Cost grows with text length (character n-grams, VADER): a 2,000-character comment takes several "
        "milliseconds, a tweet well under one.",
    )

    def data_files(self, data_dir: Path) -> list[Path]:
        return data.files(Path(data_dir))

    def generate_sample(self, out_dir: Path, seed: int = 0) -> None:
        data.generate_sample(Path(out_dir), seed=seed)

    def check_data(self, data_dir: Path) -> str:
        weak = data.load(Path(data_dir))
        human = data.load_human(Path(data_dir))
        return f"{len(weak):,} lexicon-labelled rows, " + (
            f"{len(human):,} human-labelled tweets" if human is not None else f"no {data.HUMAN_FILE}")

    def train(self, data_dir: Path, out_dir: Path, *, params: dict[str, Any] | None = None, seed: int = 0,
              quick: bool = False) -> TrainOutput:
        return train.train(data_dir, out_dir, params=params, seed=seed)

    def evaluate(self, model_dir: Path, data_file: Path, *, seed: int = 0) -> dict[str, float]:
        """Metrics on one file of any schema (`clean_text`/`clean_comment` + `category` -1/0/1, or raw
        `text` + `sentiment` as words): `macro_f1`, `accuracy`, per-class F1, `rows`."""
        model = algorithm.SentimentModel.load(Path(model_dir))
        frame = data.load_file(Path(data_file))
        return {k: float(v) for k, v in algorithm.evaluate(model, frame).items()}

    def sample_requests(self, data_dir: Path, model_dir: Path, n: int = 200, seed: int = 0) -> list[dict[str, Any]]:
        """V2 request bodies for benchmarks: single raw tweets from the human-labelled file (the model's
        intended input), else texts of the lexicon-labelled files."""
        frame = data.load_human(Path(data_dir))
        if frame is None:
            frame = data.load(Path(data_dir))
        texts = frame["text"].sample(n=min(n, len(frame)), random_state=seed).tolist()
        return [{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [t]}]} for t in texts]
