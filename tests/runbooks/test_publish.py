"""Publishing registry versions to the Seldon slots: a real MLflow server (SQLite, proxied artifacts) with
registered versions that carry artifact files, and a real moto S3 server, both on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import boto3
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from contracts.governance import AuditLog
from contracts.model_slots import artifact_model_settings, explainer_model_settings
from ml.training.publish import MARKER, PublishError, publish, read_marker

BUCKET = "mlplat-test-models"


def register(client: MlflowClient, name: str, files: dict[str, str], workdir: Path) -> tuple[str, str]:
    """Log `files` as a run's artifact folder and register it as a new version of `name`."""
    run = client.create_run("0")
    folder = workdir / run.info.run_id
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    client.log_artifacts(run.info.run_id, str(folder), artifact_path="model")
    client.set_terminated(run.info.run_id)
    with contextlib.suppress(MlflowException):
        client.create_registered_model(name)
    version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    return str(version.version), run.info.run_id


def fresh(client: MlflowClient, name: str) -> None:
    """The server lives for the module: every test starts from no registered model `name`."""
    with contextlib.suppress(MlflowException):
        client.delete_registered_model(name)


@pytest.fixture
def s3(aws_env: str):
    client = boto3.client("s3", region_name="eu-west-1")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return client


def objects(s3, prefix: str) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def test_publish_holds_exactly_one_version_with_settings_and_marker(mlflow_url, s3, tmp_path):
    client = MlflowClient(tracking_uri=mlflow_url)
    fresh(client, "fraud")
    v1, run1 = register(client, "fraud", {"model.txt": "one", "sub/weights.bin": "w1", "only-in-v1.txt": "x"},
                        tmp_path)
    # v2's own model-settings.json must not win: the slot's runtime is the reference model's.
    v2, run2 = register(client, "fraud", {"model.txt": "two", "sub/weights.bin": "w2",
                                          "model-settings.json": '{"implementation": "evil.Runtime"}'}, tmp_path)
    s3.put_object(Bucket=BUCKET, Key="fraud/champion-old/keep.txt", Body=b"sibling prefix")
    s3.put_object(Bucket=BUCKET, Key="fraud/challenger/other.txt", Body=b"other slot")

    first = publish("fraud", v1, "champion", BUCKET, tracking_uri=mlflow_url, s3_client=s3, actor="tester")
    assert first.uri == f"s3://{BUCKET}/fraud/champion/"
    assert first.run_id == run1 and first.deleted == ()
    got = objects(s3, "fraud/champion/")
    # fraud has an explainer: the artifact again under explainer/, with the explainer's runtime.
    files = ("model.txt", "sub/weights.bin", "only-in-v1.txt", "model-settings.json")
    assert set(got) == {f"fraud/champion/{p}{k}" for k in files for p in ("", "explainer/")} | {
        f"fraud/champion/{MARKER}"}
    assert json.loads(got["fraud/champion/model-settings.json"]) == artifact_model_settings("fraud")
    assert json.loads(got["fraud/champion/explainer/model-settings.json"]) == explainer_model_settings("fraud") == {
        **artifact_model_settings("fraud"), "implementation": "ml.models.fraud.explainer.FraudExplainerRuntime"}
    assert got["fraud/champion/explainer/sub/weights.bin"] == b"w1"
    marker = json.loads(got[f"fraud/champion/{MARKER}"])
    assert (marker["model"], marker["version"], marker["run_id"], marker["actor"]) == ("fraud", v1, run1, "tester")
    assert marker["files"] == 8 and marker["published_at"]

    second = publish("fraud", int(v2), "champion", BUCKET, tracking_uri=mlflow_url, s3_client=s3)
    assert second.deleted == ("explainer/only-in-v1.txt", "only-in-v1.txt") and second.run_id == run2
    got = objects(s3, "fraud/champion/")
    assert set(got) == {f"fraud/champion/{p}{k}" for k in ("model.txt", "sub/weights.bin", "model-settings.json")
                        for p in ("", "explainer/")} | {f"fraud/champion/{MARKER}"}
    assert got["fraud/champion/model.txt"] == b"two" and got["fraud/champion/sub/weights.bin"] == b"w2"
    assert got["fraud/champion/explainer/model.txt"] == b"two"
    assert json.loads(got["fraud/champion/model-settings.json"]) == artifact_model_settings("fraud")
    assert read_marker(BUCKET, "fraud", "champion", s3_client=s3)["version"] == v2
    # Neither the other slot nor a prefix that merely starts alike was touched.
    assert objects(s3, "fraud/challenger/") == {"fraud/challenger/other.txt": b"other slot"}
    assert objects(s3, "fraud/champion-old/") == {"fraud/champion-old/keep.txt": b"sibling prefix"}
    assert read_marker(BUCKET, "fraud", "challenger", s3_client=s3) is None


