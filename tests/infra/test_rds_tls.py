"""Every client of the platform's RDS PostgreSQL authenticates the server (infra/workloads/rds_tls.py): `verify-full`
against the RDS CA bundle that the BOM pins and the model-server image carries. That the clients really verify (and
refuse a server certificate from another CA) is tests/infra/test_runtime_contracts.py, on the rendered pods."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from infra.workloads import postrender
from infra.workloads.rds_tls import CA_DIR, CA_PATH, CA_VOLUME, COPY_CONTAINER
from stacks import pinned_files
from stacks.bom import TrustBundle, load_bom

ROOT = Path(__file__).resolve().parents[2]
PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
URL = "https://truststore.example.org/global/bundle.pem"
TLS_ENV = {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": CA_PATH}


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value") for e in container.get("env") or []}


# ---------------------------------------------------------------- the pin

def test_the_bom_pins_the_rds_global_bundle_and_the_image_build_fetches_it_through_the_pin():
    bundle = load_bom().trust_bundles["rds-ca"]
    assert bundle.url == "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
    dockerfile = (ROOT / "docker" / "model-server" / "Dockerfile").read_text()
    assert f"RUN python -m stacks.pinned_files rds-ca {CA_PATH}\n" in dockerfile
    # After the package is installed (the module and the BOM are in the image) and before the image drops root.
    assert dockerfile.index("RUN pip install --no-deps .") < dockerfile.index("stacks.pinned_files") \
        < dockerfile.index("USER 10001")


@pytest.mark.parametrize(("url", "checksum", "message"), [
    ("http://truststore.example.org/b.pem", None, "must be an https URL of a .pem file"),
    ("https://truststore.example.org/b.crt", None, "must be an https URL of a .pem file"),
    (URL, "a" * 64, "must be sha256:<64 lower-case hex> or null"),
    (URL, "sha1:" + "a" * 40, "must be sha256:<64"),
])
def test_a_bad_bundle_pin_is_refused_naming_what_is_wrong(url, checksum, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(".", r"\.")):
        TrustBundle(url=url, checksum=checksum)


def test_an_unpinned_bundle_is_taken_from_its_origin_printing_the_digest_to_record():
    digest = hashlib.sha256(PEM).hexdigest()
    notes: list[str] = []
    assert pinned_files.checked("rds-ca", TrustBundle(url=URL, checksum=None), PEM, warn=notes.append) == PEM
    assert len(notes) == 1 and f"sha256 {digest}" in notes[0] and f'`checksum: "sha256:{digest}"`' in notes[0]
    # Unpinned is no licence for anything else: an error page, or a key beside the certificates, is refused.
    for bad in (b"<html>maintenance</html>", PEM + b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
                PEM.replace(b"-----END CERTIFICATE-----\n", b""), b""):
        with pytest.raises(pinned_files.PinError, match="holds no PEM certificate, or something besides them"):
            pinned_files.checked("rds-ca", TrustBundle(url=URL, checksum=None), bad, warn=notes.append)
    assert pinned_files.checked("rds-ca", TrustBundle(url=URL, checksum=None), PEM + b"\n" + PEM,
                                warn=notes.append) == PEM + b"\n" + PEM


def test_only_the_pinned_file_is_written(tmp_path, monkeypatch):
    digest = hashlib.sha256(PEM).hexdigest()
    assert pinned_files.checked("x", TrustBundle(url=URL, checksum=f"sha256:{digest}"), PEM) == PEM
    changed = hashlib.sha256(PEM + b"x").hexdigest()
    with pytest.raises(pinned_files.PinError, match=f"sha256 {changed}, stacks/bom.yaml pins {digest}"):
        pinned_files.checked("x", TrustBundle(url=URL, checksum=f"sha256:{digest}"), PEM + b"x")
    html = b"<html>maintenance</html>"
    with pytest.raises(pinned_files.PinError, match="holds no PEM certificate, or something besides"):
        pinned_files.checked("x", TrustBundle(url=URL, checksum=f"sha256:{hashlib.sha256(html).hexdigest()}"), html)
    # Through fetch: the BOM's pin decides; nothing is written when it refuses.
    pinned = load_bom().model_copy(update={"trust_bundles": {"rds-ca": TrustBundle(url=URL,
                                                                                  checksum=f"sha256:{digest}")}})
    monkeypatch.setattr(pinned_files, "load_bom", lambda: pinned)
    target = tmp_path / "etc" / "ssl" / "rds" / "global-bundle.pem"
    assert pinned_files.fetch("rds-ca", target, download=lambda url: PEM) == digest
    assert target.read_bytes() == PEM and target.stat().st_mode & 0o777 == 0o644
    other = tmp_path / "other.pem"
    with pytest.raises(pinned_files.PinError):
        pinned_files.fetch("rds-ca", other, download=lambda url: PEM + b"x")
    assert not other.exists()
    with pytest.raises(pinned_files.PinError, match=r"no trust bundle 'nope'.*known: rds-ca"):
        pinned_files.fetch("nope", other, download=lambda url: PEM)


# ---------------------------------------------------------------- the clients in the plan

def test_every_rds_client_in_the_plan_verifies_the_server(synth, env):
    s = synth(env)
    host = s.stack_outputs["databaseEndpoint"]
    image = f"{s.stack_outputs['modelServerRepositoryUrl']}:{load_bom().images['model-server'].tag}"
    mlflow = next(r.inputs for r in s.of_type("kubernetes:helm.sh/v3:Release") if r.name == "mlflow")
    assert mlflow["postrender"] == "scripts/helm-postrender-mlflow"
    values = mlflow["values"]
    assert {k: values["extraEnvVars"][k] for k in TLS_ENV} == TLS_ENV
    assert [c["name"] for c in values["initContainers"]] == [COPY_CONTAINER]
    assert values["initContainers"][0]["image"] == image
    assert {"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": True} in values["extraVolumeMounts"]
    assert {"name": CA_VOLUME, "emptyDir": {"sizeLimit": "1Mi"}} in values["extraVolumes"]
    kube = [r.inputs for r in s.resources if r.type.startswith("kubernetes:")]
    feedback = next(d for d in kube if d.get("kind") == "Deployment" and d["metadata"]["name"] == "feedback")
    pod = feedback["spec"]["template"]["spec"]
    for c in pod["initContainers"] + pod["containers"]:
        assert {k: _env(c)[k] for k in TLS_ENV} == TLS_ENV, c["name"]
        assert c["image"] == image  # the image that carries the bundle at PGSSLROOTCERT
    proxies = [d for d in kube if d.get("kind") == "Deployment" and d["metadata"]["name"] == "kfp-db-proxy"]
    for proxy in proxies:  # managed database only (prod)
        pod = proxy["spec"]["template"]["spec"]
        assert [(c["name"], c["image"]) for c in pod["initContainers"]] == [(COPY_CONTAINER, image)]
        assert {"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": True} in pod["containers"][0]["volumeMounts"]
        ini = next(d for d in kube if d.get("kind") == "ConfigMap"
                   and d["metadata"]["name"] == "kfp-db-proxy")["data"]["pgbouncer.ini"]
        assert f"host={host}" in ini and "server_tls_sslmode = verify-full" in ini
        assert f"server_tls_ca_file = {CA_PATH}" in ini
    assert bool(proxies) == (env == "prod")
    # No client is left that encrypts without authenticating.
    assert "sslmode = require" not in str(kube) and "'PGSSLMODE', 'value': 'require'" not in str(kube)


# ---------------------------------------------------------------- the chart's migration container

MLFLOW = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: mlflow}
spec:
  template:
    spec:
      initContainers:
      - name: dbchecker
      - name: mlflow-db-migration
        envFrom: [{configMapRef: {name: mlflow-env-configmap}}]
        env: [{name: PGSSLMODE, value: prefer}]
        volumeMounts: [{name: tmp, mountPath: /tmp}]
      - name: rds-ca
      containers:
      - name: mlflow
"""


def test_the_post_renderer_verifies_the_migration_and_copies_the_bundle_first():
    pod = next(yaml.safe_load_all(postrender.apply(MLFLOW, "mlflow")))["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == [COPY_CONTAINER, "dbchecker", "mlflow-db-migration"]
    migration = pod["initContainers"][2]
    assert migration["env"] == [{"name": k, "value": v} for k, v in TLS_ENV.items()]  # its own `prefer` replaced
    assert migration["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"},
                                         {"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": True}]
    assert pod["containers"] == [{"name": "mlflow"}]


def test_the_post_renderer_fails_when_the_migration_or_the_copy_is_gone():
    with pytest.raises(postrender.PostRenderError, match="no init container rds-ca"):
        postrender.apply(MLFLOW.replace("- name: rds-ca", "- name: other"), "mlflow")
    with pytest.raises(postrender.PostRenderError, match="no container mlflow-db-migration"):
        postrender.apply(MLFLOW.replace("name: mlflow-db-migration", "name: migrate"), "mlflow")
