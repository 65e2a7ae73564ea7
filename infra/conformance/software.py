"""Which container images have their software installed on this machine, at which version, and how
their image starts it (ENTRYPOINT, CMD, ENV, WORKDIR); and why every other image cannot be run here.

Our own images' start-up is read from their Dockerfiles (docker/*/Dockerfile). Upstream images are
described from their published build files at the pinned tag (cited per entry); the software runs
from `.venv-ml` (Python packages, the versions of requirements/ml.txt) or from Debian packages.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_ML = ROOT / ".venv-ml"
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Image:
    """How a runnable image starts, and where its software comes from here."""

    software: str
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    workdir: str
    user: int | None  # the image's USER (None: root)
    version: str  # of the software installed here
    source: str  # the upstream file these facts come from
    path_prefix: list[str] = field(default_factory=list)
    binds: dict[str, str] = field(default_factory=dict)  # host path -> path in the sandbox
    repo_at_workdir: bool = False  # our images: the repository's code at WORKDIR


@dataclass(frozen=True)
class Verdict:
    image: Image | None
    reason: str = ""  # why it is not run (image None)
    pinned: str = ""  # the version the pinned image carries


def _python_version(package: str) -> str:
    python = VENV_ML / "bin" / "python"
    if not python.exists():
        return ""
    out = subprocess.run([str(python), "-c", f"import importlib.metadata as m; print(m.version('{package}'))"],
                         capture_output=True, text=True)
    return out.stdout.strip()


def _debian_version(package: str) -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else ""


def dockerfile(path: Path) -> dict[str, object]:
    """ENTRYPOINT, CMD, ENV, WORKDIR and USER of the final stage of one of our Dockerfiles."""
    facts: dict[str, object] = {"entrypoint": [], "cmd": [], "env": {}, "workdir": "/", "user": None}
    text = re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        word = word.upper()
        if word == "FROM":
            facts = {"entrypoint": [], "cmd": [], "env": {}, "workdir": "/", "user": None}
        elif word in ("ENTRYPOINT", "CMD"):
            facts[word.lower()] = json.loads(rest)
        elif word == "ENV":
            env = dict(facts["env"])  # type: ignore[call-overload]
            env.update(dict(pair.split("=", 1) for pair in rest.split()))
            facts["env"] = env
        elif word == "WORKDIR":
            facts["workdir"] = rest.strip()
        elif word == "USER":
            facts["user"] = int(rest.strip())
    return facts


def _our_image(name: str, version: str) -> Image:
    facts = dockerfile(ROOT / "docker" / name / "Dockerfile")
    return Image(software=f"our {name} image (the repository + .venv-ml)", entrypoint=list(facts["entrypoint"]),  # type: ignore[call-overload]
                 cmd=list(facts["cmd"]), env=dict(facts["env"]), workdir=str(facts["workdir"]),  # type: ignore[call-overload]
                 user=facts["user"], version=version, source=f"docker/{name}/Dockerfile",  # type: ignore[arg-type]
                 path_prefix=[str(VENV_ML / "bin")], repo_at_workdir=True)


def _project_version() -> str:
    match = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    return match.group(1) if match else ""


def _busybox_image() -> Image | None:
    binary = shutil.which("busybox")
    if binary is None:
        return None
    # The image's /bin/sh and tools are busybox applets: the sandbox binds busybox over /bin/sh and puts a
    # directory of applet links first on PATH.
    return Image(software="busybox (Debian)", entrypoint=[], cmd=["sh"], env={}, workdir="/", user=None,
                 version=_debian_version("busybox").split(":")[-1].split("-")[0],
                 source="docker-library/busybox (the image is the static busybox binary and its applet links)",
                 binds={binary: "/bin/sh"})


def _pgbouncer_image() -> Image | None:
    if shutil.which("pgbouncer") is None:
        return None
    return Image(software="pgbouncer (Debian)", entrypoint=[], cmd=["pgbouncer", "/etc/pgbouncer/pgbouncer.ini"],
                 env={}, workdir="/", user=998, version=_debian_version("pgbouncer").split("-")[0],
                 source="cloudnative-pg/pgbouncer-containers Dockerfile (USER 998, pgbouncer on PATH)")


def classify(image: str | None) -> Verdict:
    """How (or why not) a container image runs here."""
    if not image:
        return Verdict(None, "the operator fills the image in at run time (not in the plan)")
    repository, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
    if repository.endswith("/model-server") and tag.endswith(JOB_IMAGE_SUFFIXES):
        suffix = next(sfx for sfx in JOB_IMAGE_SUFFIXES if tag.endswith(sfx))
        return Verdict(None, JOB_IMAGES_NOT_RUN[suffix], pinned=tag)
    if repository.endswith("/model-server"):
        name = "ops" if tag.endswith("-ops") else "model-server"
        return Verdict(_our_image(name, _project_version()), pinned=tag.removesuffix("-ops"))
    if repository == "burakince/mlflow":
        version = _python_version("mlflow")
        return Verdict(Image("mlflow (.venv-ml)", [], ["mlflow"], {}, "/", None, version,
                             "burakince/mlflow Dockerfile (python slim, mlflow and drivers on PATH)",
                             path_prefix=[str(VENV_ML / "bin")]), pinned=tag)
    if repository == "quay.io/feastdev/feature-server":
        version = _python_version("feast")
        return Verdict(Image("feast (.venv-ml)", [], ["feast"], {}, "/", None, version,
                             "feast-dev/feast sdk/python/feast/infra/feature_servers/multicloud/Dockerfile",
                             path_prefix=[str(VENV_ML / "bin")]), pinned=tag)
    if repository in ("busybox", "docker.io/busybox", "docker.io/library/busybox"):
        box = _busybox_image()
        return Verdict(box, "" if box else "busybox is not installed (Debian: busybox)", pinned=tag)
    if repository == "ghcr.io/cloudnative-pg/pgbouncer":
        bouncer = _pgbouncer_image()
        return Verdict(bouncer, "" if bouncer else "pgbouncer is not installed (Debian: pgbouncer)", pinned=tag)
    return Verdict(None, NOT_RUNNABLE.get(_family(repository), "no build of this software installs here"),
                   pinned=tag)


def _family(repository: str) -> str:
    name = repository.rsplit("/", 1)[-1]
    return "seldon" if name.startswith("seldon") else "kfp" if name.startswith(("kfp-", "ml_metadata")) else name


# The feature jobs' images live in the model-server repository under a tag suffix (infra/workloads/flink.py,
# spark.py) but are other software: a JVM engine with our job code. Their code runs here on the engines'
# local modes (tests/flink, tests/ml/test_spark_features.py); the images themselves are not built.
JOB_IMAGES_NOT_RUN: dict[str, str] = {
    "-flink-job": "the streaming-features job image (docker/flink-job: Apache Flink 2.2.1 on Java 17 with the "
                  "Kafka and MSK IAM jars): not built here (no container engine, no Maven access); the job runs "
                  "on a local Flink mini-cluster in tests/flink",
    "-spark-features": "the batch-feature job image (docker/spark-features: pyspark on Java 17 with the S3A jars): "
                       "not built here (no container engine, no Maven access); the job runs on local[2] in "
                       "tests/ml/test_spark_features.py",
}
JOB_IMAGE_SUFFIXES = tuple(JOB_IMAGES_NOT_RUN)

# Why each other image of the plan cannot be started here (the check prints it for every such container).
NOT_RUNNABLE: dict[str, str] = {
    "seldon": "Seldon Core 2 Go/Java binaries (agent, scheduler, envoy, gateways, dataflow, rclone, "
              "controller): no Debian or PyPI build",
    "kfp": "Kubeflow Pipelines Go/Node services: no Debian or PyPI build",
    "alpine": "init containers that wait for other services with `nc` (no contract of ours to check)",
    "grafana": "Grafana: no Debian package in bookworm",
    "k8s-sidecar": "kiwigrid k8s-sidecar: needs the Kubernetes API (none here)",
    "jaeger": "Jaeger v2 (OTel collector build): no Debian or PyPI build",
    "jaeger-es-index-cleaner": "Jaeger's index cleaner: no Debian or PyPI build; needs OpenSearch",
    "tritonserver": "NVIDIA Triton: no build here (and no GPU); its Server runs no replica (replicas 0)",
    "redis_exporter": "oliver006/redis_exporter: no Debian package in bookworm",
    "aws-load-balancer-controller": "AWS controller: needs the Kubernetes and AWS APIs",
    "cluster-autoscaler": "needs the Kubernetes and AWS APIs",
    "metrics-server": "needs the kubelets' APIs",
    "kube-state-metrics": "needs the Kubernetes API",
    "node-exporter": "node agent (host network and PID): Debian's prometheus-node-exporter is 1.5, not 1.12",
    "prometheus-operator": "needs the Kubernetes API",
    "kube-webhook-certgen": "Helm hook Job that writes Secrets through the Kubernetes API",
    "workflow-controller": "Argo Workflows controller: needs the Kubernetes API",
    "kubectl": "Helm hook Job that applies CRDs through the Kubernetes API",
    "argocd": "Argo CD v3.4.4 Go binaries (application and ApplicationSet controllers, server, repo server): no "
              "Debian or PyPI build, its Go module does not build here; the controllers need the Kubernetes API",
    "redis": "Redis 8.2 (the argo-cd chart's Argo CD cache): Debian bookworm's redis-server is 7.0, another major "
             "version",
}
