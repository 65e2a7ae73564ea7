"""Model slots of the local platform: a directory with the layout of the cluster's models bucket.

The cluster's Seldon Models read `s3://<models bucket>/<model>/<slot>/` (contracts/model_slots.py), and
ml/training/publish.py writes a slot through an S3 client. The local platform has no S3: `DirectoryBucket`
answers the few S3 calls `publish` makes (head, list, upload, put, get, delete) from
`<root>/<bucket>/<key>`, so the pipeline's `publish` step runs the same code locally and a slot is a
folder, `<root>/<bucket>/<model>/<slot>/`, holding one version's files plus `PUBLISHED.json`.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

LOCAL_BUCKET = "local-models"


def _client_error(code: str, operation: str) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": code}}, operation)


class _Paginator:
    def __init__(self, bucket: DirectoryBucket) -> None:
        self.bucket = bucket

    def paginate(self, Bucket: str, Prefix: str = "") -> list[dict[str, Any]]:
        root = self.bucket.dir(Bucket)
        contents = [{"Key": p.relative_to(root).as_posix(), "Size": p.stat().st_size}
                    for p in sorted(root.rglob("*")) if p.is_file()]
        return [{"Contents": [c for c in contents if c["Key"].startswith(Prefix)]}]


class DirectoryBucket:
    """The subset of a boto3 S3 client that ml/training/publish.py uses, on a directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def dir(self, bucket: str) -> Path:
        path = self.root / bucket
        if not path.is_dir():
            raise _client_error("NoSuchBucket", "HeadBucket")
        return path

    def create_bucket(self, Bucket: str) -> None:
        (self.root / Bucket).mkdir(parents=True, exist_ok=True)

    def head_bucket(self, Bucket: str) -> dict[str, Any]:
        self.dir(Bucket)
        return {}

    def get_paginator(self, operation: str) -> _Paginator:
        if operation != "list_objects_v2":
            raise NotImplementedError(operation)
        return _Paginator(self)

    def _path(self, bucket: str, key: str) -> Path:
        path = (self.dir(bucket) / key).resolve()
        if self.dir(bucket).resolve() not in path.parents:
            raise _client_error("InvalidKey", "PutObject")
        return path

    def upload_file(self, Filename: str, Bucket: str, Key: str) -> None:
        path = self._path(Bucket, Key)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Filename, path)

    def put_object(self, Bucket: str, Key: str, Body: bytes, **_: Any) -> dict[str, Any]:
        path = self._path(Bucket, Key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(Body)
        return {}

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        path = self._path(Bucket, Key)
        if not path.is_file():
            raise _client_error("NoSuchKey", "GetObject")
        return {"Body": io.BytesIO(path.read_bytes())}

    def delete_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        self._path(Bucket, Key).unlink(missing_ok=True)
        return {}

    def delete_objects(self, Bucket: str, Delete: dict[str, Any]) -> dict[str, Any]:
        for obj in Delete.get("Objects", []):
            self.delete_object(Bucket, obj["Key"])
        return {}