def test_publish_refuses_bad_input_and_writes_nothing(mlflow_url, s3, tmp_path):
    client = MlflowClient(tracking_uri=mlflow_url)
    fresh(client, "fraud")
    fresh(client, "sentiment")
    v1, _ = register(client, "fraud", {"model.txt": "one"}, tmp_path)
    kw = {"tracking_uri": mlflow_url, "s3_client": s3}
    cases = [
        (("fraud", 9, "champion", BUCKET), f"fraud has no version 9; versions: [{v1}]"),
        (("sentiment", 1, "champion", BUCKET), "registered model 'sentiment' not found"),
        (("fraud", v1, "champion", "no-such-bucket"), "models bucket 'no-such-bucket' does not exist"),
        (("fraud", v1, "canary", BUCKET), "unknown model slot 'canary'"),
        (("my-model", v1, "champion", BUCKET), "unknown reference model 'my-model'"),
        (("fraud", "latest", "champion", BUCKET), "version must be a registry version number"),
        (("fraud", v1, "champion", "s3://x"), "bare bucket name"),
    ]
    for args, message in cases:
        with pytest.raises(PublishError, match=message.replace("[", r"\[").replace("]", r"\]")):
            publish(*args, **kw)
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


def test_republishing_the_same_version_is_stable(mlflow_url, s3, tmp_path):
    client = MlflowClient(tracking_uri=mlflow_url)
    fresh(client, "recommendation")
    v1, _ = register(client, "recommendation", {"index.bin": "abc", "items.json": "[]"}, tmp_path)
    publish("recommendation", v1, "challenger", BUCKET, tracking_uri=mlflow_url, s3_client=s3)
    again = publish("recommendation", v1, "challenger", BUCKET, tracking_uri=mlflow_url, s3_client=s3)
    assert again.deleted == () and sorted(again.uploaded) == ["index.bin", "items.json", "model-settings.json"]
    assert len(objects(s3, "recommendation/challenger/")) == 4


def test_command_line_prints_the_result_or_the_error(mlflow_url, s3, tmp_path, capsys):
    from ml.training.publish import main

    client = MlflowClient(tracking_uri=mlflow_url)
    fresh(client, "sentiment")
    v1, run1 = register(client, "sentiment", {"vocab.json": "{}"}, tmp_path)
    capsys.readouterr()  # MLflow's own run messages
    # By hand the strict policy applies unless a stack file or --promotion says otherwise.
    assert main(["sentiment", v1, "champion", "--bucket", BUCKET, "--tracking-uri", mlflow_url]) == 1
    err = capsys.readouterr().err
    assert "lacks passing quality gates (no gate result recorded); a recorded approval" in err
    assert main(["sentiment", v1, "champion", "--bucket", BUCKET, "--tracking-uri", mlflow_url,
                 "--stack-file", "stacks/Pulumi.dev.yaml"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["uri"] == f"s3://{BUCKET}/sentiment/champion/" and printed["run_id"] == run1
    assert printed["files"] == 2 and printed["seconds"] >= 0
    assert main(["sentiment", v1, "canary", "--bucket", BUCKET, "--tracking-uri", mlflow_url]) == 1
    assert "unknown model slot 'canary'" in capsys.readouterr().err


def test_a_stack_requiring_approval_refuses_until_the_version_is_approved(mlflow_url, s3, tmp_path):
    """governance.promotion = gatesAndApproval (staging, prod): gates alone are not enough."""
    from ml.training.approval import approve

    client = MlflowClient(tracking_uri=mlflow_url)
    fresh(client, "fraud")
    version, _ = register(client, "fraud", {"model.txt": "gated"}, tmp_path)
    with pytest.raises(PublishError, match=r"lacks passing quality gates \(no gate result recorded\)"):
        publish("fraud", version, "champion", BUCKET, tracking_uri=mlflow_url, s3_client=s3,
                promotion="gatesAndApproval")
    client.set_model_version_tag("fraud", version, "gate.passed", "true")
    with pytest.raises(PublishError) as refused:
        publish("fraud", version, "champion", BUCKET, tracking_uri=mlflow_url, s3_client=s3,
                promotion="gatesAndApproval")
    assert str(refused.value) == (
        f"models:/fraud/{version} may not serve from the champion slot of a stack whose promotion policy is "
        "gatesAndApproval: it lacks a recorded approval (`mlplat model approve NAME VERSION --by WHO --reason ...`)")
    assert read_marker(BUCKET, "fraud", "champion", s3_client=s3) is None
    approve(client, "fraud", version, "alice", "card reviewed", audit=AuditLog(tmp_path / "audit.jsonl"), env="prod")
    assert publish("fraud", version, "champion", BUCKET, tracking_uri=mlflow_url, s3_client=s3,
                   promotion="gatesAndApproval").version == version
