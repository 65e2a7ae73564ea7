"""The request mix of a load test: V2 bodies per served model, built from data with the shared data's schema.

Without a data directory each model's plugin generates its synthetic sample (the generator `mlplat local up`
uses, same schema as the shared datasets) and picks requests from it with its own `sample_requests`
(single transactions, single tweets, readers' histories), so the mix has the real shape and spread of
inputs: some rows name entities the online store holds, some do not (served degraded, as in production).
A model's explainer (`<name>-explainer`) gets the model's own requests.

The mix is plain JSON (`{"models": {name: [body, ...]}}`): `mlplat loadtest --save-requests FILE` writes it
where the data and model artifacts are, and the cluster's load-test Job reads it from a ConfigMap.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from contracts import model_registry
from contracts.errors import UserError
from ml.model_plugin import load_plugin

FORMAT = "mlplat-loadtest-requests/1"


class MixError(UserError, ValueError):
    """The request mix cannot be built or read; the message names the model or file."""


def served_names(models: list[str]) -> list[str]:
    """`models` plus the explainer of each that has one, in order."""
    out: list[str] = []
    for name in models:
        out.append(name)
        if name in model_registry.names():
            explainer = model_registry.get(name).explainer_name
            if explainer is not None:
                out.append(explainer)
    return out


def base_model(served: str) -> str:
    """The registered model whose requests `served` (a model or an explainer) takes."""
    for spec in model_registry.specs():
        if served in (spec.name, spec.explainer_name):
            return spec.name
    raise MixError(f"unknown model {served!r}; served names: {', '.join(served_names(list(model_registry.names())))}")


def _usable(body: dict[str, Any]) -> bool:
    # A reader whose history holds no book the model knows gives an empty tensor: not a request anyone sends.
    return all(int(inp.get("shape", [1])[0]) > 0 for inp in body.get("inputs", []))


def build(served: list[str], model_dirs: dict[str, Path | None], data_dir: Path | None = None, n: int = 200,
          seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Bodies per served name. `model_dirs`: registered model -> its serving artifact (some plugins pick
    inputs the model knows, e.g. books in its catalogue); None where it is not at hand."""
    bases = {name: base_model(name) for name in served}
    by_base: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="mlplat-loadtest-") as tmp:
        for base in dict.fromkeys(bases.values()):
            plugin = load_plugin(base)
            where = Path(data_dir) if data_dir is not None else Path(tmp)
            if data_dir is None:
                plugin.generate_sample(where, seed=seed)
            model_dir = model_dirs.get(base)
            try:
                bodies = plugin.sample_requests(where, model_dir, n=n, seed=seed)  # type: ignore[arg-type]
            except (OSError, ValueError, TypeError) as exc:
                need = " (it needs the model's artifact: --model-dir)" if model_dir is None else ""
                raise MixError(f"cannot build requests for {base} from {where}{need}: {type(exc).__name__}: {exc}") \
                    from exc
            bodies = [b for b in bodies if _usable(b)]
            if not bodies:
                raise MixError(f"no usable request for {base} from {where} (does its data match the model's?)")
            by_base[base] = bodies
    return {name: by_base[bases[name]] for name in served}


def save(mix: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps({"format": FORMAT, "models": mix}, separators=(",", ":")))
    return path


def load(path: Path) -> dict[str, list[dict[str, Any]]]:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise MixError(f"cannot read the request mix {path}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("models"), dict):
        raise MixError(f"{path} is not a request mix (`mlplat loadtest --save-requests` writes one; format {FORMAT})")
    empty = [name for name, bodies in doc["models"].items() if not isinstance(bodies, list) or not bodies]
    if empty:
        raise MixError(f"{path}: no requests for {', '.join(empty)}")
    return doc["models"]
