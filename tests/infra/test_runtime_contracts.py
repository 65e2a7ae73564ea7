"""Runtime contracts (docs/CONFORMANCE.md): every container whose software installs here starts the way its
rendered pod declares it, in a bubblewrap sandbox (read-only root, only its volumes writable, its user and
groups), and answers its probes and scrapes as the kubelet and Prometheus call them.

Real processes on this machine, inside network namespaces of their own: the .venv-ml binaries (MLflow,
MLServer with our runtimes, the receivers), Debian's busybox and pgbouncer, and PostgreSQL/Redis stand-ins
with TLS. The sandboxes need root and bubblewrap (`scripts/bootstrap.sh system`); without them these tests
fail with the message that says so. Each distinct pod is started once per session (the check caches by pod
spec), so the three stacks share their runs; each defect test starts only the pod it breaks.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.conformance import runner
from infra.conformance.harness import Harness, local_secret
from infra.conformance.model import KubeObject
from infra.conformance.plan import Plan
from infra.conformance.podspec import PodTemplate, References, container_env, scrape_targets
from infra.conformance.runtime_contracts import RuntimeReport, check
from infra.conformance.sandbox import Mount, Sandboxed, SandboxUnavailable, bwrap_argv
from infra.conformance.software import ROOT, classify, dockerfile
from infra.conformance.standins import Certificates
from infra.workloads.mlflow import pod_address_pattern
from infra.workloads.rds_tls import CA_PATH
from stacks.bom import load_bom

if not os.environ.get("MLPLAT_CHART_MIRROR"):
    os.environ["MLPLAT_CHART_MIRROR"] = str(ROOT.parent / "shared" / "charts")
ENVIRONMENTS = ("dev", "staging", "prod")
pytestmark = [pytest.mark.integration, pytest.mark.conformance]  # real processes; the rendered stacks
MLFLOW, MLSERVER = "Deployment mlflow/mlflow", "StatefulSet seldon/mlserver"
FEAST = "Deployment feast/feast-feature-server"
FEEDBACK = "Deployment delivery/feedback"  # read-only root; its init container makes its login on the stand-in
DB_PROXY = "Deployment kubeflow/kfp-db-proxy"
RECEIVERS = ("Deployment ml-training/model-rollback-receiver", "Deployment kubeflow/pipelines-retrain")


@pytest.fixture(scope="session")
def rendered(plan_of: Callable[[str], Plan],
             report: Callable[[str], runner.Report]) -> Callable[[str], tuple[Plan, list[KubeObject]]]:
    """Each stack's objects as `mlplat conform` checks them (the session's one conformance run per stack)."""
    return lambda stack: (plan_of(stack), report(stack).objects)


@pytest.fixture(scope="session")
def harness() -> Iterator[Harness]:
    """The one owner of the network namespaces, the PostgreSQL/Redis stand-ins and the pods' directories."""
    h = Harness()
    try:
        h.up()
    except SandboxUnavailable as exc:
        h.close()
        pytest.fail(f"runtime contracts: {exc}", pytrace=False)
    yield h
    h.close()


@pytest.fixture(scope="session")
def runtime(rendered: Callable[[str], tuple[Plan, list[KubeObject]]],
            harness: Harness) -> Callable[[str], RuntimeReport]:
    cache: dict[str, RuntimeReport] = {}

    def get(stack: str) -> RuntimeReport:
        if stack not in cache:
            plan, objects = rendered(stack)
            cache[stack] = check(objects, harness, plan.vpc_cidr)
        return cache[stack]

    return get


def _ran(report: RuntimeReport) -> dict[tuple[str, str], str]:
    return {(r.workload, r.container): r.detail for r in report.rows if r.status == "ran"}


# ---------------------------------------------------------------- the stacks keep their contracts

@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_every_runnable_container_starts_and_answers_its_probes_and_scrapes(
        runtime: Callable[[str], RuntimeReport], stack: str) -> None:
    report = runtime(stack)
    assert [str(p) for p in report.problems] == []
    ran = _ran(report)
    for workload, container in ((MLFLOW, "mlflow"), (MLSERVER, "mlserver"), (FEAST, "feast-feature-server"),
                                (FEEDBACK, "feedback")):
        detail = ran[(workload, container)]
        assert "readinessProbe" in detail and "scrape by" in detail, detail
        assert detail.split("scrape by", 1)[1].split(";")[0].endswith(") ok"), detail
    assert "agent repository contract ok (/mnt/agent/models)" in ran[(MLSERVER, "mlserver")]
    # `rds-ca` copies the RDS CA bundle (here the stand-in's CA, at the image's path) before the migration connects.
    for init in ("rds-ca", "dbchecker", "mlflow-db-migration", "ini-file-initializer"):
        assert ran[(MLFLOW, init)].endswith("init: exit 0"), init
    assert ran[(FEEDBACK, "provision")].endswith("init: exit 0")
    if stack == "prod":  # the managed database: KFP's TLS proxy starts with the bundle as its server_tls_ca_file
        assert ran[(DB_PROXY, "rds-ca")].endswith("init: exit 0")
        assert (DB_PROXY, "pgbouncer") in ran
    for receiver in RECEIVERS:
        assert any(w == receiver for w, _ in ran), receiver


