"""How every client of the platform's RDS PostgreSQL authenticates the server: `verify-full` against the RDS CA
bundle, which no image ships (RDS's CAs are in no public trust store).

The bundle (stacks/bom.yaml `trustBundles.rds-ca`, checked at build against its pinned sha256) is in the
model-server image at `CA_PATH`. Pods running that image read it there (the feedback endpoint). Pods of images we do
not build (MLflow's, PgBouncer's) get it through `CA_VOLUME`, an emptyDir that the init container `rds-ca` (the
model-server image) fills with a copy before any other container starts, mounted at the same `CA_DIR`: so one path
and one pinned file serve every client. libpq clients get `PGSSLMODE=verify-full` and `PGSSLROOTCERT` (libpq checks
the chain and that the certificate names the host it dialled); PgBouncer gets `server_tls_sslmode = verify-full` and
`server_tls_ca_file`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the post-renderer (infra/workloads/postrender.py) imports this module without Pulumi
    import pulumi

CA_DIR = "/etc/ssl/rds"
CA_FILE = "global-bundle.pem"
CA_PATH = f"{CA_DIR}/{CA_FILE}"  # in the model-server image (docker/model-server/Dockerfile), and in the pods
CA_VOLUME = "rds-ca"
COPY_CONTAINER = "rds-ca"
_STAGING = "/rds-ca"  # where the copy container mounts the volume (its own CA_DIR is the image's)
SSL_MODE = "verify-full"


def libpq_env() -> list[dict[str, str]]:
    """libpq's TLS settings: verify the chain against the RDS bundle and the host name against the certificate."""
    return [{"name": "PGSSLMODE", "value": SSL_MODE}, {"name": "PGSSLROOTCERT", "value": CA_PATH}]


def pgbouncer_settings() -> list[str]:
    """PgBouncer's `[pgbouncer]` lines for its connections to RDS."""
    return [f"server_tls_sslmode = {SSL_MODE}", f"server_tls_ca_file = {CA_PATH}"]


def ca_volume() -> dict[str, Any]:
    return {"name": CA_VOLUME, "emptyDir": {"sizeLimit": "1Mi"}}


def ca_mount() -> dict[str, Any]:
    """The bundle's directory in a container of an image we do not build (filled by `copy_container`)."""
    return {"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": True}


def copy_container(image: pulumi.Input[str], security_context: dict[str, Any]) -> dict[str, Any]:
    """The init container that copies the model-server image's bundle into `CA_VOLUME`; it must run before any
    container that connects to RDS (first in `initContainers`)."""
    return {
        "name": COPY_CONTAINER, "image": image, "command": ["cp", CA_PATH, f"{_STAGING}/{CA_FILE}"],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
        "securityContext": security_context,
        "volumeMounts": [{"name": CA_VOLUME, "mountPath": _STAGING}],
    }
