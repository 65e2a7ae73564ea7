"""Model cards: one per registered version, generated from what the training pipeline knows.

`build` assembles the card from the training output (params, held-out metrics, per-segment metrics,
row counts), the model's plugin (data files, features, evaluation protocol, limitations), its spec
(description, intended use), the quality-gate result, the promotion policy and the data validations
(pandera). `log_card` stores it on the run that produced the version as `card/model_card.json` and
`card/MODEL_CARD.md`; `mlplat model card NAME [--version V]` reads it back (`load`) and shows it with
the version's current registry state (aliases, approval). Nothing in a card is typed by hand.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts import model_registry
from contracts.governance import (
    APPROVAL_REASON,
    APPROVAL_STATUS,
    APPROVED_AT,
    APPROVED_BY,
    CARD_DIR,
    CARD_JSON,
    CARD_MARKDOWN,
    VALIDATION_DIR,
    VALIDATION_PASSED,
)
from ml.model_plugin import load_plugin
from ml.training.outputs import IMPORTANCES_FILE

if TYPE_CHECKING:
    from ml.datasets.content import DatasetVersion
    from ml.training.outputs import RegistrationResult, TrainOutput
    from ml.training.validation import ValidationResult

FORMAT = 1
# Run and model-version tags naming the dataset version a run trained on (also its MLflow dataset input).
DATA_VERSION_TAG, DATA_MD5_TAG, DATA_URI_TAG = "mlplat.data.version", "mlplat.data.md5", "mlplat.data.uri"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_sources(files: list[Path], relative_to: Path | None = None) -> list[dict[str, Any]]:
    """Each file with its SHA-256; paths relative to the dataset version's root when there is one (the
    run read a temporary copy of it)."""
    return [{"file": p.name, "path": str(p.relative_to(relative_to) if relative_to else p), "sha256": sha256(p),
             "bytes": p.stat().st_size} for p in files]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def log_validations(results: list[ValidationResult]) -> dict[str, Any] | None:
    """Inside an active MLflow run: the validation reports as `validation/training.json`, tag
    `validation.passed`, metrics `validation.checks` / `validation.failures`. None when nothing ran."""
    if not results:
        return None
    import mlflow

    summary = {
        "library": results[0].library,
        "passed": all(r.passed for r in results),
        "schemas": sorted({r.schema for r in results}),
        "rows": sum(r.rows for r in results),
        "checks": sum(r.checks for r in results),
        "failures": sum(r.failure_count for r in results),
        "report": f"{VALIDATION_DIR}/training.json",
    }
    mlflow.log_dict({**summary, "results": [r.as_dict() for r in results]}, summary["report"])
    mlflow.set_tag(VALIDATION_PASSED, str(summary["passed"]).lower())
    mlflow.log_metrics({"validation.checks": summary["checks"], "validation.failures": summary["failures"]})
    return summary


def dataset_tags(dataset: DatasetVersion) -> dict[str, str]:
    return {DATA_VERSION_TAG: dataset.ref, DATA_MD5_TAG: dataset.md5, DATA_URI_TAG: dataset.uri}


def log_dataset(dataset: DatasetVersion) -> None:
    """Inside an active MLflow run: the dataset version as the run's training input (MLflow's dataset
    tracking: name, digest = the content hash, source = the address of the version's manifest object)."""
    from mlflow import log_input
    from mlflow.data.dataset_source_registry import get_registered_sources
    from mlflow.data.meta_dataset import MetaDataset

    # The artifact-repository source of the address's scheme (s3 or a local path), picked by type: MLflow's
    # resolver warns that a local path fits more than one source.
    kind = "s3" if dataset.uri.startswith("s3://") else "local"
    source_cls = next(s for s in get_registered_sources() if s._get_source_type() == kind)
    log_input(MetaDataset(source=source_cls(dataset.uri), name=dataset.name, digest=dataset.md5),
              context="training", tags={"version": dataset.ref, "files": str(dataset.files),
                                        "bytes": str(dataset.bytes)})


def build(out: TrainOutput, result: RegistrationResult, *, data_dir: Path | None = None,
          validation: dict[str, Any] | None = None, dataset: DatasetVersion | None = None) -> dict[str, Any]:

    spec = model_registry.get(out.name)
    plugin = load_plugin(out.name)
    files = plugin.data_files(Path(data_dir)) if data_dir is not None else []
    gate = result.gate
    return _jsonable({
        "format": FORMAT,
        "model": {"name": out.name, "description": spec.description, "version": result.version,
                  "run_id": result.run_id, "created": datetime.now(UTC).isoformat(timespec="seconds")},
        "intended_use": spec.intended_use,
        "limitations": list(plugin.limitations),
        "data": {"directory": str(data_dir) if data_dir is not None and dataset is None else None,
                 "version": dataset.as_dict() if dataset is not None else None,
                 "sources": data_sources(files, relative_to=Path(data_dir) if dataset is not None and data_dir
                                         else None),
                 "rows": {k: v for k, v in out.info.items() if "rows" in k or k == "positives"}},
        "features": plugin.feature_names(out.model_dir),
        "importances": _importances(out.model_dir),
        "training": {"params": out.params, "info": out.info},
        "evaluation": {"protocol": plugin.evaluation_protocol, "metrics": out.metrics, "segments": out.segments},
        "gates": {"passed": gate.passed, "summary": gate.summary(),
                  "checks": [{"metric": c.metric, "threshold": c.threshold, "value": c.value, "passed": c.passed}
                             for c in gate.checks]},
        "promotion": {"policy": result.promotion, "champion_at_registration": result.champion,
                      "pending_approval": result.pending_approval},
        "validation": validation,
    })


