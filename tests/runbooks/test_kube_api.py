"""The Kubernetes steps of the runbooks through the client code the cluster uses: `ClusterKubeOps` (the
official `kubernetes` client, configured from a kubeconfig as `--kube cluster` does) against a real HTTP
server on 127.0.0.1 that answers the Kubernetes API calls those steps make — not `InMemoryKubeOps`.

The server's answers are shaped from the Kubernetes API's OpenAPI schema: every object it returns
(Deployment, StatefulSet, Secret, CronJob, Job, Status) is checked before it is sent against that
schema as the official client of the lock file is generated from it (the OpenAPI document of its
Kubernetes release; its models' `attribute_map` / `openapi_types`): no field the schema lacks, every
field of the schema's type, every required field (the client's own deserialization).
Seldon's `Model` / `Experiment` custom resources (mlops.seldon.io/v1alpha1) have their `metadata`
checked as ObjectMeta and their `spec` against the Seldon Core 2.10 CRDs' schema (Model: `storageUri`
required, `parameters` name/value strings; Experiment: `candidates` name/weight). The API semantics
the steps rely on are the API server's: merge and strategic-merge patches, `stringData` folded into
base64 `data`, `resourceVersion` preconditions (409 Conflict), `Status` bodies for 401/404/409, 201 on
create, bearer-token authentication, and a controller that rolls a patched pod template out over a
few status reads and completes (or fails) a created Job.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import json
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes.client import ApiClient
from kubernetes.client import models as k8s
from kubernetes.client.exceptions import ApiException

from contracts.cluster import FEAST_MATERIALIZE, REDIS_CLIENTS, SELDON_NAMESPACE
from ml.delivery.seldon import merge_patch
from runbooks.context import RunContext
from runbooks.engine import AuditLog, run
from runbooks.kube import REGISTRY_VERSION_PARAM, ClusterKubeOps, parameter
from runbooks.recovery import FEATURE_BACKFILL
from runbooks.redis import AUTH_ROTATION, K8S_SECRET_KEY, K8S_SECRETS

TOKEN = "test-bearer-token"
KINDS = {  # (group/version, plural) -> (kind, schema model of the official client, or None for a CR)
    ("apps/v1", "deployments"): ("Deployment", "V1Deployment"),
    ("apps/v1", "statefulsets"): ("StatefulSet", "V1StatefulSet"),
    ("v1", "secrets"): ("Secret", "V1Secret"),
    ("batch/v1", "cronjobs"): ("CronJob", "V1CronJob"),
    ("batch/v1", "jobs"): ("Job", "V1Job"),
    ("mlops.seldon.io/v1alpha1", "models"): ("Model", None),
    ("mlops.seldon.io/v1alpha1", "experiments"): ("Experiment", None),
}
PATH = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))/namespaces/(?P<ns>[^/]+)/"
                  r"(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?P<status>/status)?$")
ROLLOUT_READS = 2  # status reads a rollout takes in the fake controller
JOB_READS = 2  # status reads until a created Job completes


# ---- the OpenAPI schema, as the official client generates it -----------------------------------

def conform(value: Any, type_name: str, where: str = "") -> list[str]:
    """Where `value` departs from the schema type `type_name` (openapi_types notation of the client)."""
    if value is None:
        return []
    # Both notations of the generated client: list[X] / dict(str, X) (swagger-codegen, up to 3x) and
    # List[X] / Dict[str, X] (openapi-generator).
    if m := re.fullmatch(r"[lL]ist\[(.+)\]", type_name):
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {type(value).__name__}"]
        return [e for i, v in enumerate(value) for e in conform(v, m[1], f"{where}[{i}]")]
    if m := re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", type_name):
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        return [e for k, v in value.items() for e in conform(v, m[1] or m[2], f"{where}.{k}")]
    # bytes travel as base64 strings in JSON
    simple = {"str": str, "bytes": str, "int": int, "bool": bool, "float": (int, float), "object": object}
    if type_name in simple:
        ok = isinstance(value, simple[type_name]) and not (type_name == "int" and isinstance(value, bool))
        return [] if ok else [f"{where}: expected {type_name}, got {value!r}"]
    if type_name == "datetime":
        try:
            datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return [f"{where}: not an RFC 3339 time: {value!r}"]
        return []
    model = getattr(k8s, type_name)
    if not isinstance(value, dict):
        return [f"{where}: expected {type_name}, got {type(value).__name__}"]
    known = {json_key: attr for attr, json_key in model.attribute_map.items()}
    errors = [f"{where}.{k}: not a field of {type_name}" for k in value if k not in known]
    for key, v in value.items():
        if key in known:
            errors += conform(v, model.openapi_types[known[key]], f"{where}.{key}")
    if not errors:
        try:  # required fields and the client's own checks, through its own deserialization
            if hasattr(model, "from_dict"):
                model.from_dict(value)
            else:
                ApiClient()._ApiClient__deserialize(value, type_name)  # what it does with a response body
        except Exception as exc:
            errors.append(f"{where}: {type_name}: {str(exc).splitlines()[0]}")
    return errors


def check_object(obj: dict[str, Any]) -> list[str]:
    gv, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    if kind == "Status":
        return conform(obj, "V1Status", "Status")
    model = next((m for (g, _), (k, m) in KINDS.items() if g == gv and k == kind), "missing")
    if model == "missing":
        return [f"unknown kind {gv} {kind}"]
    if model is not None:
        return conform(obj, model, kind)
    errors = conform(obj.get("metadata"), "V1ObjectMeta", f"{kind}.metadata")  # a custom resource
    spec = obj.get("spec")
    if kind == "Model" and not (isinstance(spec, dict) and isinstance(spec.get("storageUri"), str)):
        errors.append("Model.spec.storageUri: required string")
    if kind == "Model" and not all(isinstance(p.get("name"), str) and isinstance(p.get("value"), str)
                                   for p in (spec or {}).get("parameters") or []):
        errors.append("Model.spec.parameters: name and value (strings) each")
    if kind == "Experiment" and not (isinstance(spec, dict) and spec.get("candidates") and all(
            isinstance(c.get("name"), str) and isinstance(c.get("weight"), int) for c in spec["candidates"])):
        errors.append("Experiment.spec.candidates: required, name (string) and weight (integer) each")
    return errors


# ---- the fake API server -------------------------------------------------------------------------

def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeApiServer:
    """Kubernetes API answers for the calls the runbook steps make, with the semantics listed above."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.schema_errors: list[str] = []
        self.rollouts: dict[tuple[str, str, str, str], int] = {}  # pending status reads per workload
        self.jobs: dict[tuple[str, str, str, str], int] = {}
        self.fail_jobs = False
        self.concurrent_writer: set[tuple[str, str, str, str]] = set()  # changed right after each GET
        self._rv = 100
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"api": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def meta(self, ns: str, name: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "namespace": ns, "uid": str(uuid.uuid4()), "resourceVersion": self.next_rv(),
                "generation": 1, "creationTimestamp": now(), **extra}

    def add(self, gv: str, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        kind = KINDS[(gv, plural)][0]
        obj = {"apiVersion": gv, "kind": kind, **obj}
        errors = check_object(obj)
        assert not errors, errors
        self.objects[(gv, plural, obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
        return obj

    # Fixtures of realistic objects (what the Pulumi program and the charts create in the cluster).
    def workload(self, kind: str, ns: str, name: str, replicas: int = 2) -> dict[str, Any]:
        plural = f"{kind}s"
        labels = {"app.kubernetes.io/name": name}
        spec: dict[str, Any] = {"replicas": replicas, "selector": {"matchLabels": labels},
                                "template": {"metadata": {"labels": labels},
                                             "spec": {"containers": [{"name": name, "image": f"{name}:1.0"}]}}}
        status: dict[str, Any] = {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                                  "readyReplicas": replicas, "availableReplicas": replicas}
        if kind == "statefulset":
            spec["serviceName"] = name
            status["currentReplicas"] = replicas
        return self.add("apps/v1", plural, {"metadata": self.meta(ns, name), "spec": spec, "status": status})

    def secret(self, ns: str, name: str, data: dict[str, str]) -> dict[str, Any]:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        return self.add("v1", "secrets", {"metadata": self.meta(ns, name), "type": "Opaque", "data": encoded})

    def cronjob(self, ns: str, name: str) -> dict[str, Any]:
        container = {"name": "materialize", "image": "feast:0.63", "command": ["feast"],
                     "args": ["materialize-incremental", "$(NOW)"]}
        spec = {"schedule": "0 * * * *", "concurrencyPolicy": "Forbid", "jobTemplate": {"spec": {
            "backoffLimit": 2, "template": {"spec": {"restartPolicy": "OnFailure", "containers": [container]}}}}}
        return self.add("batch/v1", "cronjobs", {"metadata": self.meta(ns, name), "spec": spec})

    def seldon_model(self, ns: str, name: str) -> dict[str, Any]:
        spec = {"storageUri": f"s3://models/{name}/", "requirements": ["mlplat"], "parameters": []}
        return self.add("mlops.seldon.io/v1alpha1", "models", {"metadata": self.meta(ns, name), "spec": spec})

    def experiment(self, ns: str, name: str, weights: dict[str, int]) -> dict[str, Any]:
        spec = {"default": next(iter(weights)),
                "candidates": [{"name": m, "weight": w} for m, w in weights.items()]}
        return self.add("mlops.seldon.io/v1alpha1", "experiments", {"metadata": self.meta(ns, name), "spec": spec})

    def get(self, gv: str, plural: str, ns: str, name: str) -> dict[str, Any]:
        return self.objects[(gv, plural, ns, name)]

    # ---- request handling ----------------------------------------------------------------------

    def status(self, code: int, reason: str, message: str, name: str = "", group: str = "",
               plural: str = "") -> tuple[int, dict[str, Any]]:
        body = {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "message": message,
                "reason": reason, "code": code}
        if name:
            body["details"] = {"name": name, "group": group, "kind": plural}
        return code, body

    def handle(self, method: str, path: str, ctype: str, body: Any) -> tuple[int, dict[str, Any]]:
        m = PATH.match(path.split("?", 1)[0])
        if not m:
            return self.status(404, "NotFound", f"the server could not find the requested resource ({path})")
        gv = "v1" if m["core"] else f"{m['group']}/{m['version']}"
        plural, ns, name = m["plural"], m["ns"], m["name"]
        if (gv, plural) not in KINDS:
            return self.status(404, "NotFound", f"the server could not find the requested resource ({path})")
        group = "" if gv == "v1" else gv.split("/")[0]
        key = (gv, plural, ns, name or "")
        with self._lock:
            if method == "POST" and name is None:
                return self._create(gv, plural, ns, body, group)
            if key not in self.objects:
                resource = f"{plural}.{group}" if group else plural
                return self.status(404, "NotFound", f'{resource} "{name}" not found', name, group, plural)
            if method == "GET":
                return self._read(key, bool(m["status"]))
            if method == "PATCH":
                return self._patch(key, ctype, body, group)
        return self.status(405, "MethodNotAllowed", f"{method} is not supported on {path} by this server")

    def _read(self, key: tuple[str, str, str, str], status: bool) -> tuple[int, dict[str, Any]]:
        obj = self.objects[key]
        if status and key in self.rollouts:  # the controller makes progress with each status read
            self.rollouts[key] -= 1
            if self.rollouts[key] <= 0:
                del self.rollouts[key]
                replicas = obj["spec"]["replicas"]
                obj["status"].update(observedGeneration=obj["metadata"]["generation"], updatedReplicas=replicas,
                                     readyReplicas=replicas, availableReplicas=replicas)
        if status and key in self.jobs:
            self.jobs[key] -= 1
            if self.jobs[key] <= 0:
                del self.jobs[key]
                outcome = "Failed" if self.fail_jobs else "Complete"
                obj["status"] = {"startTime": obj["status"]["startTime"], **(
                    {"failed": 1} if self.fail_jobs else {"succeeded": 1, "completionTime": now()}),
                    "conditions": [{"type": outcome, "status": "True", "lastProbeTime": now(),
                                    "lastTransitionTime": now()}]}
        answer = copy.deepcopy(obj)
        if key in self.concurrent_writer:  # someone else writes right after our read
            obj["metadata"]["resourceVersion"] = self.next_rv()
        return 200, answer

    def _patch(self, key: tuple[str, str, str, str], ctype: str, patch: Any, group: str) -> tuple[int, dict]:
        obj = self.objects[key]
        _, plural, _, name = key
        if ctype not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            return self.status(415, "UnsupportedMediaType",
                               "the body of the request was in an unknown format - accepted media types include: "
                               f"application/merge-patch+json, application/strategic-merge-patch+json (got {ctype})")
        wanted_rv = ((patch or {}).get("metadata") or {}).get("resourceVersion")
        if wanted_rv is not None and wanted_rv != obj["metadata"]["resourceVersion"]:
            resource = f"{plural}.{group}" if group else plural
            return self.status(409, "Conflict", f'Operation cannot be fulfilled on {resource} "{name}": the object '
                                                f"has been modified; please apply your changes to the latest version "
                                                f"and try again", name, group, plural)
        # Strategic merge differs from a merge patch only for lists with merge keys; the steps patch maps.
        updated = merge_patch(obj, patch)
        if plural == "secrets" and "stringData" in updated:  # the API server folds stringData into data
            data = dict(updated.get("data") or {})
            data.update({k: base64.b64encode(v.encode()).decode() for k, v in updated.pop("stringData").items()})
            updated["data"] = data
        if updated.get("spec") != obj.get("spec"):
            updated["metadata"]["generation"] = obj["metadata"]["generation"] + 1
            if plural in ("deployments", "statefulsets") and updated["spec"]["template"] != obj["spec"]["template"]:
                updated["status"]["updatedReplicas"] = 0
                self.rollouts[key] = ROLLOUT_READS
        updated["metadata"]["resourceVersion"] = self.next_rv()
        self.objects[key] = updated
        return 200, copy.deepcopy(updated)

    def _create(self, gv: str, plural: str, ns: str, body: dict[str, Any], group: str) -> tuple[int, dict]:
        name = body["metadata"]["name"]
        key = (gv, plural, ns, name)
        if key in self.objects:
            return self.status(409, "AlreadyExists", f'{plural}.{group} "{name}" already exists', name, group, plural)
        # The API server defaults a missing apiVersion/kind from the URL (its decoder's defaults).
        obj = {"apiVersion": gv, "kind": KINDS[(gv, plural)][0], **copy.deepcopy(body)}
        obj["metadata"] = {**obj["metadata"], **self.meta(ns, name)}
        obj["status"] = {"startTime": now(), "active": 1} if plural == "jobs" else {}
        self.objects[key] = obj
        if plural == "jobs":
            self.jobs[key] = JOB_READS
        return 201, copy.deepcopy(obj)


class _Handler(BaseHTTPRequestHandler):
    api: FakeApiServer

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        self.api.requests.append({"method": method, "path": self.path, "content_type": ctype, "body": body})
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            code, answer = self.api.status(401, "Unauthorized", "Unauthorized")
        else:
            code, answer = self.api.handle(method, self.path, ctype, body)
        errors = check_object(answer)
        if errors:
            self.api.schema_errors += [f"{method} {self.path} -> {code}: {e}" for e in errors]
        payload = json.dumps(answer).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_POST(self) -> None:
        self._serve("POST")


# ---- fixtures ------------------------------------------------------------------------------------

@pytest.fixture
def api(tmp_path, monkeypatch) -> Iterator[FakeApiServer]:
    """The fake API server and a kubeconfig naming it (current context, bearer token), as KUBECONFIG."""
    with FakeApiServer() as server:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": server.url}}],
            "users": [{"name": "operator", "user": {"token": TOKEN}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "operator"}}],
        }))
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        # The client reads KUBECONFIG once, when it is imported (as a fresh `mlplat` process does).
        monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
        yield server
        assert server.schema_errors == [], server.schema_errors


