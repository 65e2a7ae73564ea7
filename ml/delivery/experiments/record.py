"""The A/B decision in MLflow: one run under the model's experiment (`mlplat-<model>`, where its
training runs are), tagged with both versions and the verdict, with the statistics as params and
metrics and the whole decision as `ab-decision.json`; the challenger's model version gets the verdict
and the run id as tags, so its model card's tags show how its A/B test ended."""

from __future__ import annotations

from typing import Any

from ml.delivery.experiments.state import ExperimentState
from ml.training.tracking import ensure_experiment

TAG_PREFIX = "mlplat.ab_test"


def _flat_metrics(state: ExperimentState) -> dict[str, float]:
    out: dict[str, float] = {}
    for variant, counts in state.counts.items():
        out[f"{variant}_trials"] = float(counts["trials"])
        out[f"{variant}_successes"] = float(counts["successes"])
        if counts.get("rate") is not None:
            out[f"{variant}_rate"] = float(counts["rate"])
    test = (state.decision or {}).get("test") or {}
    for key in ("uplift", "ci_low", "ci_high", "p_value", "p_value_better", "statistic"):
        if key in test:
            out[key] = float(test[key])
    out["duration_s"] = float(state.updated_at - state.started_at)
    return out


def record_decision(client: Any, state: ExperimentState) -> str:
    """Log the decided A/B test of `state` as an MLflow run; returns the run id."""
    decision = state.decision or {}
    champion, challenger = state.variants["champion"], state.variants["challenger"]
    exp_id = ensure_experiment(client, f"mlplat-{state.model}", client.tracking_uri)
    tags = {f"{TAG_PREFIX}.champion_version": champion, f"{TAG_PREFIX}.challenger_version": challenger,
            f"{TAG_PREFIX}.verdict": str(decision.get("verdict")), "mlplat.run_kind": "ab-test",
            "mlflow.runName": f"ab-test {state.model} v{challenger} vs v{champion}"}
    run = client.create_run(exp_id, tags=tags)
    run_id = run.info.run_id
    test = decision.get("test") or {}
    params = {**{k: v for k, v in state.settings.items() if v is not None}, "metric": state.metric,
              "hypothesis": test.get("hypothesis", "")}
    for key, value in params.items():
        client.log_param(run_id, key, str(value)[:500])
    for key, value in _flat_metrics(state).items():
        client.log_metric(run_id, key, value)
    client.log_dict(run_id, {"model": state.model, "variants": state.variants, "metric": state.metric,
                             "settings": state.settings, "counts": state.counts, "decision": decision,
                             "started_at": state.started_at, "decided_at": state.updated_at},
                    "ab-decision.json")
    client.set_terminated(run_id)
    client.set_model_version_tag(state.model, challenger, f"{TAG_PREFIX}.verdict", str(decision.get("verdict")))
    client.set_model_version_tag(state.model, challenger, f"{TAG_PREFIX}.run_id", run_id)
    return run_id
