"""Redis (Feast online store) runbooks: AUTH token rotation without downtime, failover test.

Rotation follows ElastiCache's two-phase protocol: ROTATE adds the new token while the old one
stays valid, clients move to the new token, then SET makes it the only one. Secrets Manager holds
the token (AWSPENDING -> AWSCURRENT), so every step is verifiable and the old value stays
recoverable as AWSPREVIOUS until the run completes.
"""

from __future__ import annotations

import json
import secrets
import string
from typing import Any

from contracts.cluster import FEAST_REDIS_SECRET_KEY, REDIS_CLIENTS, REDIS_TOKEN_SECRETS
from runbooks.context import RunContext
from runbooks.engine import Runbook, Step, StepFailed

TOKEN_ALPHABET = string.ascii_letters + string.digits
# The Kubernetes copies of the token, and the workloads restarted to pick it up (contracts/cluster.py).
K8S_SECRETS = tuple((s.namespace, s.name) for s in REDIS_TOKEN_SECRETS)
K8S_SECRET_KEY = FEAST_REDIS_SECRET_KEY
__all__ = ["AUTH_ROTATION", "K8S_SECRETS", "K8S_SECRET_KEY", "REDIS_CLIENTS"]


def new_token(length: int = 48) -> str:
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(length))


def _group_id(ctx: RunContext) -> str:
    return ctx.output("redisReplicationGroupId", ctx.stack.redis_group_id)


def _secret_id(ctx: RunContext) -> str:
    return ctx.output("redisSecretName", ctx.stack.redis_secret_name)


def _describe(ctx: RunContext) -> dict[str, Any]:
    client = ctx.aws("elasticache")
    try:
        return client.describe_replication_groups(ReplicationGroupId=_group_id(ctx))["ReplicationGroups"][0]
    except client.exceptions.ReplicationGroupNotFoundFault:
        raise StepFailed(f"replication group {_group_id(ctx)} does not exist in {ctx.stack.cfg.region}") from None


def _wait_available(ctx: RunContext) -> dict[str, Any]:
    ctx.wait_for(f"{_group_id(ctx)} to become available", lambda: _describe(ctx)["Status"] == "available",
                 timeout_s=1800, poll_s=15)
    return _describe(ctx)


def _secret(ctx: RunContext, stage: str = "AWSCURRENT") -> dict[str, Any]:
    sm = ctx.aws("secretsmanager")
    try:
        value = sm.get_secret_value(SecretId=_secret_id(ctx), VersionStage=stage)
    except sm.exceptions.ResourceNotFoundException:
        raise StepFailed(f"secret {_secret_id(ctx)} has no {stage} version") from None
    return {"version": value["VersionId"], **json.loads(value["SecretString"])}


def _require_group_ready(ctx: RunContext) -> None:
    group = _describe(ctx)
    _verify_check(ctx, {"group": group["ReplicationGroupId"], "status": group["Status"],
                        "transit_encryption": group.get("TransitEncryptionEnabled")})


# --- steps -----------------------------------------------------------------------------------------

def _check(ctx: RunContext) -> dict[str, Any]:
    group = _describe(ctx)
    current = _secret(ctx)
    ctx.state["old_version"] = current["version"]
    return {"group": group["ReplicationGroupId"], "status": group["Status"],
            "transit_encryption": group.get("TransitEncryptionEnabled"), "secret_version": current["version"]}


def _verify_check(ctx: RunContext, result: dict[str, Any]) -> None:
    if result["status"] != "available":
        raise StepFailed(f"{result['group']} is {result['status']!r}; rotate only when it is 'available'")
    if not result["transit_encryption"]:
        raise StepFailed(f"{result['group']} has no in-transit encryption; AUTH requires TLS")


def _stage(ctx: RunContext) -> dict[str, Any]:
    token = new_token()
    document = {**_secret(ctx), "authToken": token}
    document.pop("version")
    put = ctx.aws("secretsmanager").put_secret_value(
        SecretId=_secret_id(ctx), SecretString=json.dumps(document), VersionStages=["AWSPENDING"]
    )
    ctx.state["new_token"], ctx.state["new_version"] = token, put["VersionId"]
    return {"pending_version": put["VersionId"]}


def _verify_stage(ctx: RunContext, result: dict[str, Any]) -> None:
    if _secret(ctx, "AWSPENDING")["authToken"] != ctx.state["new_token"]:
        raise StepFailed("AWSPENDING does not hold the new token")


def _modify(strategy: str) -> Any:
    def action(ctx: RunContext) -> dict[str, Any]:
        if strategy == "SET" and not ctx.state.get("clients_updated"):
            raise StepFailed("clients still use the old token; it stays valid until they are moved")
        ctx.aws("elasticache").modify_replication_group(
            ReplicationGroupId=_group_id(ctx), AuthToken=ctx.state["new_token"],
            AuthTokenUpdateStrategy=strategy, ApplyImmediately=True,
        )
        return {"strategy": strategy, "status": _wait_available(ctx)["Status"]}

    return action