def _patches(api: FakeApiServer, plural: str) -> list[dict[str, Any]]:
    return [r for r in api.requests if r["method"] == "PATCH" and f"/{plural}/" in r["path"]]


# ---- the KubeOps protocol, call by call ---------------------------------------------------------

def test_every_cluster_call_against_the_api_server(api):
    api.workload("deployment", "mlflow", "mlflow")
    api.secret("feast", "feast-redis", {"token": "old", "host": "redis.internal"})
    api.seldon_model("seldon", "fraud-champion")
    api.experiment("seldon", "fraud-experiment", {"fraud-champion": 90, "fraud-challenger": 10})
    kube = ClusterKubeOps()  # the kubeconfig in KUBECONFIG, as `mlplat runbook run --kube cluster`

    assert kube.experiment_weights("seldon", "fraud-experiment") == {"fraud-champion": 90, "fraud-challenger": 10}
    kube.set_experiment_weights("seldon", "fraud-experiment", {"fraud-champion": 100, "fraud-challenger": 0})
    assert kube.experiment_weights("seldon", "fraud-experiment") == {"fraud-champion": 100, "fraud-challenger": 0}

    assert kube.ready("deployment", "mlflow", "mlflow")
    kube.restart("deployment", "mlflow", "mlflow")
    (patch,) = _patches(api, "deployments")
    assert patch["content_type"] == "application/strategic-merge-patch+json"
    assert "kubectl.kubernetes.io/restartedAt" in patch["body"]["spec"]["template"]["metadata"]["annotations"]
    reads = 0
    while not kube.ready("deployment", "mlflow", "mlflow"):
        reads += 1
        assert reads < 10
    assert reads == ROLLOUT_READS - 1  # the rollout took the controller's status reads
    assert api.get("apps/v1", "deployments", "mlflow", "mlflow")["metadata"]["generation"] == 2

    kube.patch_secret("feast", "feast-redis", {"token": "new-token"})
    secret = api.get("v1", "secrets", "feast", "feast-redis")
    assert base64.b64decode(secret["data"]["token"]).decode() == "new-token" and "stringData" not in secret
    assert base64.b64decode(secret["data"]["host"]).decode() == "redis.internal"  # other keys kept

    assert kube.model_version("seldon", "fraud-champion") is None
    kube.touch_model("seldon", "fraud-champion", "7")
    model = api.get("mlops.seldon.io/v1alpha1", "models", "seldon", "fraud-champion")
    assert kube.model_version("seldon", "fraud-champion") == "7"
    assert parameter(model["spec"]["parameters"], REGISTRY_VERSION_PARAM) == "7"
    assert model["metadata"]["generation"] == 2  # a spec change: Seldon's controller reloads the model
    touch = _patches(api, "models")[-1]
    assert touch["content_type"] == "application/merge-patch+json"
    assert touch["body"]["metadata"]["resourceVersion"]  # the precondition is sent


