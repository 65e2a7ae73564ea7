"""Scaling of the serving layer as declared under mocks, against what the pinned Seldon Core 2.10.2
actually does (docs/WORKLOADS.md "Scaling the serving layer", with the upstream files):

- a Model's replica count is fixed by config (`replicas` = `minReplicas`); native model autoscaling
  is switched off in 2.10.2's scheduler and agent whatever the flags say, so no `maxReplicas` is set;
- the `mlserver` Server is sized to host every model's replicas (one model replica per server
  replica) and bounded by `minReplicas`..`maxReplicas`: Seldon's server autoscaling (on by default)
  adds server replicas when models ask for more replicas than there are servers;
- no HorizontalPodAutoscaler: an HPA on a Model needs a custom-metrics adapter the platform does not
  install (the Model's scale selector `server=<name>` matches no pod, so CPU cannot drive it), and a
  CPU HPA on the Server would add pods that host no model replica.
"""

from __future__ import annotations

import pytest

from contracts import deploy_tree
from stacks.config import load_stack_file, stack_file
from stacks.delivery import model_releases

MODEL = "kubernetes:mlops.seldon.io/v1alpha1:Model"
RELEASE = "kubernetes:helm.sh/v3:Release"


def _models(env):
    """The Models the cluster serves: Argo CD applies them from the deploy tree (contracts/deploy_tree.py)."""
    cfg = load_stack_file(stack_file(env))
    tree = deploy_tree.objects(env, "models-bucket", model_releases(cfg))
    return {o["metadata"]["name"]: o["spec"] for o in tree.values() if o["kind"] == "Model"}


def _server(s):
    releases = {r.name: r.inputs for r in s.of_type(RELEASE)}
    servers = [v for v in releases.values() if v.get("chart") == "seldon-core-v2-servers"]
    assert len(servers) == 1
    return servers[0]["values"]["mlserver"]


def test_model_replicas_are_fixed_by_config_and_carry_no_inert_bound(synth, env):
    cfg = load_stack_file(stack_file(env))
    assert synth(env).of_type(MODEL) == []  # Argo CD's, not the plan's
    models = _models(env)
    assert models
    for name, spec in models.items():
        model = name.rsplit("-", 1)[0]
        wanted = getattr(cfg.models, model).min_replicas
        assert spec["replicas"] == spec["minReplicas"] == wanted, name
        assert "maxReplicas" not in spec, f"{name}: maxReplicas bounds nothing in Seldon 2.10.2"


def test_server_hosts_every_model_replica_within_its_bounds(synth, env):
    cfg = load_stack_file(stack_file(env))
    s = synth(env)
    server = _server(s)
    needed = max(spec["replicas"] for spec in _models(env).values())
    assert server["minReplicas"] <= server["replicas"] <= server["maxReplicas"]
    assert server["replicas"] >= needed  # one replica of each model per server replica
    enabled = [getattr(cfg.models, m) for m in cfg.models.names() if getattr(cfg.models, m).enabled]
    assert server["maxReplicas"] == max(m.max_replicas for m in enabled)


@pytest.mark.parametrize("stack", ["prod"])
def test_no_autoscaler_that_cannot_act(synth, stack):
    s = synth(stack)
    hpas = [r for r in s.resources if r.type.startswith("kubernetes:autoscaling/")]
    assert hpas == [], "an HPA on Model/Server needs a metrics adapter (docs/WORKLOADS.md)"
    setup = next(r.inputs["values"] for r in s.of_type(RELEASE) if r.inputs.get("chart") == "seldon-core-v2-setup")
    autoscaling = setup.get("autoscaling", {})
    # Server autoscaling is the chart default (true); we never switch it off.
    assert autoscaling.get("autoscalingServerEnabled", True) is True