def _importances(model_dir: Path) -> dict[str, dict[str, float]] | None:
    """The global importances the artifact ships (ml/training/outputs.py IMPORTANCES_FILE), if any."""
    path = Path(model_dir) / IMPORTANCES_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def log_card(client: Any, run_id: str, card: dict[str, Any]) -> None:
    client.log_dict(run_id, card, f"{CARD_DIR}/{CARD_JSON}")
    client.log_text(run_id, render_markdown(card), f"{CARD_DIR}/{CARD_MARKDOWN}")


def load(client: Any, name: str, version: str | None = None) -> dict[str, Any]:
    """The card of `name` v`version` (default: the champion, else the challenger) with its current
    registry state under `registry` (aliases, approval tags)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if version is None:
        for alias in ("champion", "challenger"):
            try:
                version = str(client.get_model_version_by_alias(name, alias).version)
                break
            except MlflowException:
                continue
        if version is None:
            raise LookupError(f"{name} has no champion or challenger in the registry at {client.tracking_uri}")
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise LookupError(f"{name} has no version {version} in the registry at {client.tracking_uri}") from exc
    try:
        card = json.loads(Path(mlflow.artifacts.download_artifacts(
            run_id=mv.run_id, artifact_path=f"{CARD_DIR}/{CARD_JSON}", tracking_uri=client.tracking_uri)).read_text())
    except (MlflowException, OSError) as exc:
        raise LookupError(f"{name} v{version} (run {mv.run_id}) has no model card: it was registered before "
                          f"cards existed or by hand") from exc
    aliases = sorted(a for a in (mv.aliases or []))
    tags = dict(mv.tags)
    card["registry"] = {
        "aliases": aliases,
        "approval": {k.split(".", 1)[1]: tags[k] for k in (APPROVAL_STATUS, APPROVED_BY, APPROVAL_REASON, APPROVED_AT)
                     if k in tags} or None,
    }
    return card


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def render_markdown(card: dict[str, Any]) -> str:
    m = card["model"]
    lines = [f"# Model card: {m['name']} v{m['version']}", "", m["description"], "",
             f"Run `{m['run_id']}`, registered {m['created']}.", ""]
    registry = card.get("registry")
    if registry:
        approval = registry.get("approval")
        lines += [f"Registry now: aliases {', '.join(registry['aliases']) or 'none'}; approval: "
                  + (f"{approval.get('status')} by {approval.get('by')} at {approval.get('at')} "
                     f"({approval.get('reason')})" if approval else "none recorded"), ""]
    lines += ["## Intended use", "", card["intended_use"], ""]
    if card["limitations"]:
        lines += ["## Known limitations", "", *[f"- {x}" for x in card["limitations"]], ""]
    data = card["data"]
    version = data.get("version")
    lines += ["## Training data", ""]
    lines += ([f"Dataset version `{version['ref']}`: content MD5 `{version['md5']}` ({version['files']} file(s), "
               f"{version['bytes']} bytes), read by content address from `{version['location']}` (manifest "
               f"`{version['uri']}`).", ""] if version else [f"Directory: `{data['directory']}`", ""])
    if data["sources"]:
        lines += ["| File | Bytes | SHA-256 |", "|---|---|---|",
                  *[f"| {s['file']} | {s['bytes']} | `{s['sha256']}` |" for s in data["sources"]], ""]
    lines += ["Rows: " + ", ".join(f"{k}={v}" for k, v in data["rows"].items()), ""]
    lines += ["## Features", "", ", ".join(f"`{f}`" for f in card["features"]) or "(none recorded)", ""]
    importances = card.get("importances")
    if importances:
        measures = list(next(iter(importances.values())))
        lines += ["## Global feature importances", "",
                  "Most important first; `mean_abs_contribution` is the mean absolute contribution (log-odds) of "
                  "the feature in the explanations of the held-out rows, `gain_share` its share of the split gain.",
                  "", "| Feature | " + " | ".join(measures) + " |", "|---|" + "---|" * len(measures),
                  *[f"| `{name}` | " + " | ".join(_fmt(v.get(m, "")) for m in measures) + " |"
                    for name, v in importances.items()], ""]
    params = card["training"]["params"]
    lines += ["## Training parameters", "", *[f"- `{k}`: {json.dumps(v)}" for k, v in params.items()], ""]
    ev = card["evaluation"]
    lines += ["## Evaluation", "", ev["protocol"], "", "| Metric | Value |", "|---|---|",
              *[f"| {k} | {_fmt(v)} |" for k, v in ev["metrics"].items()], ""]
    if ev["segments"]:
        metrics = sorted({k for seg in ev["segments"].values() for k in seg})
        lines += ["Per segment (held-out rows):", "", "| Segment | " + " | ".join(metrics) + " |",
                  "|---|" + "---|" * len(metrics),
                  *[f"| {name} | " + " | ".join(_fmt(seg.get(k, "")) for k in metrics) + " |"
                    for name, seg in ev["segments"].items()], ""]
    gates = card["gates"]
    lines += ["## Quality gates", "", f"{'passed' if gates['passed'] else 'FAILED'}: {gates['summary']}", ""]
    promo = card["promotion"]
    lines += ["## Promotion", "", f"Policy `{promo['policy']}`; champion at registration: "
              f"{promo['champion_at_registration']}; waiting for approval: {promo['pending_approval']}", ""]
    val = card.get("validation")
    lines += ["## Data validation", ""]
    lines += ([f"{val['library']}: {'passed' if val['passed'] else 'FAILED'} — schemas {', '.join(val['schemas'])}, "
               f"{val['rows']} rows, {val['checks']} checks, {val['failures']} failures (run artifact "
               f"`{val['report']}`)", ""] if val else ["(no validation recorded)", ""])
    return "\n".join(lines)