def test_touch_model_refuses_to_overwrite_a_concurrent_change(api):
    api.seldon_model("seldon", "fraud-champion")
    api.concurrent_writer.add(("mlops.seldon.io/v1alpha1", "models", "seldon", "fraud-champion"))
    with pytest.raises(ApiException) as err:
        ClusterKubeOps().touch_model("seldon", "fraud-champion", "3")
    assert err.value.status == 409 and "the object has been modified" in err.value.body
    assert parameter(api.get("mlops.seldon.io/v1alpha1", "models", "seldon", "fraud-champion")["spec"]["parameters"],
                     REGISTRY_VERSION_PARAM) is None


def test_missing_objects_and_bad_credentials_surface_as_api_errors(api, tmp_path, monkeypatch):
    kube = ClusterKubeOps()
    with pytest.raises(ApiException) as err:
        kube.restart("deployment", "mlflow", "mlflow")
    assert err.value.status == 404 and 'deployments.apps \\"mlflow\\" not found' in err.value.body
    with pytest.raises(ApiException) as err:
        kube.experiment_weights("seldon", "nope")
    assert err.value.status == 404
    config = json.loads((tmp_path / "kubeconfig").read_text())
    config["users"][0]["user"]["token"] = "wrong"
    (tmp_path / "kubeconfig").write_text(json.dumps(config))
    with pytest.raises(ApiException) as err:
        ClusterKubeOps().ready("deployment", "mlflow", "mlflow")
    assert err.value.status == 401


