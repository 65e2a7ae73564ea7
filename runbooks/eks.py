"""EKS runbooks: version upgrade (control plane -> add-ons -> node groups) and node group scaling.

Upgrades go one minor version at a time, to a version the BOM supports, with the add-on versions
the BOM pins for it; EKS upgrade insights (deprecated APIs in use) must be clean first.
"""

from __future__ import annotations

from typing import Any

from runbooks.aws_calls import aws_call, aws_read, expect
from runbooks.context import RunContext
from runbooks.engine import Runbook, Step, StepFailed


def _cluster(ctx: RunContext) -> str:
    return ctx.output("clusterName", ctx.stack.cluster_name)


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def _target(ctx: RunContext) -> str:
    supported = ctx.stack.bom.kubernetes.supported
    if "to_version" in ctx.params:
        return ctx.params["to_version"]
    current = ctx.state.get("current_version")
    newer = [v for v in supported if current and _minor(v) == (_minor(current)[0], _minor(current)[1] + 1)]
    if not newer:
        raise StepFailed(f"no supported version one minor above {current}; BOM supports {supported}")
    return newer[0]


def _nodegroups(ctx: RunContext) -> list[str]:
    return ctx.aws("eks").list_nodegroups(clusterName=_cluster(ctx))["nodegroups"]


def _preflight(ctx: RunContext) -> dict[str, Any]:
    eks = ctx.aws("eks")
    cluster = eks.describe_cluster(name=_cluster(ctx))["cluster"]
    ctx.state["current_version"] = cluster["version"]
    target = _target(ctx)
    bom = ctx.stack.bom
    expect(target in bom.kubernetes.supported, f"{target} is not in the BOM's supported versions "
                                               f"{bom.kubernetes.supported}")
    expect(_minor(target) == (_minor(cluster["version"])[0], _minor(cluster["version"])[1] + 1),
           f"upgrade one minor version at a time: {cluster['version']} -> {target} skips versions")
    skewed = {ng: eks.describe_nodegroup(clusterName=_cluster(ctx), nodegroupName=ng)["nodegroup"].get("version")
              for ng in _nodegroups(ctx)}
    behind = {ng: v for ng, v in skewed.items() if v and v != cluster["version"]}
    expect(not behind, f"node groups must match the control plane before an upgrade: {behind}")
    insights = eks.list_insights(clusterName=_cluster(ctx),
                                 filter={"categories": ["UPGRADE_READINESS"], "kubernetesVersions": [target]})
    failing = [i["name"] for i in insights.get("insights", [])
               if i.get("insightStatus", {}).get("status") in ("ERROR", "WARNING")]
    expect(not failing, f"upgrade insights report blockers (deprecated APIs or add-ons): {failing}")
    ctx.state.update(target=target, nodegroups=sorted(skewed))
    return {"cluster": _cluster(ctx), "from": cluster["version"], "to": target,
            "addons": bom.addons_for(target), "nodegroups": sorted(skewed)}


def _wait_update(ctx: RunContext, update: dict[str, Any], nodegroup: str | None = None) -> None:
    eks = ctx.aws("eks")
    kwargs = {"name": _cluster(ctx), "updateId": update["id"], **({"nodegroupName": nodegroup} if nodegroup else {})}

    def done() -> bool:
        status = eks.describe_update(**kwargs)["update"]["status"]
        if status in ("Failed", "Cancelled"):
            raise StepFailed(f"update {update['id']} ended {status}")
        return status == "Successful"

    ctx.wait_for(f"update {update['id']}", done, timeout_s=3600, poll_s=30)


def _control_plane(ctx: RunContext) -> dict[str, Any]:
    update = ctx.aws("eks").update_cluster_version(name=_cluster(ctx), version=ctx.state["target"])["update"]
    _wait_update(ctx, update)
    return {"update": update["id"], "version": ctx.state["target"]}


def _addons(ctx: RunContext) -> dict[str, Any]:
    eks, done = ctx.aws("eks"), {}
    for addon, version in ctx.stack.bom.addons_for(ctx.state["target"]).items():
        update = eks.update_addon(clusterName=_cluster(ctx), addonName=addon, addonVersion=version,
                                  resolveConflicts="PRESERVE")["update"]
        _wait_update(ctx, update)
        done[addon] = version
    return {"addons": done}


def _nodes(ctx: RunContext) -> dict[str, Any]:
    eks = ctx.aws("eks")
    for ng in ctx.state["nodegroups"]:
        update = eks.update_nodegroup_version(clusterName=_cluster(ctx), nodegroupName=ng,
                                              version=ctx.state["target"])["update"]
        _wait_update(ctx, update, ng)
    return {"nodegroups": ctx.state["nodegroups"]}


def _verify_version(ctx: RunContext, result: dict[str, Any]) -> None:
    got = ctx.aws("eks").describe_cluster(name=_cluster(ctx))["cluster"]["version"]
    expect(got == ctx.state["target"], f"control plane reports {got}, expected {ctx.state['target']}")


def _verify_addons(ctx: RunContext, result: dict[str, Any]) -> None:
    eks = ctx.aws("eks")
    for addon, version in result["addons"].items():
        got = eks.describe_addon(clusterName=_cluster(ctx), addonName=addon)["addon"]["addonVersion"]
        expect(got == version, f"{addon} is {got}, expected {version}")


def _verify_nodes(ctx: RunContext, result: dict[str, Any]) -> None:
    eks = ctx.aws("eks")
    for ng in result["nodegroups"]:
        got = eks.describe_nodegroup(clusterName=_cluster(ctx), nodegroupName=ng)["nodegroup"]["version"]
        expect(got == ctx.state["target"], f"node group {ng} is {got}, expected {ctx.state['target']}")


