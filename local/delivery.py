"""`local up`'s delivery step: the traffic splitter (HAProxy) and the feedback endpoint (local/splitter.py)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from local import splitter
from local.config import LocalConfig
from local.services import Decision, ensure
from local.supervisor import Supervisor
from ml.delivery import haproxy
from ml.delivery.splitter import split


def start(cfg: LocalConfig, sup: Supervisor, decisions: dict[str, Decision], say: Callable[[str], None],
          detail: Callable[[str], None], records: dict[str, str]) -> str:
    """Render and check haproxy.cfg, start (or reuse) HAProxy and the feedback endpoint; returns a summary."""
    lay = splitter.layout(cfg)
    no_challenger = sup.running("challenger") is None
    if no_challenger and lay.weights_path.exists():
        # No challenger server runs (a `down` stopped it, or it died): every model's traffic goes to the champion.
        lay.weights_path.unlink()
    haproxy.write(lay, cfg.models)
    identity = {"config": hashlib.sha256(json.dumps(
        {"models": list(cfg.models), "layout": [lay.port, lay.metrics_port, lay.champion, lay.challenger,
                                                 lay.mirror]}).encode()).hexdigest()[:16]}
    stale = decisions["haproxy"].record is not None and decisions["haproxy"].record.info.get("identity") != identity
    _, records["haproxy"] = ensure(cfg, sup, decisions["haproxy"], detail, force_restart=stale,
                                   info={"identity": identity}, url=cfg.url("splitter"))
    if no_challenger and records["haproxy"] == "reused":
        # A reused HAProxy keeps its run-time weights: none may point at a challenger that is not there.
        live = splitter.splitter(cfg)
        for model in cfg.models:
            live.set_weights(model, split(model, 0))
            live.set_mirror(model, None, 0)
    shares = "champion 100 % per model" if no_challenger else "weights as the running rollout or experiment set them"
    say(f"traffic splitter (HAProxy) {records['haproxy']} at {cfg.url('splitter')}: {shares}; config checked with "
        f"haproxy -c; exporter {cfg.url('splitter_metrics')}/metrics")
    _, records["feedback"] = ensure(cfg, sup, decisions["feedback"], detail, url=cfg.url("feedback"))
    say(f"feedback endpoint {records['feedback']} at {cfg.url('feedback')}/v1/outcomes")
    return f"{cfg.url('splitter')} (HAProxy), feedback {cfg.url('feedback')}"
