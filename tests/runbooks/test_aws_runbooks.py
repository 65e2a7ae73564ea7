"""AWS runbook steps against a real moto server (ThreadedMotoServer on 127.0.0.1).

moto implements ElastiCache ModifyReplicationGroup but ignores AuthToken, so the Redis checks
verify the calls' effects that moto does keep (the Secrets Manager stages, the group status) and
the exact request parameters through boto3's event hooks.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from runbooks.context import RunContext
from runbooks.engine import AuditLog, run
from runbooks.kube import InMemoryKubeOps
from runbooks.redis import AUTH_ROTATION, K8S_SECRET_KEY, K8S_SECRETS, REDIS_CLIENTS
from runbooks.s3 import OBJECT_RECOVERY
from stacks.config import load_stack_file, stack_file
from stacks.context import StackContext

ROOT = Path(__file__).resolve().parents[2]
STACK = StackContext(load_stack_file(stack_file("dev")))


def _seed_redis(transit: bool = True) -> str:
    ec = boto3.client("elasticache", region_name="eu-west-1")
    ec.create_replication_group(
        ReplicationGroupId=STACK.redis_group_id, ReplicationGroupDescription="feast online store",
        Engine="redis", CacheNodeType="cache.t4g.small", NumCacheClusters=1,
        TransitEncryptionEnabled=transit, AuthToken="old-token-0123456789abcdef",
    )
    sm = boto3.client("secretsmanager", region_name="eu-west-1")
    sm.create_secret(Name=STACK.redis_secret_name, SecretString=json.dumps(
        {"host": "master.example", "port": 6379, "tls": True, "authToken": "old-token-0123456789abcdef"}))
    return STACK.redis_group_id


def _current_token() -> str:
    # The stage is named explicitly: moto's unstaged GetSecretValue does not follow UpdateSecretVersionStage.
    sm = boto3.client("secretsmanager", region_name="eu-west-1")
    value = sm.get_secret_value(SecretId=STACK.redis_secret_name, VersionStage="AWSCURRENT")
    return json.loads(value["SecretString"])["authToken"]


def _record_modify_calls(monkeypatch) -> list[dict]:
    calls: list[dict] = []
    real_client = boto3.session.Session.client

    def client(self, service, *a, **kw):
        c = real_client(self, service, *a, **kw)
        if service == "elasticache":
            c.meta.events.register("provide-client-params.elasticache.ModifyReplicationGroup",
                                   lambda params, **_: calls.append(dict(params)))
        return c

    monkeypatch.setattr(boto3.session.Session, "client", client)
    return calls


def test_redis_auth_rotation_dry_run_changes_nothing(aws_env, tmp_path, monkeypatch):
    _seed_redis()
    calls = _record_modify_calls(monkeypatch)
    out, audit = io.StringIO(), tmp_path / "audit.jsonl"
    report = run(AUTH_ROTATION, RunContext(env="dev"), execute=False, audit=AuditLog(audit), out=out)
    assert report.ok
    text = out.getvalue()
    assert "DRY RUN" in text
    group = STACK.redis_group_id
    assert f"elasticache:ModifyReplicationGroup {group} AuthToken=<new> AuthTokenUpdateStrategy=ROTATE" in text
    assert "AuthTokenUpdateStrategy=SET" in text
    assert calls == []
    assert _current_token() == "old-token-0123456789abcdef"
    assert not audit.exists()


def test_redis_auth_rotation_executes_rotate_then_set(aws_env, tmp_path, monkeypatch):
    _seed_redis()
    calls = _record_modify_calls(monkeypatch)
    kube = InMemoryKubeOps(workloads=set(REDIS_CLIENTS))
    audit = tmp_path / "audit.jsonl"
    out = io.StringIO()
    report = run(AUTH_ROTATION, RunContext(env="dev", kube=kube), execute=True, audit=AuditLog(audit), out=out)
    assert report.ok, out.getvalue()
    new = _current_token()
    assert new != "old-token-0123456789abcdef" and len(new) == 48
    assert [(c["AuthTokenUpdateStrategy"], c["AuthToken"]) for c in calls] == [("ROTATE", new), ("SET", new)]
    assert len(K8S_SECRETS) == 2  # Feast's copy and the model runtimes'
    for secret in K8S_SECRETS:
        assert kube.secrets[secret][K8S_SECRET_KEY] == new
    assert [c[1][:3] for c in kube.calls if c[0] == "restart"] == list(REDIS_CLIENTS)
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [e["result"] for e in entries] == ["ok"] * 5
    assert {e["actor"] for e in entries} == {"test-operator"}
    assert all(e["env"] == "dev" and e["runbook"] == "redis-auth-rotation" and e["time"] for e in entries)
    assert new not in audit.read_text()  # the token never reaches the audit log


def test_redis_auth_rotation_stops_before_revoking_without_clients(aws_env, tmp_path, monkeypatch):
    _seed_redis()
    calls = _record_modify_calls(monkeypatch)
    out = io.StringIO()
    report = run(AUTH_ROTATION, RunContext(env="dev"), execute=True, audit=AuditLog(tmp_path / "a.jsonl"), out=out)
    assert not report.ok
    assert "no Kubernetes access" in out.getvalue()
    assert [c["AuthTokenUpdateStrategy"] for c in calls] == ["ROTATE"]  # old token still valid


def test_redis_auth_rotation_refuses_without_tls(aws_env, tmp_path):
    _seed_redis(transit=False)
    out = io.StringIO()
    report = run(AUTH_ROTATION, RunContext(env="dev"), execute=True, audit=AuditLog(tmp_path / "a.jsonl"), out=out)
    assert not report.ok and "no in-transit encryption" in out.getvalue()
    assert _current_token() == "old-token-0123456789abcdef"


def _cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "mlplat", "runbook", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, **(env_extra or {})})


def test_cli_dry_run_then_execute_against_moto(aws_env, tmp_path):
    _seed_redis()
    audit = str(tmp_path / "audit.jsonl")
    dry = _cli("run", "redis-auth-rotation", "--env", "dev", "--audit-log", audit)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would run against" in dry.stdout and _current_token() == "old-token-0123456789abcdef"
    done = _cli("run", "redis-auth-rotation", "--env", "dev", "--execute", "--param", "clients_updated=yes",
                "--audit-log", audit)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "result: ok" in done.stdout and _current_token() != "old-token-0123456789abcdef"


def _bucket() -> str:
    account = boto3.client("sts", region_name="eu-west-1").get_caller_identity()["Account"]
    name = STACK.bucket_name("models", account)
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.mark.parametrize("damage", ["deleted", "overwritten"])
def test_s3_object_recovery(aws_env, tmp_path, damage):
    bucket, key = _bucket(), "fraud/3/model.onnx"
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.put_object(Bucket=bucket, Key=key, Body=b"good model")
    if damage == "deleted":
        s3.delete_object(Bucket=bucket, Key=key)
    else:
        s3.put_object(Bucket=bucket, Key=key, Body=b"corrupt")
    ctx_args = {"env": "dev", "params": {"bucket": "models", "key": key}}
    out = io.StringIO()
    assert run(OBJECT_RECOVERY, RunContext(**ctx_args), execute=False, audit=AuditLog(tmp_path / "a"), out=out).ok
    assert "s3:CopyObject" in out.getvalue()
    with pytest.raises(s3.exceptions.ClientError) if damage == "deleted" else _nothing():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"corrupt"
    out = io.StringIO()
    assert run(OBJECT_RECOVERY, RunContext(**ctx_args), execute=True, audit=AuditLog(tmp_path / "a"), out=out).ok
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"good model"


def test_s3_object_recovery_names_missing_key(aws_env, tmp_path):
    _bucket()
    out = io.StringIO()
    report = run(OBJECT_RECOVERY, RunContext(env="dev", params={"key": "nope"}), execute=True,
                 audit=AuditLog(tmp_path / "a"), out=out)
    assert not report.ok and "has no versions: nothing to recover" in out.getvalue()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
