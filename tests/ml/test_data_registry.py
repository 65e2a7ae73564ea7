"""The data registry with real git and DVC (.venv-dvc), a local remote and an S3 remote on moto's server,
and the training path end to end against a real MLflow server: `mlplat model train --data` records a
version that `mlplat data versions` lists, MLflow holds it as the run's dataset input, and retraining with
`--data-version` reproduces the metrics. Integration: every test runs dvc/git (and mlplat) processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml
from mlflow.tracking import MlflowClient

from ml.datasets.content import ContentError, content_uri, describe, materialize
from ml.datasets.registry import DataRegistry, RegistryError
from ml.models.fraud import data as fraud_data

pytestmark = [pytest.mark.integration, pytest.mark.ml]
REPO = Path(__file__).resolve().parents[2]


def mlplat(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    full.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "mlplat", *args], cwd=REPO, env=full, text=True,
                          capture_output=True, timeout=600, check=False)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_versions_push_pull_and_no_data_loss_with_a_local_remote(tmp_path):
    registry = DataRegistry.init(tmp_path / "registry", {"local": str(tmp_path / "remote")}, "local")
    data = tmp_path / "fraud"
    fraud_data.generate_sample(data, rows=300, seed=1)
    first, new = registry.add(data, "fraud")
    assert new
    # Our content hash is DVC's: the pointer `dvc add` wrote names it.
    pointer = yaml.safe_load((registry.root / "datasets" / "fraud.dvc").read_text())
    assert pointer["outs"][0]["md5"] == f"{describe(data, 'fraud').md5}.dir" == f"{first.md5}.dir"
    assert registry.add(data, "fraud") == (first, False)  # same content: no new version

    fraud_data.generate_sample(data, rows=300, seed=2)
    second, new = registry.add(data, "fraud", "second sample")
    assert new and second.md5 != first.md5
    assert [v.md5 for v in registry.versions("fraud")] == [second.md5, first.md5]

    assert registry.status()["remote_missing"]  # nothing pushed yet
    registry.push()
    assert not registry.status()["remote_missing"]
    # Objects where DVC put them are where a training pod reads them.
    assert (tmp_path / "remote" / "files" / "md5" / first.md5[:2] / f"{first.md5[2:]}.dir").is_file()
    old = tmp_path / "old"
    materialize(str(tmp_path / "remote"), first.md5, old)
    assert describe(old, "fraud").md5 == first.md5

    # A working copy changed by hand is never overwritten.
    work = registry.root / "datasets" / "fraud"
    (work / fraud_data.FILE).write_text("edited by hand\n")
    with pytest.raises(RegistryError, match=r"differs from fraud@.*changed by hand"):
        registry.add(old, "fraud")
    with pytest.raises(RegistryError, match="has changes no version holds"):
        registry.pull(first)
    shutil.rmtree(work)
    registry.pull(first)  # the old version back into the working copy, from the remote
    assert describe(work, "fraud").md5 == first.md5
    assert registry.versions("fraud")[0].md5 == second.md5  # pulling changed no history

    assert registry.resolve("fraud").md5 == second.md5
    assert registry.resolve(f"fraud@{first.rev[:8]}").md5 == first.md5
    assert registry.resolve(first.md5[:10]).md5 == first.md5
    with pytest.raises(RegistryError, match="unknown dataset version 'fraud@nope'"):
        registry.resolve("fraud@nope")
    with pytest.raises(RegistryError, match="has no dataset 'other'"):
        registry.resolve("other")


def test_cli_lists_versions_and_names_bad_input(tmp_path):
    env = {"MLPLAT_DATA_REGISTRY": str(tmp_path / "reg")}
    data = tmp_path / "sample"
    fraud_data.generate_sample(data, rows=200, seed=3)
    added = mlplat("data", "add", str(data), "--push", env=env)
    assert added.returncode == 0, added.stderr[-2000:]
    version = json.loads(added.stdout)["version"]
    assert version["name"] == "sample" and version["location"] == str(tmp_path / "dvc-remote")

    listed = mlplat("data", "versions", env=env)
    assert listed.returncode == 0 and version["ref"] in listed.stdout and version["md5"] in listed.stdout
    status = mlplat("data", "status", env=env)
    assert status.returncode == 0, status.stdout  # pushed, nothing changed
    pulled = mlplat("data", "pull", version["ref"], "--out", str(tmp_path / "out"), env=env)
    assert pulled.returncode == 0 and _tree(tmp_path / "out") == _tree(data)

    for args, message in [
        (("data", "add", str(tmp_path / "missing")), f"{tmp_path / 'missing'} does not exist"),
        (("data", "versions", "--registry", str(tmp_path)), f"{tmp_path} is not a data registry"),
        (("data", "pull", "sample@0000000", "--out", str(tmp_path / "x")), "unknown dataset version 'sample@0000000'"),
        (("data", "pull", version["ref"], "--out", str(tmp_path / "out")), "is not empty"),
    ]:
        out = mlplat(*args, env=env)
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr[-1000:])
        assert "Traceback" not in out.stderr


def test_s3_remote_on_moto(tmp_path, moto_endpoint, monkeypatch):
    """`dvc push` of .venv-dvc (its S3 plugin) to a bucket on moto's server, then the version read back with
    GetObject alone, as a training pod reads it."""
    import requests

    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL": moto_endpoint}.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="mlplatform-dev-datasets", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    registry = DataRegistry.init(tmp_path / "registry", {"local": str(tmp_path / "remote")}, "local")
    registry.set_remote("s3", "s3://mlplatform-dev-datasets/dvc", endpoint_url=moto_endpoint)
    data = tmp_path / "fraud"
    fraud_data.generate_sample(data, rows=200, seed=4)
    version, _ = registry.add(data, "fraud")
    registry.push("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="mlplatform-dev-datasets")["Contents"]}
    assert f"dvc/files/md5/{version.md5[:2]}/{version.md5[2:]}.dir" in keys
    assert not registry.status("s3")["remote_missing"]

    on_s3 = registry.resolve("fraud", remote="s3")
    assert on_s3.uri == content_uri("s3://mlplatform-dev-datasets/dvc", version.md5)
    materialize(on_s3.location, on_s3.md5, tmp_path / "out")
    assert _tree(tmp_path / "out") == _tree(data)
    with pytest.raises(ContentError, match="was the version pushed"):
        materialize("s3://mlplatform-dev-datasets/other", version.md5, tmp_path / "none")


def test_training_records_the_version_and_retrains_on_it_exactly(mlflow_server, tmp_path):
    """Done when: `mlplat model train fraud --data DIR` records a version `mlplat data versions` lists, MLflow
    has it as the run's dataset input and the card names it; `--data-version` gives the same metrics."""
    env = {"MLPLAT_DATA_REGISTRY": str(tmp_path / "reg"), "MLPLAT_LOCAL_DIR": str(tmp_path / "state")}
    data = tmp_path / "datasets"
    first = mlplat("model", "train", "fraud", "--data", str(data), "--sample", "--out", str(tmp_path / "a"),
                   "--tracking-uri", mlflow_server.url, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    doc = json.loads(first.stdout)
    version = doc["dataset"]
    listed = json.loads(mlplat("data", "versions", "--json", env=env).stdout)
    assert [(v["ref"], v["md5"]) for v in listed] == [(version["ref"], version["md5"])]

    client = MlflowClient(tracking_uri=mlflow_server.url)
    run = client.get_run(doc["registry"]["run_id"])
    (logged,) = run.inputs.dataset_inputs
    assert (logged.dataset.name, logged.dataset.digest) == ("datasets", version["md5"])
    assert json.loads(logged.dataset.source) == {"uri": version["uri"]}
    assert {t.key: t.value for t in logged.tags}["mlflow.data.context"] == "training"
    assert run.data.tags["mlplat.data.version"] == version["ref"]
    card = json.loads(mlplat("model", "card", "fraud", "--version", doc["registry"]["version"], "--json",
                             "--tracking-uri", mlflow_server.url, env=env).stdout)
    assert card["data"]["version"]["md5"] == version["md5"] and card["data"]["version"]["uri"] == version["uri"]

    shutil.rmtree(data)  # the retrain reads the registry's remote, not the directory
    again = mlplat("model", "train", "fraud", "--data-version", version["ref"], "--out", str(tmp_path / "b"),
                   "--tracking-uri", mlflow_server.url, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    redo = json.loads(again.stdout)
    assert redo["dataset"]["md5"] == version["md5"] and redo["metrics"] == doc["metrics"]
    rerun = client.get_run(redo["registry"]["run_id"])
    assert rerun.inputs.dataset_inputs[0].dataset.digest == version["md5"]

    unknown = mlplat("model", "train", "fraud", "--data-version", "datasets@deadbeef", "--no-register", env=env)
    assert unknown.returncode == 2 and "unknown dataset version 'datasets@deadbeef'" in unknown.stderr
