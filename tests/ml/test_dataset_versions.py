"""Dataset versions by content address, without DVC or git (unit tests: no process started).

A remote is laid out here the way DVC 3 lays one out (objects at files/md5/<2>/<30>, a directory's manifest
as `<md5>.dir`); tests/ml/test_data_registry.py checks that layout against real `dvc add` / `dvc push`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from ml.cli.datasets import table
from ml.datasets.content import (
    ContentError,
    DatasetVersion,
    content_uri,
    describe,
    manifest,
    manifest_bytes,
    materialize,
    object_key,
    parse_content_uri,
    read_manifest,
)
from ml.datasets.registry import DataRegistry, RegistryError, check_name
from ml.datasets.session import default_name
from ml.pipelines.steps import dataset_of
from ml.training.card import dataset_tags, render_markdown


def _dataset(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.csv").write_text("x,y\n1,2\n")
    (root / "sub" / "b.csv").write_text("z\n3\n")
    return root


def _push(src: Path, remote: Path) -> str:
    """Write `src` into a directory remote in DVC's layout; returns the manifest's MD5."""
    entries = manifest(src)
    for entry in entries:
        target = remote / object_key(entry["md5"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((src / entry["relpath"]).read_bytes())
    body = manifest_bytes(entries)
    md5 = hashlib.md5(body).hexdigest()
    target = remote / object_key(md5, directory=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(body)
    return md5


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_version_reads_back_exactly_by_content_address(tmp_path):
    src = _dataset(tmp_path / "src")
    md5 = _push(src, tmp_path / "remote")
    described = describe(src, "d")
    assert described.md5 == md5 and described.files == 2 and described.bytes == 12
    files = materialize(str(tmp_path / "remote"), md5, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in files) == ["a.csv", "sub/b.csv"]
    assert _tree(tmp_path / "out") == _tree(src)
    assert describe(tmp_path / "out", "d").md5 == md5


def test_manifest_entries_hash_each_file_and_sort_by_path(tmp_path):
    src = _dataset(tmp_path / "src")
    assert manifest(src) == [{"md5": hashlib.md5(b"x,y\n1,2\n").hexdigest(), "relpath": "a.csv"},
                             {"md5": hashlib.md5(b"z\n3\n").hexdigest(), "relpath": "sub/b.csv"}]
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref")
    assert [e["relpath"] for e in manifest(src)] == ["a.csv", "sub/b.csv"]  # git's metadata is not data


def test_corrupt_or_missing_objects_are_named_and_nothing_partial_is_left(tmp_path):
    src = _dataset(tmp_path / "src")
    remote = tmp_path / "remote"
    md5 = _push(src, remote)
    b_md5 = hashlib.md5(b"z\n3\n").hexdigest()
    (remote / object_key(b_md5)).write_bytes(b"tampered")
    with pytest.raises(ContentError, match=f"holds bytes with MD5 .*, not {b_md5}: the remote is corrupt"):
        materialize(str(remote), md5, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    (remote / object_key(b_md5)).unlink()
    with pytest.raises(ContentError, match=r"is not in the remote .*mlplat data push"):
        materialize(str(remote), md5, tmp_path / "out")
    with pytest.raises(ContentError, match="is not in the remote"):
        read_manifest(str(remote), "0" * 32)
    with pytest.raises(ContentError, match="is not an MD5 content hash"):
        read_manifest(str(remote), "not-a-hash")


def test_a_manifest_that_does_not_hash_to_its_name_or_escapes_the_dataset_is_refused(tmp_path):
    remote = tmp_path / "remote"
    body = json.dumps([{"md5": "0" * 32, "relpath": "../../etc/passwd"}], sort_keys=True).encode()
    md5 = hashlib.md5(body).hexdigest()
    (remote / object_key(md5, directory=True)).parent.mkdir(parents=True)
    (remote / object_key(md5, directory=True)).write_bytes(body)
    with pytest.raises(ContentError, match="names a path outside the dataset"):
        materialize(str(remote), md5, tmp_path / "out")
    other = "1" * 32
    (remote / object_key(other, directory=True)).parent.mkdir(parents=True)
    (remote / object_key(other, directory=True)).write_bytes(body)
    with pytest.raises(ContentError, match=f"does not hash to {other}"):
        read_manifest(str(remote), other)


def test_a_version_is_written_only_into_an_empty_directory(tmp_path):
    src = _dataset(tmp_path / "src")
    md5 = _push(src, tmp_path / "remote")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ContentError, match="is not empty"):
        materialize(str(tmp_path / "remote"), md5, tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_content_uri_round_trip_and_other_locations():
    uri = content_uri("s3://bucket/dvc", "ab" + "c" * 30)
    assert uri == "s3://bucket/dvc/files/md5/ab/" + "c" * 30 + ".dir"
    assert parse_content_uri(uri) == ("s3://bucket/dvc", "ab" + "c" * 30)
    assert parse_content_uri("/data/fraud") is None and parse_content_uri("sample") is None
    assert parse_content_uri("s3://bucket/files/md5/ab/cd.dir") is None  # not 32 hex digits


def test_s3_remote_reads_with_get_object_only(tmp_path, monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    src = _dataset(tmp_path / "src")
    md5 = _push(src, tmp_path / "remote")
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(Bucket="datasets", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        for path in (tmp_path / "remote").rglob("*"):
            if path.is_file():
                s3.put_object(Bucket="datasets", Key=f"dvc/{path.relative_to(tmp_path / 'remote').as_posix()}",
                              Body=path.read_bytes())
        calls: list[str] = []
        s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
        materialize("s3://datasets/dvc", md5, tmp_path / "out", s3_client=s3)
        assert set(calls) == {"GetObject"} and len(calls) == 3  # the manifest and two files
        with pytest.raises(ContentError, match="is not in the remote s3://datasets/dvc"):
            read_manifest("s3://datasets/dvc", "0" * 32, s3_client=s3)
    assert _tree(tmp_path / "out") == _tree(src)


def test_bad_registry_input_is_named(tmp_path):
    with pytest.raises(RegistryError, match=r"is not a data registry .*`mlplat data init --registry"):
        DataRegistry(tmp_path)
    with pytest.raises(RegistryError, match="dataset name 'Bad Name' is not valid"):
        check_name("Bad Name")
    assert default_name(tmp_path / "Fraud Sample_v2") == "fraud-sample_v2"


def test_pipeline_records_what_prepare_data_read(tmp_path):
    src = _dataset(tmp_path / "src")
    md5 = _push(src, tmp_path / "remote")
    plain = dataset_of("fraud", "/data/fraud", str(src))
    assert (plain.md5, plain.location, plain.uri, plain.content_addressed) == (md5, "/data/fraud", "/data/fraud",
                                                                               False)
    addressed = dataset_of("fraud", content_uri(str(tmp_path / "remote"), md5), str(src))
    assert addressed.location == str(tmp_path / "remote") and addressed.uri == content_uri(addressed.location, md5)
    with pytest.raises(ValueError, match=f"hashes to {md5}, not to the version"):
        dataset_of("fraud", content_uri(str(tmp_path / "remote"), "f" * 32), str(src))


def test_card_and_tags_name_the_version():
    version = DatasetVersion(name="datasets", md5="a" * 32, location="s3://b/dvc", files=8, bytes=6_000_000,
                             rev="0123456789abcdef", registry="/r")
    assert version.ref == "datasets@0123456789"
    assert dataset_tags(version) == {"mlplat.data.version": "datasets@0123456789", "mlplat.data.md5": "a" * 32,
                                     "mlplat.data.uri": "s3://b/dvc/files/md5/aa/" + "a" * 30 + ".dir"}
    card = {"model": {"name": "fraud", "version": "3", "description": "d", "run_id": "r", "created": "now"},
            "intended_use": "u", "limitations": [], "features": [], "training": {"params": {}},
            "data": {"directory": None, "version": version.as_dict(), "sources": [], "rows": {}},
            "evaluation": {"protocol": "p", "metrics": {}, "segments": {}},
            "gates": {"passed": True, "summary": "s"},
            "promotion": {"policy": "gates", "champion_at_registration": True, "pending_approval": False}}
    text = render_markdown(card)
    assert ("Dataset version `datasets@0123456789`: content MD5 `" + "a" * 32 + "` (8 file(s), 6000000 bytes), "
            "read by content address from `s3://b/dvc`") in text


def test_versions_table_lists_refs_and_hashes(tmp_path):
    v = DatasetVersion(name="fraud-sample", md5="b" * 32, location="/r", files=1, bytes=10, rev="c" * 40,
                       created="2026-12-07T04:00:00+00:00", message="first")
    lines = table([v], tmp_path).splitlines()
    assert lines[0] == f"registry {tmp_path}"
    assert lines[2].split()[:5] == ["fraud-sample@cccccccccc", "2026-12-07T04:00:00", "b" * 32, "1", "10"]
    assert "no dataset versions" in table([], tmp_path)


def test_prepare_data_step_reads_a_content_address(tmp_path):
    """The pipeline's first step given a version's address (`data_uri`): exactly its files, by object reads."""
    from ml.models.fraud import data as fraud_data
    from ml.pipelines.steps import prepare_data

    fraud_data.generate_sample(tmp_path / "src", rows=100, seed=5)
    md5 = _push(tmp_path / "src", tmp_path / "remote")
    summary = prepare_data("fraud", content_uri(str(tmp_path / "remote"), md5), 0, "", str(tmp_path / "out"))
    assert summary.startswith(f"dataset version {md5}: 1 file(s)") and str(tmp_path / "remote") in summary
    assert _tree(tmp_path / "out") == _tree(tmp_path / "src")
    assert dataset_of("fraud", content_uri(str(tmp_path / "remote"), md5), str(tmp_path / "out")).md5 == md5