def test_the_pinned_versions_are_compared_with_the_installed_ones(runtime: Callable[[str], RuntimeReport]) -> None:
    ran = _ran(runtime("prod"))
    assert "3.17.2 here, image pins 3.15.1" in ran[(MLFLOW, "mlflow")]  # MLflow: the chart's image is older
    assert "1.18.0 here, image pins 1.24.1" in ran[(DB_PROXY, "pgbouncer")]
    assert f"{load_bom().platform.version};" in ran[(MLSERVER, "mlserver")]  # our image: the project's version


def test_every_container_not_run_is_named_with_its_reason(runtime: Callable[[str], RuntimeReport]) -> None:
    rows = [r for r in runtime("prod").rows if r.status == "not run"]
    assert rows and all(r.detail for r in rows)
    reasons = {(r.workload, r.container): r.detail for r in rows}
    assert "Seldon Core 2" in reasons[(MLSERVER, "agent")]
    assert "2.42" in reasons[("StatefulSet monitoring/prometheus-kube-prometheus-stack-prometheus", "prometheus")]
    assert "Kafka" in reasons[("Deployment feast/feast-stream-ingestor", "ingestor")]


# ------------------------------------------------- each defect class fails, naming object, container and field

def _only(objects: list[KubeObject], kind: str, name: str) -> list[KubeObject]:
    """A deep copy of the objects with one workload of the kind: the pod a test breaks and nothing else to start."""
    workloads = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
    return copy.deepcopy([o for o in objects if o.kind not in workloads or (o.kind == kind and o.name == name)])


def _find(objects: list[KubeObject], kind: str, name: str) -> dict[str, Any]:
    return next(o.manifest for o in objects if o.kind == kind and o.name == name)


def _container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def _messages(report: RuntimeReport, subject: str) -> list[str]:
    return [p.message for p in report.problems if p.subject == subject]


@pytest.fixture(scope="session")
def prod(rendered: Callable[[str], tuple[Plan, list[KubeObject]]]) -> tuple[Plan, list[KubeObject]]:
    return rendered("prod")


@pytest.fixture(scope="session")
def mlflow_without_credentials(prod: tuple[Plan, list[KubeObject]], harness: Harness) -> RuntimeReport:
    """Two defects of one class in one MLflow pod: the liveness probe on a path the basic-auth app protects, and
    the ServiceMonitor without the credentials (the allowed hosts stay as they are)."""
    plan, objects = prod
    objects = _only(objects, "Deployment", "mlflow")
    _container(_find(objects, "Deployment", "mlflow"), "mlflow")["livenessProbe"]["httpGet"]["path"] = \
        "/api/2.0/mlflow/experiments/search"
    for endpoint in _find(objects, "ServiceMonitor", "mlflow")["spec"]["endpoints"]:
        endpoint.pop("basicAuth")
    return check(objects, harness, plan.vpc_cidr)


def test_a_probe_behind_authentication_fails_naming_the_probe(mlflow_without_credentials: RuntimeReport) -> None:
    found = _messages(mlflow_without_credentials, f"{MLFLOW} container mlflow")
    assert any(m.startswith("livenessProbe.httpGet (GET /api/2.0/mlflow/experiments/search") and "HTTP 401" in m
               for m in found), found


def test_a_scrape_without_the_servers_credentials_fails_naming_the_monitor(
        mlflow_without_credentials: RuntimeReport) -> None:
    found = _messages(mlflow_without_credentials, f"{MLFLOW} container mlflow")
    assert any("scrape by ServiceMonitor mlflow/mlflow endpoints[0] (http://<pod-ip>:5000/metrics)" in m
               and "HTTP 401" in m for m in found), found


def test_a_scrape_refused_by_the_servers_host_rules_fails_naming_the_monitor(
        prod: tuple[Plan, list[KubeObject]], harness: Harness) -> None:
    """The allowed hosts without the pod addresses: /health (exempt) still answers, /metrics does not."""
    plan, objects = prod
    objects = _only(objects, "Deployment", "mlflow")
    env = _find(objects, "ConfigMap", "mlflow-env-configmap")["data"]
    env["MLFLOW_SERVER_ALLOWED_HOSTS"] = ",".join(h for h in env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
                                                  if "*" not in h)
    found = _messages(check(objects, harness, plan.vpc_cidr), f"{MLFLOW} container mlflow")
    assert found and all("livenessProbe" not in m and "readinessProbe" not in m for m in found), found
    assert any("scrape by ServiceMonitor mlflow/mlflow endpoints[0]" in m and "HTTP 403" in m and "Host header" in m
               for m in found), found


