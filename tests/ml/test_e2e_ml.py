"""scripts/e2e_ml.py, the ML-environment steps of the e2e workflow: the smoke requests come from each
registered model's own plugin and sample data; a training run is waited for and only SUCCEEDED passes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from contracts import model_registry

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("e2e_ml", ROOT / "scripts" / "e2e_ml.py")
assert _spec is not None and _spec.loader is not None
e2e_ml = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e_ml)


def test_requests_cover_every_registered_model_with_a_v2_body(tmp_path):
    out = tmp_path / "e2e" / "requests.json"
    assert e2e_ml.main(["requests", str(out)]) == 0
    bodies = json.loads(out.read_text())
    assert list(bodies) == [s.name for s in model_registry.specs()]
    for model, body in bodies.items():
        assert isinstance(body["inputs"], list) and body["inputs"], model
        assert all({"name", "shape", "datatype", "data"} <= set(t) for t in body["inputs"]), model


@pytest.mark.parametrize(("state", "code"), [("SUCCEEDED", 0), ("FAILED", 1)])
def test_train_waits_for_the_run_and_passes_only_when_it_succeeded(monkeypatch, capsys, state, code):
    calls: list[Any] = []

    def start(host: str, model: str, params: dict[str, Any], trigger: str) -> dict[str, Any]:
        calls.append(("start", host, model, params, trigger))
        return {"run_id": "run-1"}

    class Client:
        def __init__(self, host: str) -> None:
            calls.append(("client", host))

        def wait_for_run_completion(self, run_id: str, timeout: int) -> Any:
            calls.append(("wait", run_id, timeout))
            return SimpleNamespace(state=state)

    monkeypatch.setattr(e2e_ml, "run_on_cluster", start)
    monkeypatch.setattr(e2e_ml.kfp, "Client", Client)
    assert e2e_ml.main(["train", "fraud", "--host", "http://127.0.0.1:8888", "--timeout", "60"]) == code
    assert calls == [("start", "http://127.0.0.1:8888", "fraud", {}, "e2e"), ("client", "http://127.0.0.1:8888"),
                     ("wait", "run-1", 60)]
    assert capsys.readouterr().out.strip() == f"training pipeline of fraud: {state}"