EKS_UPGRADE = Runbook(
    name="eks-upgrade",
    title="Upgrade EKS one minor version: control plane, add-ons, node groups",
    envs=("dev", "staging", "prod"),
    steps=[
        aws_read("preflight: BOM support, version skew, upgrade insights", _cluster, _preflight),
        Step("upgrade the control plane", _cluster, precondition=lambda ctx: None,
             plan=lambda ctx: [f"eks:UpdateClusterVersion name={_cluster(ctx)} version={ctx.state['target']}",
                               "wait for the update to succeed (25-40 minutes)"],
             action=_control_plane, verify=_verify_version,
             rollback="EKS cannot downgrade a control plane: fix forward, or rebuild (disaster-recovery)"),
        Step("upgrade the managed add-ons to the BOM versions", _cluster, precondition=lambda ctx: None,
             plan=lambda ctx: [f"eks:UpdateAddon {a} addonVersion={v}"
                               for a, v in ctx.stack.bom.addons_for(ctx.state["target"]).items()],
             action=_addons, verify=_verify_addons,
             rollback="UpdateAddon back to the previous BOM version of the add-on"),
        Step("roll the node groups to the new version", _cluster, precondition=lambda ctx: None,
             plan=lambda ctx: [f"eks:UpdateNodegroupVersion {ng} version={ctx.state['target']}"
                               for ng in ctx.state["nodegroups"]],
             action=_nodes, verify=_verify_nodes,
             rollback="node groups on the previous version keep working (one minor of skew is supported)"),
    ],
)


def _group(ctx: RunContext) -> str:
    return ctx.stack.name(ctx.param("nodegroup", "inference"))


def _scaling(ctx: RunContext) -> dict[str, int]:
    group = ctx.stack.cfg.node_groups.get(ctx.param("nodegroup", "inference"))
    if group is None:
        raise StepFailed(f"stack {ctx.env} has no node group {ctx.param('nodegroup')!r}")
    desired = int(ctx.param("desired", str(group.desired_size)))
    expect(group.min_size <= desired <= group.max_size,
           f"desired {desired} is outside the configured bounds {group.min_size}..{group.max_size}")
    return {"minSize": group.min_size, "maxSize": group.max_size, "desiredSize": desired}


def _verify_scaling(ctx: RunContext, result: dict[str, Any]) -> None:
    got = ctx.aws("eks").describe_nodegroup(clusterName=_cluster(ctx), nodegroupName=_group(ctx))["nodegroup"]
    expect(got["scalingConfig"] == _scaling(ctx), f"scaling is {got['scalingConfig']}")


NODEGROUP_SCALING = Runbook(
    name="nodegroup-scaling",
    title="Scale or rotate a managed node group",
    envs=("dev", "staging", "prod"),
    steps=[
        aws_read("read the node group", _group, lambda ctx: {
            "scaling": ctx.aws("eks").describe_nodegroup(clusterName=_cluster(ctx), nodegroupName=_group(ctx))[
                "nodegroup"]["scalingConfig"]}),
        aws_call("set the desired size (within the configured bounds)", "eks", "UpdateNodegroupConfig",
                 lambda ctx: {"clusterName": _cluster(ctx), "nodegroupName": _group(ctx),
                              "scalingConfig": _scaling(ctx)},
                 verify=_verify_scaling, target=_group,
                 rollback="run again with --param desired=<the size printed in step 1>"),
    ],
)


def _rotate(ctx: RunContext) -> dict[str, Any]:
    eks = ctx.aws("eks")
    before = eks.describe_nodegroup(clusterName=_cluster(ctx), nodegroupName=_group(ctx))["nodegroup"]
    ctx.state["release_before"] = before.get("releaseVersion")
    # No version: EKS rolls every node to the latest AMI release of the current Kubernetes version,
    # respecting the group's maxUnavailable and the pods' disruption budgets.
    update = eks.update_nodegroup_version(clusterName=_cluster(ctx), nodegroupName=_group(ctx), force=False)["update"]
    _wait_update(ctx, update, _group(ctx))
    return {"update": update["id"], "release_before": ctx.state["release_before"]}


def _verify_rotation(ctx: RunContext, result: dict[str, Any]) -> None:
    after = ctx.aws("eks").describe_nodegroup(clusterName=_cluster(ctx), nodegroupName=_group(ctx))["nodegroup"]
    expect(after["status"] == "ACTIVE", f"node group is {after['status']}")
    expect(after.get("releaseVersion") != ctx.state["release_before"] or ctx.param("allow_same_release", "no") == "yes",
           f"nodes still on AMI release {after.get('releaseVersion')} (already the latest? pass "
           "--param allow_same_release=yes)")


NODEGROUP_ROTATION = Runbook(
    name="nodegroup-rotation",
    title="Rotate a node group's nodes to the latest AMI release",
    envs=("dev", "staging", "prod"),
    steps=[
        Step("replace every node, respecting PodDisruptionBudgets", _group, precondition=lambda ctx: None,
             plan=lambda ctx: [f"eks:UpdateNodegroupVersion clusterName={_cluster(ctx)} nodegroupName={_group(ctx)} "
                               "force=false (latest AMI release of the current version)"],
             action=_rotate, verify=_verify_rotation,
             rollback="UpdateNodegroupVersion with releaseVersion=<release printed before> rolls back the AMI"),
    ],
)
