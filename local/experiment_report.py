"""`mlplat experiment status`: the persisted state of an experiment as a table (or JSON).

Reads only `<state dir>/experiments/<model>.json` (ml/delivery/experiments/state.py), so it works from any
process while the controller runs, after it stopped, and when the platform is down.
"""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime
from typing import Any

from local.supervisor import pid_alive
from ml.delivery.experiments.state import ExperimentState


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def controller_line(state: ExperimentState) -> str:
    c = state.controller
    pid, host = c.get("pid"), c.get("host")
    alive = ""
    if state.status == "running" and isinstance(pid, int) and host == socket.gethostname():
        alive = " (alive)" if pid_alive(pid) else " (gone: the experiment is not advancing; start it again)"
    metrics = f", metrics {c['metrics_url']}" if c.get("metrics_url") else ""
    return f"controller pid {pid} on {host}{alive}, splitter {c.get('splitter', '?')}{metrics}"


def format_status(state: ExperimentState, now: float | None = None) -> str:
    now = time.time() if now is None else now
    lines = [f"experiment {state.model}: {'A/B test' if state.kind == 'ab' else 'bandit (Thompson sampling)'}, "
             f"metric {state.metric}, {state.status}, round {state.rounds}",
             f"started {_when(state.started_at)}, updated {now - state.updated_at:.0f}s ago",
             controller_line(state), ""]
    header = f"{'variant':<11} {'version':>7} {'weight':>6} {'trials':>7} {'successes':>9} {'rate':>7}"
    if state.kind == "bandit":
        header += f"  {'posterior':<20} {'P(best)':>7}"
    lines.append(header)
    # The champion first, then the challenger (the state file is written with sorted keys).
    for variant in sorted(state.variants, key=lambda v: (v != "champion", v != "challenger", v)):
        version = state.variants[variant]
        counts: dict[str, Any] = state.counts.get(variant, {})
        row = (f"{variant:<11} {version:>7} {state.weights.get(variant, 0):>6} {int(counts.get('trials', 0)):>7} "
               f"{int(counts.get('successes', 0)):>9} {_rate(counts.get('rate')):>7}")
        post = state.posteriors.get(variant)
        if post:
            beta = f"Beta({post['alpha']:.0f}, {post['beta']:.0f})"
            row += f"  {beta:<20} {post['p_best']:>7.2f}"
        lines.append(row)
    if state.kind == "ab":
        s = state.settings
        lines += ["", f"plan: challenger {s.get('split')} %, at least {s.get('min_samples')} outcomes per arm and "
                      f"{s.get('min_duration_s'):.0f}s; alpha {s.get('alpha')}, margin {s.get('margin'):.0%}, "
                      f"power {s.get('power')} (fixed horizon: no decision before it)"]
        decision = state.decision or {}
        test = decision.get("test")
        if test:
            lines += [f"test: {test['test']}", f"      {test['hypothesis']}",
                      f"uplift {test['uplift']:+.2%} (CI {test['ci_low']:+.2%} .. {test['ci_high']:+.2%}), "
                      f"p = {test['p_value']:.4g} (better at all: p = {test['p_value_better']:.4g})"
                      + ("  [interim: acts on nothing]" if decision.get("verdict") == "running" else "")]
        if decision:
            lines.append(f"decision: {decision['verdict']}: {decision['reason']}")
        if state.mlflow_run_id:
            lines.append(f"MLflow run {state.mlflow_run_id} (experiment mlplat-{state.model})")
        if state.promotion:
            lines.append(f"promotion: {state.promotion}")
    if state.message and state.kind == "bandit":
        lines += ["", state.message]
    return "\n".join(lines)