def test_a_database_server_with_a_certificate_from_another_ca_is_refused(
        prod: tuple[Plan, list[KubeObject]], harness: Harness) -> None:
    """The clients verify the server (`verify-full`): the stand-in PostgreSQL is accepted because its CA is the bundle
    at the image's path; with another CA there (an impostor's server, as the clients see it) the connection fails."""
    plan, objects = prod
    objects = _only(objects, "Deployment", "feedback")
    other = Certificates(harness.directory / "other-ca", ["10.250.0.2", "*.rds.amazonaws.com"])
    own = harness.image_files[CA_PATH]
    harness.image_files[CA_PATH] = other.directory / "ca.crt"
    try:
        report = check(objects, harness, plan.vpc_cidr)
    finally:
        harness.image_files[CA_PATH] = own
    found = _messages(report, f"{FEEDBACK} container provision")
    assert any("certificate verify failed" in m for m in found), [str(p) for p in report.problems]


def _mlserver(prod: tuple[Plan, list[KubeObject]], harness: Harness,
              mutate: Callable[[dict[str, Any]], None]) -> list[str]:
    plan, objects = prod
    objects = _only(objects, "StatefulSet", "mlserver")
    mutate(_container(_find(objects, "StatefulSet", "mlserver"), "mlserver"))
    return _messages(check(objects, harness, plan.vpc_cidr), f"{MLSERVER} container mlserver")


def _parallel_workers(container: dict[str, Any]) -> None:
    """Leave the ServerConfig's MLSERVER_PARALLEL_WORKERS=1 in force (drop our override)."""
    container["env"] = [e for e in container["env"]
                        if not (e["name"] == "MLSERVER_PARALLEL_WORKERS" and e.get("value") == "0")]


def test_a_write_outside_the_declared_volumes_fails_naming_the_path(
        prod: tuple[Plan, list[KubeObject]], harness: Harness) -> None:
    """With parallel workers MLServer writes its metrics directory at start; without the emptyDir at /tmp that
    write lands on the read-only image root."""
    def drop_tmp(container: dict[str, Any]) -> None:
        _parallel_workers(container)
        container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "mlserver-tmp"]

    found = _mlserver(prod, harness, drop_tmp)
    assert any("volumeMounts: it writes /tmp/mlserver-metrics" in m for m in found), found


def test_a_server_that_misses_the_agents_repository_fails_naming_its_command(
        prod: tuple[Plan, list[KubeObject]], harness: Harness) -> None:
    """Without our command the image's ENTRYPOINT serves /mnt/models, not the agent's MLSERVER_MODELS_DIR."""
    found = _mlserver(prod, harness, lambda c: c.pop("command"))
    assert any(m.startswith("command/args (python -m ml.serving.request_limit start /mnt/models)")
               and "/mnt/agent/models" in m
               for m in found), found


def test_a_container_that_cannot_get_ready_fails_naming_the_probe(
        prod: tuple[Plan, list[KubeObject]], harness: Harness) -> None:
    """The ServerConfig's parallel worker left in force: it dies at start (uvloop 0.23), the server never answers.
    The startup probe is shortened to 2 x 10 s: the kubelet's budget is what the check waits for."""
    def parallel(container: dict[str, Any]) -> None:
        _parallel_workers(container)
        container["startupProbe"]["failureThreshold"] = 2

    found = _mlserver(prod, harness, parallel)
    assert any(m.startswith("startupProbe.httpGet (GET /v2/health/live on port server-http) never succeeded "
                            "within 20s") for m in found), found


def test_a_container_without_the_api_credentials_it_loads_at_start_fails_naming_the_token(
        prod: tuple[Plan, list[KubeObject]], harness: Harness) -> None:
    """The rollback receiver (`--kube cluster`) builds its Kubernetes client at start from the pod's service
    account: without the token it exits (before the fix it needed a kubeconfig, which no pod has)."""
    plan, objects = prod
    objects = _only(objects, "Deployment", "model-rollback-receiver")
    _find(objects, "Deployment", "model-rollback-receiver")["spec"]["template"]["spec"][
        "automountServiceAccountToken"] = False
    found = _messages(check(objects, harness, plan.vpc_cidr), f"{RECEIVERS[0]} container receiver")
    assert any(m.startswith("exited 1 before it was ready (automountServiceAccountToken") for m in found), found


# ---------------------------------------------------------------- the parts, without sandboxes

