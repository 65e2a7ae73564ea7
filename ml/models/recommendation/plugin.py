"""The recommendation model's `ModelPlugin`: the only way the platform reaches this package (sample data,
data check, features read back from the offline store, training through `train.py`, evaluation, requests)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.model_plugin import ModelPlugin
from ml.models.recommendation import algorithm, data, features, synthetic, train
from ml.models.recommendation.two_stage import load_model
from ml.training.outputs import TrainOutput

# Which request form `sample_requests` builds (benchmarks, load tests): `book_ids` (default) or `user_id`.
REQUEST_FORM_ENV = "MLPLAT_RECOMMENDATION_REQUESTS"
REQUEST_FORMS = ("book_ids", "user_id")


class RecommendationPlugin(ModelPlugin):
    def generate_sample(self, out_dir: Path, seed: int = 0) -> None:
        synthetic.generate_sample(Path(out_dir), seed=seed)

    def read_features(self, store: Any, data_dir: Path, out_dir: Path) -> str:
        """The goodbooks files, with the books file's catalogue features (average rating, rating count)
        read back from the `book_features` view through `get_historical_features` (the reader histories
        are derived from the ratings, which training reads as they are)."""
        src, out = Path(data_dir), Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name in (data.RATINGS_FILE, data.GENRES_FILE):
            try:
                path = data.resolve(src, name)
            except data.DataContractError:
                continue  # the genres file is optional; a missing ratings file is reported by validate-data
            shutil.copy2(path, out / path.name)
        books_path = data.resolve(src, data.BOOKS_FILE)
        raw = pd.read_csv(books_path, dtype=str, keep_default_na=False)
        ids = raw["book_id"].str.strip().astype("int64")
        entity_df = pd.DataFrame({"book_id": ids, "event_timestamp": features.FEATURE_TIMESTAMP})
        refs = [f"{features.BOOK_VIEW}:{f}" for f in ("average_rating", "ratings_count")]
        joined = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
        by_id = joined.drop_duplicates("book_id").set_index("book_id")
        missing = int(by_id.loc[ids, "ratings_count"].isna().sum())
        if missing:
            raise ValueError(f"the offline store has no catalogue features for {missing} book(s) of {books_path}")
        raw["average_rating"] = [f"{v:.2f}" for v in by_id.loc[ids, "average_rating"].astype(float)]
        raw["ratings_count"] = by_id.loc[ids, "ratings_count"].astype("int64").astype(str).to_numpy()
        raw.to_csv(out / data.BOOKS_FILE, index=False)
        return f"{len(raw):,} books: average_rating, ratings_count from the offline store (get_historical_features)"

    def check_data(self, data_dir: Path) -> str:
        return f"{len(data.load(Path(data_dir)).ratings):,} rows"

    def train(self, data_dir: Path, out_dir: Path, *, params: dict[str, Any] | None = None, seed: int = 0,
              quick: bool = False) -> TrainOutput:
        # The popularity/item-kNN/untuned-EASE baselines only matter for model quality reports.
        return train.train(data_dir, out_dir, params=params, seed=seed, baselines=not quick)

    def evaluate(self, model_dir: Path, data_file: Path, *, seed: int = 0) -> dict[str, float]:
        """Protocol metrics on a ratings file of held-out users (per-user 80/20 split with `seed`)."""
        model = load_model(Path(model_dir))
        ratings = data.load_ratings(Path(data_file))
        return {k: float(v) for k, v in algorithm.evaluate(model, ratings, seed=seed, k=train.K).items()}

    def sample_requests(self, data_dir: Path, model_dir: Path, n: int = 200, seed: int = 0) -> list[dict[str, Any]]:
        """V2 request bodies for benchmarks, one per sampled reader of the data: by default the reader's last 20
        known books as `book_ids` (every request retrieves and ranks online); with the environment variable
        `MLPLAT_RECOMMENDATION_REQUESTS=user_id`, the same readers' `user_id` (the history comes from the online
        store, and the version's batch scores answer while it is the history they were computed from)."""
        form = os.environ.get(REQUEST_FORM_ENV, "book_ids")
        if form not in REQUEST_FORMS:
            raise ValueError(f"{REQUEST_FORM_ENV}={form!r}: expected one of {', '.join(REQUEST_FORMS)}")
        model = load_model(Path(model_dir))
        ratings = data.load_ratings(data.resolve(Path(data_dir), data.RATINGS_FILE))
        rng = np.random.default_rng(seed)
        users, groups = zip(*ratings.groupby("user_id")["book_id"], strict=True)
        bodies: list[dict[str, Any]] = []
        for i in rng.choice(len(groups), size=min(n, len(groups)), replace=False):
            if form == "user_id":
                bodies.append({"inputs": [{"name": "user_id", "datatype": "INT64", "shape": [1],
                                           "data": [int(users[i])]}], "parameters": {"k": train.K}})
                continue
            history = [int(b) for b in groups[i].tail(20) if int(b) in model.known_items]
            bodies.append(
                {
                    "inputs": [{"name": "book_ids", "datatype": "INT64", "shape": [len(history)], "data": history}],
                    "parameters": {"k": train.K},
                }
            )
        return bodies

    def smoke_request(self, data_dir: Path, model_dir: Path | None, online_store: bool) -> dict[str, Any]:
        """With a Redis online store the request carries only a reader's id (the first in the ratings
        file), so the runtime resolves the reader's history through Feast; else a history request."""
        if not online_store:
            return super().smoke_request(data_dir, model_dir, online_store)
        path = data.resolve(Path(data_dir), data.RATINGS_FILE)
        user = int(pd.read_csv(path, dtype=str, keep_default_na=False, nrows=1).iloc[0]["user_id"])
        return {"inputs": [{"name": "user_id", "datatype": "INT64", "shape": [1], "data": [user]}],
                "parameters": {"k": 5}}