# ---- whole runbooks through the real client -----------------------------------------------------

def _seed_redis(transit: bool = True) -> None:
    import boto3

    from stacks.config import load_stack_file, stack_file
    from stacks.context import StackContext

    stack = StackContext(load_stack_file(stack_file("dev")))
    boto3.client("elasticache", region_name="eu-west-1").create_replication_group(
        ReplicationGroupId=stack.redis_group_id, ReplicationGroupDescription="feast online store",
        Engine="redis", CacheNodeType="cache.t4g.small", NumCacheClusters=1,
        TransitEncryptionEnabled=transit, AuthToken="old-token-0123456789abcdef")
    boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
        Name=stack.redis_secret_name, SecretString=json.dumps(
            {"host": "master.example", "port": 6379, "tls": True, "authToken": "old-token-0123456789abcdef"}))


def test_redis_auth_rotation_moves_the_clients_through_the_api(api, aws_env, tmp_path):
    _seed_redis()
    for kind, ns, name in REDIS_CLIENTS:
        api.workload(kind, ns, name)
    for secret in K8S_SECRETS:
        api.secret(*secret, {K8S_SECRET_KEY: "old-token-0123456789abcdef"})
    out = io.StringIO()
    ctx = RunContext(env="dev", kube=ClusterKubeOps(), params={"poll_s": "0.05"})
    report = run(AUTH_ROTATION, ctx, execute=True, audit=AuditLog(tmp_path / "audit.jsonl"), out=out)
    assert report.ok, out.getvalue()
    for secret in K8S_SECRETS:
        token = base64.b64decode(api.get("v1", "secrets", *secret)["data"][K8S_SECRET_KEY]).decode()
        assert token == ctx.state["new_token"] and len(token) == 48
    restarted = [(r["path"].split("/")[-2], r["path"].split("/")[-1]) for r in api.requests
                 if r["method"] == "PATCH" and "/apis/apps/v1/" in r["path"]]
    assert restarted == [(f"{kind}s", name) for kind, _, name in REDIS_CLIENTS]
    for kind, ns, name in REDIS_CLIENTS:  # every rollout finished before the old token was revoked
        workload = api.get("apps/v1", f"{kind}s", ns, name)
        assert workload["status"]["updatedReplicas"] == workload["spec"]["replicas"]
        assert workload["metadata"]["generation"] == 2


