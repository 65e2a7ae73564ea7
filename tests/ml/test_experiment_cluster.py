"""The cluster runner (ml/delivery/experiments/cluster.py) with the Deployment's own arguments, against the
real Seldon splitter on a fake Experiments API and a fake feedback endpoint: it patches only the Experiment's
candidate weights and serves its metrics."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest

from ml.delivery.experiments import cluster
from ml.delivery.seldon import merge_patch
from ml.serving.processes import free_port

# As infra/workloads/experiments.py `controller_args` writes them (tests/infra/test_experiment_controllers.py).
ARGS = ["bandit", "recommendation", "--feedback-url", "http://feedback.delivery.svc.cluster.local:9097",
        "--namespace", "seldon", "--metric", "ctr", "--floor", "0.1", "--interval", "30s", "--attribution-window",
        "1800s", "--metrics-port", "9102", "--state-dir", "/tmp/experiments", "--since", "1765000000"]


class FakeExperiments:
    def __init__(self) -> None:
        self.doc = {"spec": {"default": "recommendation-champion", "candidates": [
            {"name": "recommendation-champion", "weight": 100}, {"name": "recommendation-challenger", "weight": 0}]}}
        self.patches: list[tuple[str, str, dict[str, Any]]] = []

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return self.doc

    def patch(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.patches.append((namespace, name, body))
        self.doc = merge_patch(self.doc, body)
        return self.doc


@dataclass
class Counts:
    served: int
    outcomes: int
    successes: int


def test_the_deployments_arguments_run_a_bandit_on_the_seldon_experiment(tmp_path, monkeypatch):
    parsed = cluster.parser().parse_args(ARGS)
    assert (parsed.floor, parsed.interval, parsed.since, parsed.metrics_port) == (0.1, 30.0, 1765000000.0, 9102)
    seen: list[tuple[str, float]] = []

    class Feedback:
        def __init__(self, url: str) -> None:
            assert url == "http://feedback.delivery.svc.cluster.local:9097"

        def outcomes(self, model: str, since: float, *, until: float | None = None) -> dict[str, Counts]:
            seen.append((model, since, until is not None))
            return {"champion": Counts(1000, 50, 50), "challenger": Counts(1000, 150, 150)}

    monkeypatch.setattr(cluster, "FeedbackClient", Feedback)
    api = FakeExperiments()
    port = free_port()
    argv = [*ARGS, "--rounds", "2"]
    argv[argv.index("--metrics-port") + 1] = str(port)
    argv[argv.index("--state-dir") + 1] = str(tmp_path)
    argv[argv.index("--interval") + 1] = "0s"  # no pause between the two rounds
    assert cluster.main(argv, api=api) == 0
    assert seen == [("recommendation", 1765000000.0, True)] * 2  # counted up to now - the attribution window
    assert {(ns, name) for ns, name, _ in api.patches} == {("seldon", "recommendation-experiment")}
    assert all(set(body) == {"spec"} and set(body["spec"]) == {"candidates"} for _, _, body in api.patches)
    weights = {c["name"]: c["weight"] for c in api.doc["spec"]["candidates"]}
    assert weights == {"recommendation-champion": 10, "recommendation-challenger": 90}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert 'mlplat_experiment_traffic_weight{kind="bandit",model="recommendation",variant="challenger"} 90.0' in text
    assert (tmp_path / "experiments" / "recommendation.json").is_file()


def test_the_feedback_endpoint_defaults_to_the_in_cluster_service():
    for kind in (["bandit", "recommendation"], ["ab", "fraud", "--min-samples", "100", "--tracking-uri", "http://m"]):
        assert cluster.parser().parse_args(kind).feedback_url == "http://feedback.delivery.svc.cluster.local:9097"
    assert cluster.parser().parse_args(["bandit", "recommendation"]).attribution_window == 0.0


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        cluster.parser().parse_args(["ab", "fraud", "--feedback-url", "http://x"])  # no --min-samples
