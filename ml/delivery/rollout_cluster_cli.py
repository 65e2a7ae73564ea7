"""`mlplat rollout start|status|abort --cluster`: the rollout Job on the cluster, from any machine with a kubeconfig.

- `start`: reads the stack's settings (ConfigMap `ml-training/rollout-settings`), renders the Job
  (contracts/rollout_job.py) and creates it; with `--follow` (the default) prints the rollout's progress
  from its state ConfigMap until it ends. Closing the terminal does not stop the rollout: it runs in the cluster.
- `status`: the state ConfigMap, the Experiment's live weights and the Job's condition.
- `abort`: deletes the Job (its pod hands the traffic back on SIGTERM), then sets the champion to 100 % itself
  and records the rollout `aborted`, so an abort also works when the pod is gone.

The caller's kube credentials need: get on that ConfigMap, create/get/delete of Jobs in `ml-training`, get and
patch of the model's Experiment and state ConfigMap in the Seldon namespace.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from contracts import rollout_job as rj
from ml.delivery.cluster_rollout import ConfigMapStore
from ml.delivery.kube_api import KubeError, NotFound
from ml.delivery.rollout import Rollout, RolloutError
from ml.delivery.seldon import SeldonSplitter
from ml.delivery.splitter import CHAMPION, split


class ClusterApi(Protocol):
    def get(self, namespace: str, name: str) -> dict[str, Any]: ...

    def patch(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]: ...

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any]: ...

    def patch_config_map(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]: ...

    def create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]: ...

    def get_job(self, namespace: str, name: str) -> dict[str, Any]: ...

    def delete_job(self, namespace: str, name: str) -> None: ...


def settings(api: ClusterApi) -> rj.Settings:
    try:
        cm = api.get_config_map(rj.NAMESPACE, rj.SETTINGS)
    except NotFound:
        raise RolloutError(f"the cluster has no ConfigMap {rj.NAMESPACE}/{rj.SETTINGS}: the stack makes it with "
                           "workloads.rollouts.enabled (and gitops); run `pulumi up`") from None
    try:
        return rj.Settings.from_config_map(dict(cm.get("data") or {}))
    except ValueError as exc:
        raise RolloutError(str(exc)) from None


def job_state(api: ClusterApi, model: str) -> str:
    """`running`, `succeeded`, `failed` or `none` (no Job)."""
    try:
        job = api.get_job(rj.NAMESPACE, rj.job_name(model))
    except NotFound:
        return "none"
    status = job.get("status") or {}
    if status.get("succeeded"):
        return "succeeded"
    if status.get("failed") or any(c.get("type") == "Failed" and c.get("status") == "True"
                                   for c in status.get("conditions") or []):
        return "failed"
    return "running"


def start(api: ClusterApi, model: str, version: str, steps: Sequence[int], interval_s: float, min_requests: int,
          *, started_by: str = "", poll_s: float = 15) -> dict[str, Any]:
    """Create the rollout's Job; RolloutError naming the problem (unknown model, a rollout already running,
    the stack's settings missing)."""
    cfg = settings(api)
    try:
        manifest = rj.job(cfg, model, version, steps, interval_s, min_requests, poll_s=poll_s, started_by=started_by)
    except ValueError as exc:
        raise RolloutError(str(exc)) from None
    state = job_state(api, model)
    if state == "running":
        raise RolloutError(f"a rollout of {model} runs already (Job {rj.NAMESPACE}/{rj.job_name(model)}): "
                           f"`mlplat rollout status {model} --cluster`, or `mlplat rollout abort {model} --cluster`")
    if state != "none":  # a finished rollout's Job: its state stays in the ConfigMap
        api.delete_job(rj.NAMESPACE, rj.job_name(model))
        _wait_gone(api, model)
    return api.create_job(rj.NAMESPACE, manifest)


def _wait_gone(api: ClusterApi, model: str, timeout_s: float = 120,
               sleep: Callable[[float], None] = time.sleep) -> None:
    deadline = time.monotonic() + timeout_s
    while job_state(api, model) != "none":
        if time.monotonic() > deadline:
            raise RolloutError(f"Job {rj.NAMESPACE}/{rj.job_name(model)} is still being deleted after "
                               f"{timeout_s:.0f} s")
        sleep(1)


