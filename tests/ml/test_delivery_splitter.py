"""The splitter interface, its Seldon implementation (patch bodies checked against the Experiment CRD of the
pinned chart) and the rendering of the local HAProxy configuration. No process is started here."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ml.delivery import haproxy, seldon
from ml.delivery.splitter import CHALLENGER, CHAMPION, Splitter, check_mirror, check_weights, split

pytestmark = pytest.mark.ml



def test_weights_are_validated_with_the_problem_named():
    assert check_weights("fraud", {CHAMPION: 90, CHALLENGER: 10}) == {CHAMPION: 90, CHALLENGER: 10}
    assert split("fraud", 50) == {CHAMPION: 50, CHALLENGER: 50}
    with pytest.raises(ValueError, match="sum to 110, expected 100"):
        check_weights("fraud", {CHAMPION: 100, CHALLENGER: 10})
    with pytest.raises(ValueError, match=r"unknown variant.*canary"):
        check_weights("fraud", {"canary": 10, CHAMPION: 90})
    with pytest.raises(ValueError, match="whole number"):
        check_weights("fraud", {CHAMPION: 90.5, CHALLENGER: 9.5})
    with pytest.raises(ValueError, match=r"0..100"):
        check_weights("fraud", {CHAMPION: 110, CHALLENGER: -10})


def test_only_the_challenger_can_be_mirrored():
    assert check_mirror("fraud", CHALLENGER, 20) == (CHALLENGER, 20)
    assert check_mirror("fraud", CHALLENGER, 0) == (None, 0)
    assert check_mirror("fraud", None, 30) == (None, 0)
    with pytest.raises(ValueError, match="only the challenger"):
        check_mirror("fraud", CHAMPION, 10)
    with pytest.raises(ValueError, match=r"0..100"):
        check_mirror("fraud", CHALLENGER, 101)


class InMemoryExperiments:
    """The API server's part that matters here: merge patches applied to stored objects, each result
    validated against the CRD's schema as the API server does."""

    def __init__(self, schema: dict[str, Any], objects: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.schema = schema
        self.objects = objects
        self.patches: list[dict[str, Any]] = []

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.objects[(namespace, name)])

    def patch(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.patches.append(body)
        new = seldon.merge_patch(self.objects[(namespace, name)], body)
        jsonschema.validate(new, self.schema)
        self.objects[(namespace, name)] = new
        return copy.deepcopy(new)


def _experiment(model: str) -> dict[str, Any]:
    # The shape infra/workloads/models_cluster.py declares (experiment_spec).
    return {"apiVersion": f"{seldon.GROUP}/{seldon.VERSION}", "kind": seldon.KIND,
            "metadata": {"name": seldon.experiment_name(model), "namespace": seldon.SELDON_NAMESPACE},
            "spec": {"default": f"{model}-champion", "resourceType": "model",
                     "candidates": [{"name": f"{model}-champion", "weight": 100},
                                    {"name": f"{model}-challenger", "weight": 0}]}}


def test_seldon_splitter_patches_are_valid_experiments(kube_fake):
    schema = kube_fake.experiment_schema()  # the pinned chart's Experiment CRD
    jsonschema.validate(_experiment("fraud"), schema)
    api = InMemoryExperiments(schema, {(seldon.SELDON_NAMESPACE, "fraud-experiment"): _experiment("fraud")})
    sp = seldon.SeldonSplitter(api)
    assert isinstance(sp, Splitter)
    assert sp.weights("fraud") == {CHAMPION: 100, CHALLENGER: 0}
    sp.set_weights("fraud", {CHAMPION: 90, CHALLENGER: 10})
    assert api.patches[-1] == {"spec": {"candidates": [{"name": "fraud-champion", "weight": 90},
                                                       {"name": "fraud-challenger", "weight": 10}]}}
    assert sp.weights("fraud") == {CHAMPION: 90, CHALLENGER: 10}
    sp.set_mirror("fraud", CHALLENGER, 25)
    assert api.patches[-1] == {"spec": {"mirror": {"name": "fraud-challenger", "percent": 25}}}
    assert sp.mirror("fraud") == (CHALLENGER, 25)
    stored = api.get(seldon.SELDON_NAMESPACE, "fraud-experiment")["spec"]
    assert stored["default"] == "fraud-champion" and stored["resourceType"] == "model"  # untouched
    sp.set_mirror("fraud", None, 0)
    assert api.patches[-1] == {"spec": {"mirror": None}}
    assert sp.mirror("fraud") == (None, 0)
    assert "mirror" not in api.get(seldon.SELDON_NAMESPACE, "fraud-experiment")["spec"]


def test_the_schema_rejects_what_the_splitter_must_never_send(kube_fake):
    # The check above is meaningful: a body the CRD does not allow fails the same validation.
    schema = kube_fake.experiment_schema()  # the pinned chart's Experiment CRD
    bad = seldon.merge_patch(_experiment("fraud"), {"spec": {"mirror": {"name": "fraud-challenger"}}})
    with pytest.raises(jsonschema.ValidationError, match="percent"):
        jsonschema.validate(bad, schema)
    with pytest.raises(ValueError, match="sum to"):
        seldon.weights_patch("fraud", {CHAMPION: 50, CHALLENGER: 10})


def test_argocd_ignores_exactly_the_fields_the_splitter_patches():
    ignored = seldon.ARGOCD_IGNORE_DIFFERENCES
    assert (ignored["group"], ignored["kind"]) == (seldon.GROUP, seldon.KIND)
    patched = {*seldon.weights_patch("fraud", split("fraud", 10))["spec"],
               *seldon.mirror_patch("fraud", CHALLENGER, 5)["spec"]}
    assert {p.split(".")[2].removesuffix("[]") for p in ignored["jqPathExpressions"]} == patched
    assert "RespectIgnoreDifferences=true" in seldon.ARGOCD_SYNC_OPTIONS


def _layout(tmp_path: Path) -> haproxy.Layout:
    return haproxy.Layout(tmp_path, "127.0.0.1", 18090, 18091, "127.0.0.1:18080", "127.0.0.1:18083", "127.0.0.1:18092")


def test_haproxy_config_has_one_backend_per_model_with_both_variants(tmp_path):
    text = haproxy.render(_layout(tmp_path), ["fraud", "sentiment"])
    for model in ("fraud", "sentiment"):
        block = text.split(f"backend model.{model}\n")[1].split("\n\n")[0]
        assert "balance roundrobin" in block
        assert "server champion 127.0.0.1:18080 weight 100" in block
        assert "server challenger 127.0.0.1:18083 weight 0" in block
        assert f"backend mirror.{model}\n    server champion 127.0.0.1:18092" in text
    assert "bind 127.0.0.1:18090" in text and "bind 127.0.0.1:18091" in text
    assert "use-service prometheus-exporter" in text
    assert f"stats socket {tmp_path / 'admin.sock'} mode 600 level admin" in text
    assert "http-response set-header X-Mlplat-Variant %s" in text
    assert "0.0.0.0" not in text and "bind *" not in text


def test_haproxy_config_keeps_the_saved_split(tmp_path):
    lay = _layout(tmp_path)
    lay.weights_path.write_text(json.dumps({"weights": {"fraud": {CHAMPION: 50, CHALLENGER: 50}}}))
    text = haproxy.render(lay, ["fraud"])
    assert "server champion 127.0.0.1:18080 weight 50" in text
    assert "server challenger 127.0.0.1:18083 weight 50" in text
    with pytest.raises(ValueError, match="cannot name a splitter backend"):
        haproxy.render(lay, ["fraud/../x"])


def test_the_runtime_api_refuses_a_command_that_would_smuggle_another(tmp_path):
    api = haproxy.RuntimeAPI(tmp_path / "admin.sock")
    with pytest.raises(ValueError, match="one runtime API command"):
        api.command("set weight model.fraud/champion 1; shutdown sessions")
    with pytest.raises(haproxy.SplitterError, match="does not answer"):
        api.command("show info")
