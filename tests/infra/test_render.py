"""`mlplat render`: manifests of what the program declares directly, Helm releases listed apart,
core kinds valid against the Kubernetes schemas (kubernetes-validate)."""

from __future__ import annotations

import copy

import yaml

from infra.cli.render import is_core, render, validate, write
from stacks.bom import load_bom


def test_dev_manifests_validate_and_releases_are_listed(synth, tmp_path):
    s = synth("dev")
    rendered = render(s.resources)
    errors, skipped = validate(rendered, "1.34")
    assert errors == []
    core = [m for m in rendered.manifests.values() if is_core(m)]
    kinds = {m["kind"] for m in core}
    assert {"Namespace", "ServiceAccount", "NetworkPolicy", "Deployment", "CronJob", "ConfigMap", "Secret",
            "Service", "PersistentVolumeClaim", "StorageClass"} <= kinds
    assert {m["kind"] for m in (rendered.manifests[p] for p in skipped)} <= {
        "ServiceMonitor", "PodMonitor", "PrometheusRule", "AppProject", "ApplicationSet"}
    assert not any(m["kind"] == "Release" for m in rendered.manifests.values())

    write(rendered, tmp_path)
    files = list((tmp_path / "manifests").rglob("*.yaml"))
    assert len(files) == len(rendered.manifests)
    doc = yaml.safe_load((tmp_path / "manifests" / "feast" / "cronjob-feast-materialize.yaml").read_text())
    assert doc["kind"] == "CronJob" and doc["metadata"]["namespace"] == "feast"
    listed = yaml.safe_load((tmp_path / "helm-releases.yaml").read_text())["releases"]
    assert len(listed) == 13
    overlays = list((tmp_path / "kustomize").glob("kubeflow-pipelines-*/kustomization.yaml"))
    assert len(overlays) == 1 and "?ref=" in overlays[0].read_text()
    bom = load_bom()
    for rel in listed:
        chart = next(c for c in bom.charts.values() if c.chart == rel["chart"])
        assert (rel["version"], rel["repository"]) == (chart.version, chart.repository)
        assert isinstance(rel["values"], dict) and rel["namespace"]


def test_secret_values_are_redacted(synth):
    rendered = render(synth("dev").resources)
    secrets = [m for m in rendered.manifests.values() if m["kind"] == "Secret"]
    assert secrets
    for m in secrets:
        assert m["stringData"] == {"redacted": "[secret]"}


def test_invalid_core_manifest_is_reported(synth):
    rendered = render(synth("dev").resources)
    path, dep = next((p, m) for p, m in rendered.manifests.items() if m["kind"] == "Deployment")
    broken = copy.deepcopy(dep)
    broken["spec"]["replicas"] = "two"
    rendered.manifests[path] = broken
    errors, _ = validate(rendered, "1.34")
    assert len(errors) == 1 and "replicas" in errors[0]