@dataclass
class Status:
    rollout: Rollout | None
    live: dict[str, int] | None
    job: str
    note: str


def status(api: ClusterApi, model: str) -> Status:
    cfg = settings(api)
    if model not in cfg.models():
        raise RolloutError(f"model {model!r} is not enabled in this stack (enabled: {', '.join(cfg.models())})")
    try:
        record = ConfigMapStore(api, cfg.seldon_namespace).load(model)
    except NotFound:
        raise RolloutError(f"no state ConfigMap {cfg.seldon_namespace}/{rj.state_name(model)}: the stack makes it "
                           "(workloads.rollouts.enabled); run `pulumi up`") from None
    try:
        live = SeldonSplitter(api, cfg.seldon_namespace).weights(model)
    except KubeError:
        live = None  # the record is still worth showing
    job = job_state(api, model)
    note = ""
    if record is not None and record.phase == "running" and job != "running":
        note = (f"the rollout's Job is {job} but its state says running (the pod was killed before it could "
                f"record the end): check the weights, `mlplat rollout abort {model} --cluster` sets the champion "
                "to 100 %")
    return Status(record, live, job, note)


def abort(api: ClusterApi, model: str, by: str = "mlplat rollout abort") -> Rollout | None:
    cfg = settings(api)
    if model not in cfg.models():
        raise RolloutError(f"model {model!r} is not enabled in this stack (enabled: {', '.join(cfg.models())})")
    store = ConfigMapStore(api, cfg.seldon_namespace, runner=by)
    before = store.load(model)
    if job_state(api, model) != "none":
        api.delete_job(rj.NAMESPACE, rj.job_name(model))  # the pod's SIGTERM handler records its own end first
        _wait_gone(api, model)
    SeldonSplitter(api, cfg.seldon_namespace).set_weights(model, split(model, 0))
    record = store.load(model)
    if record is not None and before is not None and before.phase == "running":
        record.phase, record.reason = "aborted", f"aborted by {by}; {CHAMPION} back at 100 %"
        record.shares = split(model, 0)
        store.save(record)
    return record


def last_started(api: ClusterApi, model: str) -> float | None:
    """When the recorded rollout of `model` started (None: none recorded): `follow` waits for a newer one. The
    record's own time is compared, not this machine's clock, which may differ from the cluster's."""
    try:
        record = ConfigMapStore(api, settings(api).seldon_namespace).load(model)
    except NotFound:
        return None
    return record.started if record is not None else None


def follow(api: ClusterApi, model: str, previous: float | None, say: Callable[[str], None], *, poll_s: float = 5,
           sleep: Callable[[float], None] = time.sleep, timeout_s: float | None = None) -> Rollout:
    """Print the progress of the rollout recorded after `previous` (`last_started` before the Job was made) until it
    ends (its state no longer `running`)."""
    cfg = settings(api)
    store = ConfigMapStore(api, cfg.seldon_namespace)
    seen: tuple[Any, ...] = ()
    began = time.monotonic()
    while True:
        record = store.load(model)
        fresh = record is not None and record.started != previous
        if fresh and record is not None:
            now = (record.phase, record.step, tuple(h.verdict for h in record.history))
            if now != seen:
                seen = now
                share = record.steps[record.step] if 0 <= record.step < len(record.steps) else 0
                say(f"{model}: {record.phase}, step {record.step + 1}/{len(record.steps)} ({share} %), shares "
                    f"{record.shares}" + (f": {record.reason}" if record.reason else ""))
            if record.phase != "running":
                return record
        elif (state := job_state(api, model)) in ("failed", "none"):
            what = "failed" if state == "failed" else "was deleted"
            raise RolloutError(f"the rollout Job {rj.NAMESPACE}/{rj.job_name(model)} {what} before it recorded "
                               f"anything: `kubectl -n {rj.NAMESPACE} logs job/{rj.job_name(model)}`")
        if timeout_s is not None and time.monotonic() - began > timeout_s:
            raise RolloutError(f"no end of the rollout of {model} within {timeout_s:.0f} s (it goes on in the "
                               f"cluster: `mlplat rollout status {model} --cluster`)")
        sleep(poll_s)
