"""`mlplat local up --engines spark`: the batch features computed by the Spark job on local[2] (a process of
its own, the cluster job's entry point) replace the pandas-derived offline sources, and Feast materializes
and serves them. The whole platform is not started for this: the feature-store build is the part the engine
changes, and the summary line is checked on its own (the demo platform keeps the default, no JVM)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from local import feast_local
from local.cli import _config
from local.config import ENGINES, parse_engines
from local.report import summary_text
from local.services import PORT_FLAGS
from ml.model_plugin import load_plugin

MODELS = ("fraud", "recommendation")


@pytest.mark.integration
def test_spark_engine_builds_the_feature_store_and_feast_serves_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for name in MODELS:
        load_plugin(name).generate_sample(data)
    state = feast_local.build(tmp_path / "feast", data, MODELS, None, {"data": "sample"}, spark=True)
    assert state.views == {"card_features": 2000, "device_features": 2000, "book_features": 400,
                           "reader_recent_books": 300}
    assert state.batch_engine.startswith("Spark local[2]: 4 batch feature view(s)")
    assert feast_local.check_online(state.repo) == dict.fromkeys(state.views, "ok")
    # The offline sources Feast registered are the Spark job's files, not the pandas ones.
    assert sorted(p.relative_to(state.repo / "data").as_posix() for p in (state.repo / "data").rglob("*.parquet")) \
        == ["fraud/card_features.parquet", "fraud/device_features.parquet", "recommendation/book_features.parquet",
            "recommendation/reader_recent_books.parquet"]
    again = feast_local.build(tmp_path / "feast", data, MODELS, None, {"data": "sample"}, spark=True)
    assert again.reused and again.batch_engine == state.batch_engine
    pandas = feast_local.build(tmp_path / "feast", data, MODELS, None, {"data": "sample"})
    assert not pandas.reused and pandas.views == state.views  # switching engines rebuilds


def test_engines_flag_accepts_spark_and_names_the_allowed_ones() -> None:
    assert parse_engines("spark") == ("spark",) and parse_engines(" spark, spark ") == ("spark",)
    assert parse_engines("") == ()
    with pytest.raises(ValueError, match=r"unknown engine\(s\) storm; allowed: " + ", ".join(ENGINES)):
        parse_engines("spark,storm")


def test_up_records_the_engines_in_its_config(tmp_path: Path) -> None:
    args = argparse.Namespace(action="up", state_dir=tmp_path, **{f"port_{n}": None for n in PORT_FLAGS})
    cfg = _config(args, engines=parse_engines("spark"))
    assert cfg.engines == ("spark",)


def test_summary_names_the_spark_engine_only_when_it_ran() -> None:
    doc = {"ok": True, "urls": {}, "models": [], "smoke": {}, "gates": "", "tracing": "", "prometheus": "",
           "services": {}, "data": "", "total_s": 1.0, "pipelines": {},
           "feast": {"online_store": "sqlite", "views": ["card_features"], "check": "ok",
                     "batch_engine": "Spark local[2]: 1 batch feature view(s) in 20.0s (card_features: 5 rows)"}}
    assert "Batch features: Spark local[2]: 1 batch feature view(s)" in summary_text(doc)
    doc["feast"]["batch_engine"] = "pandas (the models' feature code)"
    assert "Batch features" not in summary_text(doc)
