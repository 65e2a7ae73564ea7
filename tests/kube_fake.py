"""A fake of the Kubernetes API for the cluster rollout's tests: in memory, or over HTTP for the official client.

Loaded through the `kube_fake` fixture (tests/conftest.py). What it does as the API server does:
- JSON merge patches (RFC 7386, implemented here independently of the code under test), refused unless sent as
  `application/merge-patch+json`;
- every Seldon Experiment after a patch is validated against the Experiment CRD's openAPIV3Schema of the pinned
  `seldon-core-v2-crds` chart (a patch that makes an invalid object is refused with 422 and changes nothing);
- ConfigMap data must map strings to strings;
- RBAC: a bearer token is bound to Role rules (`apiGroups`, `resources`, `verbs`, `resourceNames`); a request
  outside them is refused with 403, as the API server would refuse the rollout's service account;
- Jobs: create (409 when the name exists), read, delete; `on_job` / `job_status` / `on_job_delete` let a test play
  the kubelet (run the Job's command and report its end).
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import tarfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ml.delivery.seldon import merge_patch

REPO = Path(__file__).resolve().parents[1]
CHARTS = Path(os.environ.get("MLPLAT_CHART_MIRROR", REPO.parent / "shared" / "charts"))
SELDON_GROUP, SELDON_VERSION = "mlops.seldon.io", "v1alpha1"


def experiment_schema() -> dict[str, Any]:
    """The Experiment CRD's schema from the pinned chart."""
    import yaml

    chart = CHARTS / "seldon-core-v2-crds-2.10.2.tgz"
    assert chart.is_file(), f"{chart} missing (MLPLAT_CHART_MIRROR)"
    with tarfile.open(chart) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("seldon-v2-crds.yaml"))
        text = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
    for doc in yaml.safe_load_all(io.StringIO(text)):
        if doc and doc["spec"]["names"]["kind"] == "Experiment" and doc["spec"]["group"] == SELDON_GROUP:
            version = next(v for v in doc["spec"]["versions"] if v["name"] == SELDON_VERSION)
            return version["schema"]["openAPIV3Schema"]
    raise AssertionError("no Experiment CRD in the chart")


class ApiRefused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


