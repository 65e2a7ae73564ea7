"""The repository layout as a contract: each top-level folder is one concern and one Python environment.

A file's folder says which environment runs it and what it may import (README, "Repository layout");
these tests read every module's imports statically (no import is executed) and fail on a crossing.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"contracts", "stacks", "infra", "ml", "local", "runbooks", "policies", "mlplat"}
PULUMI = {"pulumi", "pulumi_aws", "pulumi_kubernetes", "pulumi_random", "pulumi_policy"}
ML_LIBS = {"mlflow", "feast", "mlserver", "lightgbm", "onnxruntime", "sklearn", "pandas", "numpy", "scipy"}

# folder -> (packages of ours it may import, third-party top-level names it must not import)
BOUNDARIES: dict[str, tuple[set[str], set[str]]] = {
    "contracts": ({"contracts"}, {"*"}),  # standard library only
    "stacks": ({"stacks", "contracts"}, PULUMI | ML_LIBS),
    "infra": ({"infra", "stacks", "contracts", "policies"}, ML_LIBS),
    "ml": ({"ml", "stacks", "contracts"}, PULUMI),
    "local": ({"local", "ml", "stacks", "contracts"}, PULUMI),
    "runbooks": ({"runbooks", "ml", "local", "stacks", "contracts"}, PULUMI - {"pulumi_policy"}),
    "policies": ({"policies", "contracts"}, (PULUMI - {"pulumi_policy"}) | ML_LIBS),
    "mlplat": ({"mlplat"}, {"*"}),  # the dispatcher imports subcommand modules by name, at run time
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def _stdlib(name: str) -> bool:
    return name in sys.stdlib_module_names or name == "__future__"


def _violations(folder: str) -> list[str]:
    allowed_ours, banned = BOUNDARIES[folder]
    problems = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, name in _imports(path):
            where = f"{path.relative_to(ROOT)}:{line} imports {name}"
            if name in OURS and name not in allowed_ours:
                problems.append(f"{where} (a {folder}/ module may import only {sorted(allowed_ours)} of ours)")
            elif name not in OURS and not _stdlib(name) and ("*" in banned or name in banned):
                problems.append(f"{where} (not allowed in {folder}/)")
    return problems


@pytest.mark.parametrize("folder", sorted(BOUNDARIES))
def test_import_boundaries(folder):
    assert _violations(folder) == []


def test_boundary_checker_catches_a_crossing(tmp_path, monkeypatch):
    """The checker is not vacuous: a pulumi import under ml/ and an ml import under infra/ are caught."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "bad.py").write_text("import pulumi\nfrom infra.aws import network\n")
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "bad.py").write_text("from ml.training import gates\nimport mlflow\n")
    assert [p.split(" (")[0] for p in _violations("ml")] == ["ml/bad.py:1 imports pulumi", "ml/bad.py:2 imports infra"]
    assert [p.split(" (")[0] for p in _violations("infra")] == ["infra/bad.py:1 imports ml",
                                                                 "infra/bad.py:2 imports mlflow"]


def _spec_module_violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    relative = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]
    problems = [f"{path.relative_to(ROOT)}:{line} relative import" for line in relative]
    return problems + [f"{path.relative_to(ROOT)}:{line} imports {name}" for line, name in _imports(path)
                       if name != "contracts" and not _stdlib(name)]


def test_model_spec_modules_import_only_the_standard_library_and_contracts():
    """The IaC environment loads every spec module (contracts/model_registry.py), where no ML library and
    no ml/ code may be imported: a spec module is data built from contracts/models.py only."""
    from contracts.model_registry import BUILTIN_SPEC_MODULES

    spec_files = sorted((ROOT / "ml" / "models").glob("*/spec.py"))
    listed = {ROOT / (m.replace(".", "/") + ".py") for m in BUILTIN_SPEC_MODULES}
    assert set(spec_files) == listed, "every ml/models/<name>/spec.py is listed in BUILTIN_SPEC_MODULES"
    assert [p for f in spec_files for p in _spec_module_violations(f)] == []