def test_feature_backfill_runs_a_job_from_the_cronjob(api, tmp_path):
    ns, cron = FEAST_MATERIALIZE.namespace, FEAST_MATERIALIZE.name
    api.cronjob(ns, cron)
    params = {"start": "2026-11-01T00:00:00", "end": "2026-11-02T00:00:00", "poll_s": "0.05"}
    out = io.StringIO()
    ctx = RunContext(env="staging", kube=ClusterKubeOps(), params=params)
    report = run(FEATURE_BACKFILL, ctx, execute=True, audit=AuditLog(tmp_path / "a.jsonl"), out=out)
    assert report.ok, out.getvalue()
    (create,) = [r for r in api.requests if r["method"] == "POST"]
    assert create["path"] == f"/apis/batch/v1/namespaces/{ns}/jobs"
    job = api.get("batch/v1", "jobs", ns, ctx.state["job"])
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:3] == ["materialize", "2026-11-01T00:00:00", "2026-11-02T00:00:00"]
    assert container["image"] == "feast:0.63"  # the rest of the CronJob's template is kept
    assert job["status"]["succeeded"] == 1

    api.fail_jobs = True
    del api.objects[("batch/v1", "jobs", ns, ctx.state["job"])]  # finished Jobs are cleaned up (TTL controller)
    out = io.StringIO()
    ctx = RunContext(env="staging", kube=ClusterKubeOps(), params=params)
    with contextlib.suppress(Exception):
        report = run(FEATURE_BACKFILL, ctx, execute=True, audit=AuditLog(tmp_path / "b.jsonl"), out=out)
    assert not report.ok and f"job {ns}/{ctx.state['job']} failed" in out.getvalue()


