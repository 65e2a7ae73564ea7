"""Progressive rollouts on the cluster (`workloads.rollouts`): what a rollout Job needs, made once by the stack.

The Job itself is made on demand by `mlplat rollout start NAME VERSION --cluster` (contracts/rollout_job.py,
which also describes every object below): the settings ConfigMap it reads, a state ConfigMap per enabled model
next to its Experiment, the Role that may get and patch exactly those Experiments and ConfigMaps (bound to the
`training` service account, which already publishes versions to the Seldon slots and writes the deploy tree for
the automatic rollback), and the rollout pods' egress to Prometheus.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from contracts import rollout_job as rj
from contracts.cluster import SELDON_NAMESPACE
from infra.workloads.governance import ops_image
from infra.workloads.kube import labels
from stacks.context import StackContext
from stacks.delivery import deploy_parameter


def rollout_models(ctx: StackContext) -> list[str]:
    return [n for n in ctx.cfg.models.names() if ctx.cfg.models[n].enabled]


@dataclass(frozen=True, kw_only=True)
class RolloutsArgs:
    """Inputs of `Rollouts`."""

    ctx: StackContext
    image: pulumi.Input[str]
    """The model-server image; the Job runs its ops variant (ml/ and git, as the rollback receiver)."""
    bucket: pulumi.Input[str]
    """The models bucket (the champion slot a promotion publishes to)."""
    tracking_uri: str
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    """The governance namespace (and its service account) and the Seldon namespace."""


class Rollouts(pulumi.ComponentResource):
    """Settings ConfigMap, state ConfigMaps, Role + RoleBinding in the Seldon namespace, Prometheus egress."""

    def __init__(self, name: str, args: RolloutsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:Rollouts", name, None, opts)
        ctx, cfg = args.ctx, args.ctx.cfg.workloads.rollouts
        models = rollout_models(ctx)
        child = pulumi.ResourceOptions(parent=self, depends_on=args.depends_on)
        meta = {"labels": labels("delivery", rj.CONTROLLER)}
        gitops = ctx.cfg.workloads.gitops
        data = pulumi.Output.all(pulumi.Output.from_input(args.image), pulumi.Output.from_input(args.bucket)).apply(
            lambda ib: rj.settings_data(ops_image(ib[0]), deploy_parameter(ctx.cfg, ib[1]), cfg.prometheus_url,
                                        args.tracking_uri, ctx.cfg.governance.promotion, cfg.deadline_hours * 3600,
                                        gitops.credentials_secret or "", ctx.cfg.region))
        k8s.core.v1.ConfigMap(f"{name}-settings", metadata={"name": rj.SETTINGS, "namespace": rj.NAMESPACE, **meta},
                              data=data, opts=child)
        for model in models:
            # The rollout owns the data (its state); the stack only makes sure the object exists.
            k8s.core.v1.ConfigMap(
                f"{name}-state-{model}",
                metadata={"name": rj.state_name(model), "namespace": SELDON_NAMESPACE,
                          "labels": {**labels("delivery", rj.CONTROLLER), "mlplatform.io/model": model}},
                data={}, opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on,
                                                     ignore_changes=["data"]))
        role = k8s.rbac.v1.Role(
            f"{name}-role", metadata={"name": rj.CONTROLLER, "namespace": SELDON_NAMESPACE, **meta},
            rules=rj.role_rules(models), opts=child)
        k8s.rbac.v1.RoleBinding(
            f"{name}-binding", metadata={"name": rj.CONTROLLER, "namespace": SELDON_NAMESPACE, **meta},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": rj.CONTROLLER},
            subjects=[{"kind": "ServiceAccount", "namespace": rj.NAMESPACE, "name": rj.SERVICE_ACCOUNT}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*args.depends_on, role]))
        k8s.networking.v1.NetworkPolicy(
            f"{name}-prometheus-egress",
            metadata={"name": f"{rj.CONTROLLER}-prometheus", "namespace": rj.NAMESPACE, **meta},
            spec=rj.prometheus_egress_spec(), opts=child)
        self.register_outputs({})