def test_spec_module_check_catches_an_ml_import(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    bad = tmp_path / "spec.py"
    bad.write_text("from contracts.models import ModelSpec\nimport numpy\nfrom ml.training import gates\n"
                   "from . import runtime\n")
    assert sorted(_spec_module_violations(bad)) == ["spec.py:2 imports numpy", "spec.py:3 imports ml",
                                                    "spec.py:4 relative import"]


def test_composition_root_imports_only_infra_side():
    names = {name for _, name in _imports(ROOT / "__main__.py")}
    assert names <= {"infra", "stacks", "contracts", "pulumi", "pulumi_aws"}, names


def test_no_stray_top_level_python_packages():
    """A new top-level package must be given a row in the README table and a boundary here."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages == OURS, f"unexpected top-level packages: {sorted(packages ^ OURS)}"


# The model-server image: only what serving and training import.
IMAGE_ALLOWED = {"requirements/ml.txt", "pyproject.toml", "README.md", "mlplat/", "contracts/", "stacks/", "ml/"}


def _copied_sources(dockerfile: str) -> list[str]:
    sources = []
    for line in dockerfile.splitlines():
        parts = line.split()
        if parts and parts[0].upper() in {"COPY", "ADD"}:
            args = [p for p in parts[1:] if not p.startswith("--")]
            sources += args[:-1]
    return sources


def test_model_server_image_copies_no_infrastructure_code():
    copied = _copied_sources((ROOT / "docker" / "model-server" / "Dockerfile").read_text())
    assert copied, "the Dockerfile copies nothing: the parser is out of date"
    assert set(copied) <= IMAGE_ALLOWED, f"copies more than serving needs: {sorted(set(copied) - IMAGE_ALLOWED)}"


@pytest.mark.parametrize("line", ["COPY infra/ infra/", "COPY . .", "ADD --chown=1 runbooks/ runbooks/",
                                  "COPY ml/ policies/ /opt/"])
def test_image_check_rejects_infrastructure(line):
    assert not set(_copied_sources(line)) <= IMAGE_ALLOWED


# Every repository path named in docs, docstrings and comments exists.
PATH_RE = re.compile(r"(?<![\w./:~$<{-])((?:\.ci|\.github|[a-z_][\w-]*)/(?:[\w.-]+/)*[\w.-]*)")
TOP = {p.name for p in ROOT.iterdir() if not p.name.startswith(".") or p.name in {".ci", ".github"}}
IGNORED_PREFIXES = (".local/", "build/", ".cache/", "out/")
# (file, path) pairs that name a path on purpose although it does not exist in this revision.
DELIBERATE = {
    ("infra/cli/diff.py", "mlplat/synth.py"),  # where synthesis lived in revisions before the restructure
    ("tests/infra/test_layout.py", "tests/unit/test_bom.py"),  # the checker's own examples
    ("tests/infra/test_layout.py", "ml/bad.py"),
    ("tests/infra/test_layout.py", "mlplat/synth.py"),
    ("tests/infra/test_layout.py", "infra/bad.py"),
    ("tests/infra/test_layout.py", "infra/seldon.py"),
    ("infra/conformance/pss_checks.py", "docker/default"),  # a seccomp annotation value, not a path
    ("tests/infra/test_layout.py", "docker/default"),
    ("tests/infra/test_docs.py", "scripts/nowhere.py"),  # the benchmark-command check's own example of a missing script
    ("tests/infra/test_layout.py", "scripts/nowhere.py"),
}


def _text_sources() -> list[Path]:
    files = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("runbooks/*.md"), *ROOT.glob("ml/**/*.md"),
             *ROOT.glob("docker/**/Dockerfile"), ROOT / "Makefile", *ROOT.glob("scripts/*.sh"),
             ROOT / "pyproject.toml", ROOT / "Pulumi.yaml", *ROOT.glob(".github/workflows/*.yml"),
             *ROOT.glob("policies/*.yaml"), *ROOT.glob("stacks/*.yaml")]
    for folder in (*OURS, "tests"):
        files += [p for p in (ROOT / folder).rglob("*.py")]
    files.append(ROOT / "__main__.py")
    return [f for f in files if f.is_file()]


def _mentioned_paths(text: str) -> set[str]:
    found = set()
    for match in PATH_RE.finditer(text):
        path = match.group(1).rstrip(".,;:)")
        head = path.split("/")[0]
        placeholder = text[match.end():match.end() + 1] in {"<", "{", "*", "$", "\\"}
        if placeholder or head not in TOP or path.startswith(IGNORED_PREFIXES) or any(c in path for c in "*<>{}$"):
            continue
        found.add(path)
    return found


def test_every_repository_path_mentioned_exists():
    missing = []
    for source in _text_sources():
        text = source.read_text(errors="replace")
        if source.suffix == ".py":  # comments and docstrings/strings only: code names are checked by imports
            text = "\n".join(line for line in text.splitlines() if "#" in line or '"' in line or "'" in line)
        for path in sorted(_mentioned_paths(text)):
            if not (ROOT / path).exists() and (str(source.relative_to(ROOT)), path) not in DELIBERATE:
                missing.append(f"{source.relative_to(ROOT)}: {path}")
    assert missing == []


def test_path_check_finds_a_missing_path():
    assert _mentioned_paths("see tests/unit/test_bom.py and infra/aws/cluster.py, stacks/Pulumi.<env>.yaml") == {
        "tests/unit/test_bom.py", "infra/aws/cluster.py"}


# No model is named outside its own package and the registry (tests and docs aside). The stack files are
# per-environment configuration keyed by model name, which is where such values belong.
MODEL_NAME_FOLDERS = ("contracts", "stacks", "infra", "ml", "local", "runbooks", "policies", "mlplat")
MODEL_NAME_EXEMPT = ("contracts/model_registry.py",)


def _model_name_mentions(names: list[str]) -> list[str]:
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    found = []
    for folder in MODEL_NAME_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            rel = path.relative_to(ROOT)
            if path.suffix not in {".py", ".json", ".yaml", ".yml", ".j2"} or rel.parts[:2] == ("ml", "models"):
                continue
            if str(rel) in MODEL_NAME_EXEMPT or (rel.parts[0] == "stacks" and path.name.startswith("Pulumi.")):
                continue
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if pattern.search(line):
                    found.append(f"{rel}:{n}: {line.strip()[:80]}")
    return found


def test_no_model_is_named_outside_its_package_and_the_registry():
    from contracts.model_registry import names

    assert _model_name_mentions(list(names())) == []


def test_model_name_check_finds_a_mention(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "seldon.py").write_text("SIZES = {'fraud': 2}\n")
    assert _model_name_mentions(["fraud"]) == ["infra/seldon.py:1: SIZES = {'fraud': 2}"]


# One meaning per name. "pipeline" is the Kubeflow pipeline (ml/pipelines/); a model's fit entry point is
# its `train.py`. In the ML code (ml/, local/) a file name says one thing: two modules share it only when
# they play the same role in sibling packages (each model's spec.py, plugin.py, train.py, ...).
ML_CODE = ("ml", "local")


def _shared_file_names(folders: tuple[str, ...]) -> list[str]:
    seen: dict[str, list[Path]] = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            if path.name != "__init__.py":
                seen.setdefault(path.name, []).append(path.relative_to(ROOT))
    problems = []
    for name, paths in sorted(seen.items()):
        siblings = len({p.parent.parent for p in paths}) == 1 and len({p.parent for p in paths}) == len(paths)
        if len(paths) > 1 and not siblings:
            problems.append(f"{name}: {', '.join(sorted(map(str, paths)))}")
    return problems


def test_ml_module_names_say_one_thing():
    assert _shared_file_names(ML_CODE) == []


def test_pipeline_modules_are_the_kubeflow_pipelines_only():
    found = [p.relative_to(ROOT) for folder in OURS for p in (ROOT / folder).rglob("pipeline.py")]
    assert [str(p) for p in found if p.parts[:2] != ("ml", "pipelines")] == []


def test_name_check_allows_siblings_only(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    for rel in ("app/models/a/train.py", "app/models/b/train.py", "app/serving/metrics.py", "lib/metrics.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    assert _shared_file_names(("app", "lib")) == ["metrics.py: app/serving/metrics.py, lib/metrics.py"]