def test_model_rollback_publishes_and_moves_traffic_through_the_api(api, aws_env, mlflow_url, tmp_path):
    import boto3
    from mlflow.tracking import MlflowClient

    from ml.delivery import gitops
    from ml.training.publish import read_marker
    from runbooks.models import ROLLBACK
    from stacks.config import load_stack_file, stack_file

    client, name, bucket = MlflowClient(tracking_uri=mlflow_url), "fraud", "mlplat-test-models"
    client.create_registered_model(name)
    for i in range(2):
        run_ = client.create_run("0")
        folder = tmp_path / f"v{i + 1}"
        folder.mkdir()
        (folder / "version.txt").write_text(str(i + 1))
        client.log_artifacts(run_.info.run_id, str(folder), artifact_path="model")
        # Passed its gates and approved: prod's promotion policy lets no other version into a slot.
        client.create_model_version(name, source=f"{run_.info.artifact_uri}/model", run_id=run_.info.run_id,
                                    tags={"gate.passed": "true", "approval.status": "approved"})
    client.set_registered_model_alias(name, "champion", "2")
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for slot in ("champion", "challenger"):
        api.seldon_model(SELDON_NAMESPACE, f"{name}-{slot}")
    api.experiment(SELDON_NAMESPACE, f"{name}-experiment", {f"{name}-champion": 90, f"{name}-challenger": 10})

    out = io.StringIO()
    # prod delivers with GitOps: the rollback names v1 in the deploy tree (a bare repository here) and patches only
    # the Experiment, whose weights Argo CD ignores; a Model patch would be undone by self-heal.
    repo = gitops.local_repository(tmp_path / "deploy-state")
    ctx = RunContext(env="prod", tracking_uri=mlflow_url, kube=ClusterKubeOps(),
                     params={"model": name, "deploy_repo": str(repo)}, stack_outputs={"buckets": {"models": bucket}})
    report = run(ROLLBACK, ctx, execute=True, audit=AuditLog(tmp_path / "audit"), out=out)
    assert report.ok, out.getvalue()
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert read_marker(bucket, name, "champion", s3_client=s3)["version"] == "1"
    cfg = load_stack_file(stack_file("prod"))
    assert gitops.branch_versions(gitops.target_for(cfg, location=str(repo)))[name] == {"champion": "1"}
    experiment = api.get("mlops.seldon.io/v1alpha1", "experiments", SELDON_NAMESPACE, f"{name}-experiment")
    assert {c["name"]: c["weight"] for c in experiment["spec"]["candidates"]} == {
        f"{name}-champion": 100, f"{name}-challenger": 0}
    writes = [r["path"].rsplit("/", 2)[-2] for r in api.requests if r["method"] == "PATCH"]
    assert writes == ["experiments"]
