"""The few Kubernetes API calls a cluster rollout makes, through the official client, with errors that name the
object and the cluster.

- the Seldon Experiment `<model>-experiment`: get, and JSON merge patches of its weights (ml/delivery/seldon.py);
- ConfigMaps: the rollout's state `<model>-rollout` (get, merge patch) and the settings the stack wrote;
- Jobs: the rollout's Job (create, get, delete), made by `mlplat rollout start --cluster`.

In a pod the service account's token is used, else the kubeconfig ($KUBECONFIG or ~/.kube/config, an optional
context). A missing kubeconfig, an unreachable API server, a refused call (RBAC) and a missing object each end in
`KubeError` with the object and the reason.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ml.delivery.seldon import GROUP, PLURAL, VERSION

MERGE_PATCH = "application/merge-patch+json"


class KubeError(RuntimeError):
    """A Kubernetes API call that failed; the message names the object, the cluster and why."""


class NotFound(KubeError):
    """The object does not exist."""


class KubernetesApi:
    """Experiments, ConfigMaps and Jobs through the official `kubernetes` client."""

    def __init__(self, api_client: Any, where: str) -> None:
        self._client = api_client
        self.where = where  # the API server, for messages

    @classmethod
    def connect(cls, context: str | None = None, *, in_cluster: bool = True) -> KubernetesApi:
        """The pod's service account when running in a pod (and `in_cluster`), else the kubeconfig."""
        # The client is imported here: it is needed only against a cluster, and slow to import.
        from kubernetes import client, config

        if in_cluster and context is None:
            try:
                config.load_incluster_config()
                api = client.ApiClient()
                return cls(api, api.configuration.host)
            except config.ConfigException:
                pass
        try:
            # $KUBECONFIG read now (the client reads it once, when it is imported); a list of files is merged.
            api = config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"), context=context)
        except (config.ConfigException, FileNotFoundError, OSError) as exc:
            raise KubeError(f"no usable kube config ({exc}): set KUBECONFIG or write ~/.kube/config "
                            "(`aws eks update-kubeconfig --name <cluster>`), or pass --context") from None
        return cls(api, api.configuration.host)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            out = fn(*args, **kwargs)
        except ApiException as exc:
            reason = _reason(exc)
            if exc.status == 404:
                raise NotFound(f"{what}: not found on {self.where} ({reason})") from None
            if exc.status in (401, 403):
                raise KubeError(f"{what}: refused by {self.where} ({exc.status}: {reason}); the credentials in use "
                                "lack the right (docs/DELIVERY.md lists the rights a cluster rollout needs)") from None
            raise KubeError(f"{what}: {self.where} answered {exc.status}: {reason}") from None
        except HTTPError as exc:
            raise KubeError(f"{what}: the API server {self.where} is unreachable ({exc})") from None
        return out if isinstance(out, dict) else self._client.sanitize_for_serialization(out)

    def _custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self._client)

    def _core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self._client)

    def _batch(self) -> Any:
        from kubernetes import client

        return client.BatchV1Api(self._client)

    # The Experiments (ml/delivery/seldon.py ExperimentApi).
    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call(f"Experiment {namespace}/{name}", self._custom().get_namespaced_custom_object,
                          GROUP, VERSION, namespace, PLURAL, name)

    def patch(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(f"patch of Experiment {namespace}/{name}", self._merge_patch,
                          f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}", body)

    # ConfigMaps.
    def get_config_map(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call(f"ConfigMap {namespace}/{name}", self._core().read_namespaced_config_map, name, namespace)

    def patch_config_map(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(f"patch of ConfigMap {namespace}/{name}", self._merge_patch,
                          f"/api/v1/namespaces/{namespace}/configmaps/{name}", body)

    def _merge_patch(self, path: str, body: dict[str, Any]) -> Any:
        # The pinned client (kubernetes 30.1.0) picks the content type of a patch itself: the generated ConfigMap
        # patch lists `application/json-patch+json` first, which its REST layer (rest.py) turns into a strategic
        # merge patch for a dict body, a kind custom resources do not accept. One JSON merge patch (RFC 7386) for
        # ConfigMaps and Experiments alike is named explicitly here.
        return self._client.call_api(path, "PATCH", header_params={"Content-Type": MERGE_PATCH,
                                                                   "Accept": "application/json"},
                                     body=body, response_type="object", auth_settings=["BearerToken"],
                                     _return_http_data_only=True, _preload_content=True)

    # Jobs.
    def create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("metadata", {}).get("name", "?")
        return self._call(f"Job {namespace}/{name}", self._batch().create_namespaced_job, namespace, body)

    def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call(f"Job {namespace}/{name}", self._batch().read_namespaced_job, name, namespace)

    def delete_job(self, namespace: str, name: str) -> None:
        # Foreground: the pod gets its SIGTERM (and hands the traffic back) before the Job is gone.
        self._call(f"Job {namespace}/{name}", self._batch().delete_namespaced_job, name, namespace,
                   body={"propagationPolicy": "Foreground"})


def _reason(exc: Any) -> str:
    try:
        return str(json.loads(exc.body).get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)