def _verify_available(ctx: RunContext, result: dict[str, Any]) -> None:
    if result["status"] != "available":
        raise StepFailed(f"replication group ended {result['status']!r}")


def _promote(ctx: RunContext) -> dict[str, Any]:
    ctx.aws("secretsmanager").update_secret_version_stage(
        SecretId=_secret_id(ctx), VersionStage="AWSCURRENT",
        MoveToVersionId=ctx.state["new_version"], RemoveFromVersionId=ctx.state["old_version"],
    )
    return {"current_version": ctx.state["new_version"]}


def _verify_promote(ctx: RunContext, result: dict[str, Any]) -> None:
    current = _secret(ctx)
    if current["version"] != ctx.state["new_version"] or current["authToken"] != ctx.state["new_token"]:
        raise StepFailed("AWSCURRENT is not the new token")


def _verify_clients(ctx: RunContext, result: dict[str, Any]) -> None:
    kube = ctx.kube
    if kube is None:
        return
    ctx.wait_for("the clients' rollouts", lambda: all(kube.ready(*c) for c in REDIS_CLIENTS), timeout_s=600,
                 poll_s=5)


def _client_restart_plan(ctx: RunContext) -> list[str]:
    if ctx.kube is None:
        return ["no Kubernetes access: pass --kube cluster, or move the clients yourself and confirm with "
                "--param clients_updated=yes (otherwise the run stops here, both tokens still valid)"]
    return [*(f"kubernetes: patch secret {'/'.join(s)} key {K8S_SECRET_KEY}" for s in K8S_SECRETS), *(
        f"kubernetes: rollout restart {kind} {ns}/{n}" for kind, ns, n in REDIS_CLIENTS)]


def _move_clients(ctx: RunContext) -> dict[str, Any]:
    if ctx.kube is None:
        if ctx.param("clients_updated", "no") != "yes":
            raise StepFailed("no Kubernetes access: pass --kube cluster, or update the clients yourself and "
                             "confirm with --param clients_updated=yes")
        ctx.state["clients_updated"] = True
        return {"restarted": "by operator"}
    ctx.state["clients_updated"] = True
    for secret in K8S_SECRETS:
        ctx.kube.patch_secret(*secret, {K8S_SECRET_KEY: ctx.state["new_token"]})
    for kind, namespace, name in REDIS_CLIENTS:
        ctx.kube.restart(kind, namespace, name)
    return {"restarted": [f"{kind}/{ns}/{n}" for kind, ns, n in REDIS_CLIENTS]}


AUTH_ROTATION = Runbook(
    name="redis-auth-rotation",
    title="Rotate the Redis AUTH token without downtime",
    envs=("dev", "staging", "prod"),
    steps=[
        Step("check the replication group and the stored token", _group_id,
             precondition=lambda ctx: None, plan=lambda ctx: [], action=_check, verify=_verify_check,
             rollback="nothing changed", read_only=True),
        Step("stage a new token in Secrets Manager (AWSPENDING)", _secret_id, precondition=_require_group_ready,
             plan=lambda ctx: [f"secretsmanager:PutSecretValue {_secret_id(ctx)} stages=[AWSPENDING] "
                               "(new 48-character token)"],
             action=_stage, verify=_verify_stage,
             rollback="nothing uses AWSPENDING yet; it is replaced by the next run"),
        Step("add the new token on Redis (ROTATE: old and new both valid)", _group_id,
             precondition=_require_group_ready,
             plan=lambda ctx: [f"elasticache:ModifyReplicationGroup {_group_id(ctx)} AuthToken=<new> "
                               "AuthTokenUpdateStrategy=ROTATE ApplyImmediately=true", "wait until 'available'"],
             action=_modify("ROTATE"), verify=_verify_available,
             rollback="the old token still works; re-run ModifyReplicationGroup with the old token and SET"),
        Step("make the new token current in Secrets Manager", _secret_id, precondition=lambda ctx: None,
             plan=lambda ctx: [f"secretsmanager:UpdateSecretVersionStage {_secret_id(ctx)} AWSCURRENT -> new version"],
             action=_promote, verify=_verify_promote,
             rollback="UpdateSecretVersionStage AWSCURRENT back to the AWSPREVIOUS version"),
        Step("move the clients to the new token", lambda ctx: ", ".join(f"{ns}/{n}" for _k, ns, n in REDIS_CLIENTS),
             precondition=lambda ctx: None,
             plan=_client_restart_plan, action=_move_clients, verify=_verify_clients,
             rollback="both tokens are valid: clients on either token keep working"),
        Step("revoke the old token (SET)", _group_id, precondition=_require_group_ready,
             plan=lambda ctx: [f"elasticache:ModifyReplicationGroup {_group_id(ctx)} AuthToken=<new> "
                               "AuthTokenUpdateStrategy=SET ApplyImmediately=true", "wait until 'available'"],
             action=_modify("SET"), verify=_verify_available,
             rollback="ROTATE with the AWSPREVIOUS token from Secrets Manager to re-admit it"),
    ],
)
