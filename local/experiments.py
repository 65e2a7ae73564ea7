"""The experiment controllers on the local platform: what `mlplat experiment ab|bandit|simulate` wire up.

- the splitter is the platform's HAProxy (local/traffic.py), the outcomes come from its feedback endpoint;
- the challenger version is served by the challenger model server (local/challenger.py, the same one a
  rollout uses), loaded from `models:/<model>/<version>`;
- the A/B decision is recorded in the platform's MLflow and a `promote` verdict goes through
  ml/training/follow.py `promote` (alias, slot and served version move together), after the promotion
  policy's check of the version (ml/training/approval.py);
- weights, counts and posteriors are served to the local Prometheus on the `experiments` port.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from contracts import local_platform
from local import challenger, rollout_runner, traffic
from local.config import LocalConfig
from local.supervisor import port_in_use
from ml.delivery.experiments import controller as ctl
from ml.delivery.experiments import stats
from ml.delivery.experiments.exporter import ExperimentMetrics
from ml.delivery.experiments.record import record_decision
from ml.delivery.experiments.simulate import parse_rates, simulate
from ml.delivery.feedback_server import FeedbackClient
from ml.training.approval import missing_for_production, promotion_policy
from ml.training.follow import Serving, promote

log = logging.getLogger("mlplat.experiment")


def platform() -> LocalConfig:
    """The running platform with its splitter (local/rollout_runner.py's view of it)."""
    try:
        cfg = rollout_runner.platform_config()
    except (rollout_runner.RolloutError, local_platform.PlatformNotFound) as exc:
        raise ctl.ExperimentError(str(exc)) from None
    print(f"mlplat experiment: using the local platform in {cfg.state_dir}", file=sys.stderr, flush=True)
    return cfg


def _client(cfg: LocalConfig) -> Any:
    from mlflow import MlflowClient  # MLflow is slow to import; only the commands that run need it

    return MlflowClient(tracking_uri=cfg.mlflow_url, registry_uri=cfg.mlflow_url)


def serve_challenger(cfg: LocalConfig, model: str, version: str) -> str:
    """The challenger's model server serves `version` (as a rollout serves it); returns the champion's version."""
    try:
        return challenger.ensure_challenger(cfg, model, version, lambda line: print(line, file=sys.stderr, flush=True))
    except challenger.ChallengerError as exc:
        raise ctl.ExperimentError(str(exc)) from None


def _metrics(cfg: LocalConfig, port: int | None) -> tuple[ExperimentMetrics, str | None]:
    metrics = ExperimentMetrics()
    port = port or cfg.ports.get("experiments")
    if port is None:
        print("mlplat experiment: the platform recorded no `experiments` port (started by an older version): "
              "no metrics; pass --metrics-port", file=sys.stderr)
        return metrics, None
    if port_in_use(port, cfg.host):
        print(f"mlplat experiment: port {port} is taken (another controller?): no metrics from this one",
              file=sys.stderr)
        return metrics, None
    metrics.serve(port, cfg.host)
    return metrics, f"http://{cfg.host}:{port}/metrics"


def promote_challenger(client: Any, cfg: LocalConfig, model: str, version: str) -> dict[str, Any]:
    """The platform's promotion path, after the promotion policy's check of the version."""
    tags = dict(client.get_model_version(model, version).tags)
    missing = missing_for_production(tags, promotion_policy())
    if missing:
        return {"promoted": False, "version": version, "refused": f"v{version} lacks {'; '.join(missing)}"}
    where = Serving(cfg.state_dir / local_platform.SLOTS_DIR, cfg.url("http"))
    serving = promote(client, model, version, where, actor="mlplat experiment ab")
    return {"promoted": True, "champion": version, "serving": serving}


def run_ab_test(model: str, challenger: str, metric: str, plan: stats.Plan, *, split: int, interval_s: float,
                max_duration_s: float | None, tracking_uri: str | None, metrics_port: int | None) -> int:
    cfg = platform()
    client = _client(cfg) if tracking_uri is None else _tracking(tracking_uri)
    champion = serve_challenger(cfg, model, str(challenger))
    metrics, url = _metrics(cfg, metrics_port)
    print(f"mlplat experiment ab: {model} v{challenger} against v{champion}, {split} % of traffic; horizon "
          f"{plan.min_samples} outcomes per arm and {plan.min_duration_s:.0f}s; {stats.TEST_NAME}, alpha {plan.alpha}, "
          f"margin {plan.margin:.0%}", file=sys.stderr, flush=True)
    test = ctl.ABTest.new(model, champion, str(challenger), metric,
                          ctl.ABSettings(split=split, plan=plan, interval_s=interval_s, max_duration_s=max_duration_s),
                          ctl.controller_info(url, f"HAProxy {cfg.url('splitter')}"),
                          splitter=traffic.splitter(cfg), outcomes=FeedbackClient(cfg.url("feedback")).outcomes,
                          state_dir=cfg.state_dir, record=lambda s: record_decision(client, s),
                          promote=lambda v: promote_challenger(client, cfg, model, v), metrics=metrics)
    with contextlib.redirect_stdout(sys.stderr):  # MLflow prints a link to the run: stdout is the JSON result
        decision = test.run()
    print(json.dumps({"model": model, "champion": champion, "challenger": str(challenger),
                      "decision": decision.as_dict(), "mlflow_run_id": test.state.mlflow_run_id,
                      "promotion": test.state.promotion}, indent=1, default=str))
    return 0


def _tracking(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def run_bandit(model: str, challenger: str, metric: str, *, floor: float, interval_s: float, rounds: int | None,
               seed: int | None, metrics_port: int | None, attribution_window_s: float = 0.0) -> int:
    cfg = platform()
    champion = serve_challenger(cfg, model, str(challenger))
    metrics, url = _metrics(cfg, metrics_port)
    bandit = ctl.Bandit.new(model, {ctl.CHAMPION: champion, ctl.CHALLENGER: str(challenger)}, metric,
                            ctl.BanditSettings(floor=floor, interval_s=interval_s, rounds=rounds, seed=seed,
                                               attribution_window_s=attribution_window_s),
                            ctl.controller_info(url, f"HAProxy {cfg.url('splitter')}"),
                            splitter=traffic.splitter(cfg),
                            outcomes=FeedbackClient(cfg.url("feedback")).outcomes, state_dir=cfg.state_dir,
                            metrics=metrics)
    print(f"mlplat experiment bandit: {model} v{champion} (champion) and v{challenger} (challenger), floor "
          f"{floor:.0%}, every {interval_s:.0f}s; `mlplat experiment status {model}` shows it", file=sys.stderr,
          flush=True)
    state = bandit.run()
    print(json.dumps({"model": model, "rounds": state.rounds, "weights": state.weights,
                      "posteriors": state.posteriors}, indent=1))
    return 0


def smoke_body(state_dir: Path, model: str) -> dict[str, Any]:
    """The request `local up` smoke-tested the model with (summary.json)."""
    try:
        return dict(json.loads((state_dir / "summary.json").read_text())["smoke"][model]["request"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ctl.ExperimentError(f"no smoke request of {model} in {state_dir / 'summary.json'}: pass --body FILE "
                                  "(a V2 inference request)") from None


def simulate_feedback(model: str, rates: str, requests: int, *, seed: int, concurrency: int, report: str,
                      body_file: Path | None) -> dict[str, Any]:
    cfg = platform()
    body = json.loads(body_file.read_text()) if body_file else smoke_body(cfg.state_dir, model)
    result = simulate(cfg.url("splitter"), cfg.url("feedback"), model, body, parse_rates(rates), requests,
                      seed=seed, concurrency=concurrency, report=report)
    return result.as_dict()