def test_bwrap_command_line_makes_mount_points_and_sets_the_identity(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    volume.mkdir()
    box = Sandboxed(argv=["prog"], env={"A": "1"}, mounts=[Mount(volume, "/no/such/dir", writable=True)],
                    uid=10001, gid=10001, groups=[10001])
    argv = bwrap_argv(box)
    text = " ".join(argv)
    assert "--perms 0755 --dir /no" in text and "--perms 0755 --dir /no/such/dir" in text
    assert f"--bind {volume} /no/such/dir" in text and "--remount-ro /" in text
    assert argv[argv.index("--") + 1:] == ["/usr/bin/setpriv", "--reuid=10001", "--regid=10001", "--groups=10001",
                                           "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", "prog"]


def test_container_env_resolves_references_and_expands_variables() -> None:
    pod_spec = {"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cm"}}],
                                "env": [{"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                                        {"name": "URL", "value": "postgresql://$(PGHOST)/$(PASS)"},
                                        {"name": "KEEP", "value": "$$(PGHOST)"}]}]}
    workload = KubeObject({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "namespace": "n"},
                           "spec": {"template": {"spec": pod_spec}}}, origin="plan w")
    cm = KubeObject({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "n"},
                     "data": {"PGHOST": "db"}}, origin="plan cm")
    secret = KubeObject({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "n"},
                         "data": {}}, origin="plan s")
    refs = References([workload, cm, secret], local_secret)
    env = container_env(PodTemplate(workload, pod_spec, {}), pod_spec["containers"][0], refs, "10.0.0.5", {})
    assert env == {"PGHOST": "db", "PASS": "standin-s-k", "URL": "postgresql://db/standin-s-k", "KEEP": "$(PGHOST)"}
    assert refs.substituted == {"n/s k"}


def test_scrape_targets_follow_the_service_port_to_the_container_port() -> None:
    pod_spec = {"containers": [{"name": "app", "ports": [{"name": "web", "containerPort": 5000}]}]}
    workload = KubeObject({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "namespace": "n"},
                           "spec": {"template": {"metadata": {"labels": {"app": "w"}}, "spec": pod_spec}}},
                          origin="plan w")
    service = KubeObject({"apiVersion": "v1", "kind": "Service",
                          "metadata": {"name": "w", "namespace": "n", "labels": {"app": "w"}},
                          "spec": {"selector": {"app": "w"}, "ports": [{"name": "http", "port": 80,
                                                                         "targetPort": "web"}]}}, origin="plan svc")
    monitor = KubeObject({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                          "metadata": {"name": "w", "namespace": "n"},
                          "spec": {"selector": {"matchLabels": {"app": "w"}},
                                   "endpoints": [{"port": "http", "path": "/m", "basicAuth": {
                                       "username": {"name": "cred", "key": "u"},
                                       "password": {"name": "cred", "key": "p"}}}]}}, origin="plan mon")
    cred = KubeObject({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cred", "namespace": "n"},
                       "stringData": {"u": "user", "p": "pw"}}, origin="release x: t", release="x")
    objects = [workload, service, monitor, cred]
    pod = PodTemplate(workload, pod_spec, {"app": "w"})
    [target] = scrape_targets(pod, objects, References(objects, local_secret))
    assert (target.monitor, target.container, target.port, target.path, target.basic_auth) == \
        ("ServiceMonitor n/w endpoints[0]", "app", 5000, "/m", ("user", "pw"))


def test_images_are_classified_with_their_start_up_and_version() -> None:
    ours = dockerfile(ROOT / "docker" / "model-server" / "Dockerfile")
    assert ours["entrypoint"] == ["python", "-m", "ml.serving.request_limit", "start", "/mnt/models"]
    assert ours["user"] == 10001
    assert classify("123.dkr.ecr.eu-west-1.amazonaws.com/p/model-server:0.1.0-ops").image.source == \
        "docker/ops/Dockerfile"  # type: ignore[union-attr]
    assert classify("burakince/mlflow:3.15.1").pinned == "3.15.1"
    unknown = classify("docker.io/seldonio/seldon-envoy:2.10.2")
    assert unknown.image is None and "Seldon" in unknown.reason
    assert classify(None).image is None
    # The feature jobs' images share the model-server repository but are JVM engines: not our server.
    for suffix, engine in (("-flink-job", "Flink"), ("-spark-features", "pyspark")):
        job = classify(f"123.dkr.ecr.eu-west-1.amazonaws.com/p/model-server:0.1.0{suffix}")
        assert job.image is None and engine in job.reason and job.pinned == f"0.1.0{suffix}"


def test_mlflow_accepts_the_pod_addresses_of_the_stacks_vpc() -> None:
    assert pod_address_pattern("10.30.0.0/16") == "10.30.*:5000"
    assert pod_address_pattern("172.16.0.0/12") == "172.*:5000"
