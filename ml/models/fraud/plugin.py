"""The fraud model's `ModelPlugin`: the only way the platform reaches this package (sample data, data check,
features read back from the offline store, training through `train.py`, evaluation, requests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ml.model_plugin import ModelPlugin
from ml.models.fraud import algorithm, data, features, train
from ml.training.outputs import TrainOutput


def _rows(data_dir: Path, n: int, seed: int) -> pd.DataFrame:
    frame = data.load(Path(data_dir))
    return frame.sample(n=min(n, len(frame)), random_state=seed)


def request_body(row: pd.Series) -> dict[str, Any]:
    """One transaction as a V2 request; card_id/device_id as materialized by features.write_parquet."""
    tid = int(row["transaction_id"])
    inputs = [
        {"name": "card_id", "datatype": "INT64", "shape": [1], "data": [tid]},
        {"name": "device_id", "datatype": "INT64", "shape": [1], "data": [tid]},
        {"name": "amount", "datatype": "FP64", "shape": [1], "data": [float(row["amount"])]},
        {"name": "transaction_hour", "datatype": "INT64", "shape": [1], "data": [int(row["transaction_hour"])]},
        {"name": "merchant_category", "datatype": "BYTES", "shape": [1], "data": [str(row["merchant_category"])]},
        {"name": "foreign_transaction", "datatype": "INT64", "shape": [1], "data": [int(row["foreign_transaction"])]},
        {"name": "location_mismatch", "datatype": "INT64", "shape": [1], "data": [int(row["location_mismatch"])]},
    ]
    return {"inputs": inputs}



class FraudPlugin(ModelPlugin):
    evaluation_protocol = ("Stratified split of the transactions (25 % held out, `seed`); the decision threshold is "
                           "chosen by cross-validation on the training rows only (max F1 at precision >= "
                           "`min_precision`); AUC, PR-AUC, precision, recall and F1 on the held-out rows.")
    limitations = (
        "The online features (device trust, velocity, cardholder age) come from the feature store; when it fails "
        "the row is scored on training medians and marked `degraded`.",
        "Merchant categories outside the trained set are refused (422): a new category needs a retrain.",
        "The shared dataset has no card or device ids and no event times: point-in-time correctness of the "
        "features is shown with derived ids, not measured on real histories.",
    )

    def data_files(self, data_dir: Path) -> list[Path]:
        return [p for p in (Path(data_dir) / data.FILE, Path(data_dir) / f"{data.FILE}.gz") if p.is_file()]

    def feature_names(self, model_dir: Path) -> list[str]:
        return list(data.FEATURES)

    def serving_schema(self) -> Any:
        return data.serving_schema()

    def generate_sample(self, out_dir: Path, seed: int = 0) -> None:
        data.generate_sample(Path(out_dir), seed=seed)

    def read_features(self, store: Any, data_dir: Path, out_dir: Path) -> str:
        """The transactions file with its online-store columns (device trust, velocity, cardholder age)
        replaced by what `get_historical_features` returns for each transaction's card and device
        (`features.training_frame`, a point-in-time join), written in the file's own format."""
        transactions = data.load(Path(data_dir))
        joined = features.training_frame(store, transactions.drop(columns=list(features.ONLINE_FEATURES)))
        missing = [c for c in features.ONLINE_FEATURES if joined[c].isna().any()]
        if missing:
            raise ValueError(f"the offline store has no {', '.join(missing)} for some transactions of {data_dir}")
        source = next(p for p in (Path(data_dir) / data.FILE, Path(data_dir) / f"{data.FILE}.gz") if p.is_file())
        raw = pd.read_csv(source, dtype=str, keep_default_na=False, na_filter=False)
        by_id = joined.set_index(joined["transaction_id"].astype("int64"))
        ids = raw[data.ID].str.strip().astype("int64")
        for column in features.ONLINE_FEATURES:
            raw[column] = by_id.loc[ids, column].astype("int64").astype(str).to_numpy()
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        raw.to_csv(Path(out_dir) / data.FILE, index=False)
        return (f"{len(raw):,} transactions; {', '.join(features.ONLINE_FEATURES)} from the offline store "
                f"(get_historical_features)")

    def check_data(self, data_dir: Path) -> str:
        return f"{len(data.load(Path(data_dir))):,} rows"

    def train(self, data_dir: Path, out_dir: Path, *, params: dict[str, Any] | None = None, seed: int = 0,
              quick: bool = False) -> TrainOutput:
        return train.train(data_dir, out_dir, params=params, seed=seed)

    def evaluate(self, model_dir: Path, data_file: Path, *, seed: int = 0) -> dict[str, float]:
        """Metrics on a file with the schema of credit_card_fraud_10k.csv."""
        model = algorithm.FraudModel.load(Path(model_dir))
        frame = data.load_transactions(Path(data_file))
        return {k: float(v) for k, v in algorithm.evaluate(model, frame).items()}

    def sample_requests(self, data_dir: Path, model_dir: Path, n: int = 200, seed: int = 0) -> list[dict[str, Any]]:
        """Single transactions from the data."""
        return [request_body(row) for _, row in _rows(data_dir, n, seed).iterrows()]

    def bare_onnx_requests(self, data_dir: Path, model_dir: Path, n: int = 200,
                           seed: int = 0) -> list[dict[str, Any]] | None:
        """The same rows, already encoded (FP32 [1, n_features])."""
        x = data.encode(_rows(data_dir, n, seed))
        return [{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, x.shape[1]], "data": r.tolist()}]}
                for r in x]