_PATHS = [
    (re.compile(r"^/apis/mlops\.seldon\.io/v1alpha1/namespaces/([^/]+)/experiments/([^/]+)$"),
     "mlops.seldon.io", "experiments"),
    (re.compile(r"^/api/v1/namespaces/([^/]+)/configmaps/([^/]+)$"), "", "configmaps"),
    (re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?$"), "batch", "jobs"),
]
_VERBS = {"GET": "get", "PATCH": "patch", "POST": "create", "DELETE": "delete", "PUT": "update"}


class FakeKubernetes:
    """Objects keyed by (resource, namespace, name); `tokens` maps a bearer token to its Role rules (None: all)."""

    def __init__(self, tokens: dict[str, list[dict[str, Any]] | None] | None = None) -> None:
        import jsonschema  # the ML and IaC environments both have it

        self._validate = jsonschema.validate
        self._schema = experiment_schema()
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.tokens = tokens if tokens is not None else {"admin": None}
        self.log: list[tuple[str, str, str, str]] = []  # (token, verb, path, content type)
        self.experiment_history: list[dict[str, Any]] = []
        self.on_experiment: Callable[[dict[str, Any]], None] | None = None
        self.on_job: Callable[[dict[str, Any]], None] | None = None
        self.job_status: Callable[[str], dict[str, Any]] | None = None
        self.on_job_delete: Callable[[str], None] | None = None
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # Objects.
    def add(self, obj: dict[str, Any]) -> None:
        kind = obj["kind"]
        resource = {"Experiment": "experiments", "ConfigMap": "configmaps", "Job": "jobs"}[kind]
        if kind == "Experiment":
            self._validate(obj, self._schema)
        self.objects[(resource, obj["metadata"]["namespace"], obj["metadata"]["name"])] = copy.deepcopy(obj)

    def experiment(self, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.objects[("experiments", namespace, name)])

    def weights(self, namespace: str, name: str) -> dict[str, int]:
        return {c["name"]: c["weight"] for c in self.experiment(namespace, name)["spec"]["candidates"]}

    # The API.
    def _authorize(self, token: str, verb: str, group: str, resource: str, name: str) -> None:
        if token not in self.tokens:
            raise ApiRefused(401, "Unauthorized")
        rules = self.tokens[token]
        if rules is None:
            return
        for rule in rules:
            if (group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
                    and (not rule.get("resourceNames") or name in rule["resourceNames"])):
                return
        raise ApiRefused(403, f'{resource} "{name}" is forbidden: cannot {verb} resource "{resource}" in API group '
                              f'"{group}"')

    def request(self, token: str, method: str, path: str, content_type: str, body: Any) -> tuple[int, Any]:
        """One call; (status, JSON body)."""
        verb = _VERBS.get(method, method.lower())
        self.log.append((token, verb, path, content_type))
        found = next(((m, g, r) for p, g, r in _PATHS if (m := p.match(path.split("?", 1)[0]))), None)
        if found is None:
            return 404, _status(404, f"the fake serves no {path}")
        match, group, resource = found
        namespace, name = match.group(1), match.group(2) or ""
        try:
            if method == "POST":
                name = (body or {}).get("metadata", {}).get("name", "")
            self._authorize(token, verb, group, resource, name)
            with self.lock:
                return 200, self._apply(method, resource, namespace, name, content_type, body)
        except ApiRefused as exc:
            return exc.code, _status(exc.code, str(exc))

    def _apply(self, method: str, resource: str, namespace: str, name: str, content_type: str,
               body: Any) -> dict[str, Any]:
        key = (resource, namespace, name)
        if method == "POST":
            if resource != "jobs":
                raise ApiRefused(405, f"the fake creates only jobs, not {resource}")
            if key in self.objects:
                raise ApiRefused(409, f'jobs.batch "{name}" already exists')
            job = merge_patch(body, {"metadata": {"namespace": namespace, "uid": f"uid-{name}"}})
            self.objects[key] = job
            if self.on_job is not None:
                self.on_job(copy.deepcopy(job))
            return copy.deepcopy(job)
        if key not in self.objects:
            raise ApiRefused(404, f'{resource} "{name}" not found')
        if method == "GET":
            obj = copy.deepcopy(self.objects[key])
            if resource == "jobs" and self.job_status is not None:
                obj["status"] = self.job_status(name)
            return obj
        if method == "DELETE":
            if self.on_job_delete is not None and resource == "jobs":
                self.on_job_delete(name)
            return _status(200, "deleted") | {"details": {"name": self.objects.pop(key)["metadata"]["name"]}}
        if method == "PATCH":
            if content_type.split(";")[0].strip() != "application/merge-patch+json":
                raise ApiRefused(415, f"the fake takes merge patches only, got {content_type!r}")
            new = merge_patch(self.objects[key], body)
            if resource == "experiments":
                try:
                    self._validate(new, self._schema)
                except Exception as exc:  # jsonschema.ValidationError: the API server's 422
                    raise ApiRefused(422, f"Experiment {name} is invalid: {getattr(exc, 'message', exc)}") from None
            if resource == "configmaps":
                data = new.get("data") or {}
                if not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
                    raise ApiRefused(422, f"ConfigMap {name}: data values must be strings")
            self.objects[key] = new
            if resource == "experiments":
                self.experiment_history.append(copy.deepcopy(new))
                if self.on_experiment is not None:
                    self.on_experiment(copy.deepcopy(new))
            return copy.deepcopy(new)
        raise ApiRefused(405, f"method {method} not served")

    # HTTP.
    def serve(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
                code, out = fake.request(token, self.command, self.path, self.headers.get("Content-Type") or "",
                                         body)
                data = json.dumps(out).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_POST = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def kubeconfig(self, url: str, token: str, path: Path) -> Path:
        import yaml

        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": url}}],
            "users": [{"name": token, "user": {"token": token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": token}}]}))
        return path


class InMemoryApi:
    """The fake without HTTP, with the method names of ml/delivery/kube_api.py (unit tests: no process, no socket)."""

    def __init__(self, fake: FakeKubernetes, token: str = "admin") -> None:
        self.fake, self.token = fake, token

    def _call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        from ml.delivery.kube_api import KubeError, NotFound

        code, out = self.fake.request(self.token, method, path, content_type, body)
        if code == 404:
            raise NotFound(out["message"])
        if code >= 400:
            raise KubeError(f"{code}: {out['message']}")
        return out

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call("GET", f"/apis/mlops.seldon.io/v1alpha1/namespaces/{namespace}/experiments/{name}")

    def patch(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", f"/apis/mlops.seldon.io/v1alpha1/namespaces/{namespace}/experiments/{name}",
                          body, "application/merge-patch+json")

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")

    def patch_config_map(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", f"/api/v1/namespaces/{namespace}/configmaps/{name}", body,
                          "application/merge-patch+json")

    def create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", body)

    def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")

    def delete_job(self, namespace: str, name: str) -> None:
        self._call("DELETE", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")


def _status(code: int, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure" if code >= 400 else "Success",
            "message": message, "code": code}
