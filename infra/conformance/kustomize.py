"""Kustomize overlays of the plan (`kubernetes:kustomize/v2:Directory`), read offline from the release tree.

No Python kustomize engine installs here (none has a wheel for this platform), and `pulumi up` renders
the overlay with the Kubernetes provider's own kustomize. What this module does is a structural reading
of the release's tree, from the tree-digest-checked tarball of infra/conformance/manifests.py
(`kubeflow-pipelines-manifests-<version>.tar.gz`, from the upstream tag or the mirror) and the overlay
the program wrote:

- every remote base of the overlay must be a path of the release's tree at the BOM's tag;
- resources are collected through the local kustomizations of that tree (files and folders), with their
  `namespace`, `labels` (including selectors), `images`, `configMapGenerator`/`secretGenerator` (literals
  and env files) and strategic-merge or JSON patches (`$patch: delete` / `replace` included);
- the overlay's own deletes and patches are applied the same way, and each must hit an object.

Not read: `replacements` (they copy values, e.g. a host name into an argument), remote bases *inside* the
release's tree (the Argo Workflows manifests, which the program installs from their chart instead), and
anything kustomize does beyond the above. The objects are validated and wired like the chart objects;
docs/CONFORMANCE.md says what this proves and what only a real `kustomize build` shows.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from infra.conformance.model import CLUSTER_SCOPED, KubeObject, Problem

REMOTE = "https://github.com/kubeflow/pipelines/manifests/kustomize/"


class _Loader(yaml.SafeLoader):
    """YAML as kustomize reads it: a bare `=` (a `replacements` delimiter) is a string, not YAML 1.1's value tag."""


_Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:value"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def _load_all(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=_Loader))


@dataclass
class Rendered:
    objects: list[KubeObject] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Tree:
    """The files of the release's kustomize tree (paths relative to manifests/kustomize/), as
    infra/conformance/manifests.py accepted them."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def is_dir(self, path: str) -> bool:
        return any(f.startswith(path.rstrip("/") + "/") for f in self.files)

    def read(self, path: str) -> str:
        return self.files[path].decode()


def _norm(path: str) -> str:
    parts: list[str] = []
    for part in PurePosixPath(path).parts:
        if part == "..":
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge, as far as the trees here need it: maps deep-merge, lists of named maps merge by
    `name`, `$patch: replace` in a list replaces it, other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if key == "$patch":
                continue
            out[key] = _merge(base.get(key), value) if key in base else _strip(value)
        return out
    if isinstance(base, list) and isinstance(patch, list):
        if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
            return [_strip(p) for p in patch if not (isinstance(p, dict) and p.get("$patch") == "replace")]
        if all(isinstance(x, dict) and "name" in x for x in [*base, *patch]):
            out = [dict(x) for x in base]
            for item in patch:
                match = next((i for i, x in enumerate(out) if x["name"] == item["name"]), None)
                if match is None:
                    out.append(_strip(item))
                else:
                    out[match] = _merge(out[match], item)
            return out
    return _strip(patch)


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "$patch"}
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, dict) and set(v) == {"$patch"})]
    return value


def _json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        target: Any = doc
        for part in parts[:-1]:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        last = parts[-1]
        if isinstance(target, list):
            if last == "-":
                target.append(copy.deepcopy(op["value"]))
            elif op["op"] == "add":
                target.insert(int(last), copy.deepcopy(op["value"]))
            elif op["op"] == "remove":
                target.pop(int(last))
            else:
                target[int(last)] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            target.pop(last, None)
        else:
            target[last] = copy.deepcopy(op["value"])


def _key(doc: dict[str, Any]) -> tuple[str, str]:
    return str(doc.get("kind")), str((doc.get("metadata") or {}).get("name"))


def _selects(target: dict[str, Any], doc: dict[str, Any]) -> bool:
    return all(str(target[k]) == v for k, v in (("kind", str(doc.get("kind"))),
                                                 ("name", str((doc.get("metadata") or {}).get("name"))))
               if k in target)


def _env_file(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value
    return out


def _labelled(doc: dict[str, Any], pairs: dict[str, str], selectors: bool) -> None:
    doc.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
    if not selectors:
        return
    spec = doc.get("spec") or {}
    if doc.get("kind") == "Service" and "selector" in spec:
        spec["selector"] = {**(spec.get("selector") or {}), **pairs}
    elif isinstance(spec.get("template"), dict):
        spec.setdefault("selector", {}).setdefault("matchLabels", {}).update(pairs)
        spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def _images(doc: Any, images: list[dict[str, Any]]) -> None:
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "image" and isinstance(value, str):
                name = value.split("@")[0].rsplit(":", 1)[0] if ":" in value.rsplit("/", 1)[-1] else value
                for img in images:
                    if img.get("name") == name:
                        doc[key] = f"{img.get('newName', name)}:{img['newTag']}" if "newTag" in img else \
                            img.get("newName", name)
            else:
                _images(value, images)
    elif isinstance(doc, list):
        for item in doc:
            _images(item, images)


class Builder:
    def __init__(self, tree: Tree, result: Rendered) -> None:
        self.tree, self.result = tree, result

    def build(self, folder: str) -> list[dict[str, Any]]:
        """The documents of the kustomization in `folder` (a path of the tree)."""
        k = _load(self.tree.read(f"{folder}/kustomization.yaml"))
        docs: list[dict[str, Any]] = []
        for res in (k.get("resources") or []) + (k.get("bases") or []):
            if "://" in res or res.startswith("github.com"):
                self.result.notes.append(f"{folder}: remote base {res} not read offline")
                continue
            path = _norm(f"{folder}/{res}")
            if self.tree.is_dir(path):
                docs.extend(self.build(path))
            elif path in self.tree.files:
                docs.extend(d for d in _load_all(self.tree.read(path)) if d)
            else:
                self.result.problems.append(Problem("kustomize", folder, f"resource {res} is not in the tree"))
        return self.transform(docs, k, folder)

    def generated(self, k: dict[str, Any], folder: str) -> list[dict[str, Any]]:
        out = []
        for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
            for gen in k.get(key) or []:
                data: dict[str, str] = {}
                for literal in gen.get("literals") or []:
                    name, _, value = literal.partition("=")
                    data[name] = value
                for env in gen.get("envs") or []:
                    data.update(_env_file(self.tree.read(_norm(f"{folder}/{env}"))))
                out.append({"apiVersion": "v1", "kind": kind, "metadata": {"name": gen["name"]},
                            ("stringData" if kind == "Secret" else "data"): data})
        return out

    def transform(self, docs: list[dict[str, Any]], k: dict[str, Any], folder: str) -> list[dict[str, Any]]:
        docs = docs + self.generated(k, folder)
        for patch in k.get("patches") or []:
            text = self.tree.read(_norm(f"{folder}/{patch['path']}")) if "path" in patch else patch["patch"]
            docs = apply_patch(docs, _load(text), patch.get("target"), folder, self.result)
        for patch in k.get("patchesStrategicMerge") or []:
            docs = apply_patch(docs, _load(self.tree.read(_norm(f"{folder}/{patch}"))), None, folder,
                               self.result)
        for entry in k.get("labels") or []:
            for doc in docs:
                _labelled(doc, entry.get("pairs") or {}, bool(entry.get("includeSelectors")))
        for doc in docs:
            _labelled(doc, k.get("commonLabels") or {}, True) if k.get("commonLabels") else None
            if k.get("images"):
                _images(doc, k["images"])
            if k.get("namespace") and doc.get("kind") not in CLUSTER_SCOPED:
                doc.setdefault("metadata", {})["namespace"] = k["namespace"]
        return docs


def apply_patch(docs: list[dict[str, Any]], patch: Any, target: dict[str, Any] | None, where: str,
                result: Rendered) -> list[dict[str, Any]]:
    """One strategic-merge (a map) or JSON (a list of ops, with `target`) patch; it must hit an object."""
    if isinstance(patch, list):
        hits = [d for d in docs if _selects(target or {}, d)]
        for doc in hits:
            _json_patch(doc, patch)
    else:
        kind, name = _key(patch)
        hits = [d for d in docs if _key(d) == (kind, name)]
        if patch.get("$patch") == "delete":
            docs = [d for d in docs if _key(d) != (kind, name)]
        else:
            for i, doc in enumerate(docs):
                if _key(doc) == (kind, name):
                    docs[i] = _merge(doc, patch)
    if not hits:
        what = target if isinstance(patch, list) else f"{_key(patch)[0]} {_key(patch)[1]}"
        result.problems.append(Problem("kustomize", where, f"patch {what} matches no object of the tree"))
    return docs


def render(overlay: Path, files: dict[str, bytes], version: str) -> Rendered:
    """Read `overlay/kustomization.yaml` over the release's tree (`files`, from manifests.TreeStore.tree)."""
    result = Rendered()
    tree = Tree(files)
    k = _load((overlay / "kustomization.yaml").read_text())
    builder = Builder(tree, result)
    docs: list[dict[str, Any]] = []
    for res in k.get("resources") or []:
        base, _, ref = res.partition("?ref=")
        if not base.startswith(REMOTE):
            result.problems.append(Problem("kustomize", str(overlay), f"resource {res} is not a path of {REMOTE}"))
            continue
        if ref != version:
            result.problems.append(Problem("kustomize", str(overlay), f"{res} is not at the BOM's tag {version}"))
        path = base[len(REMOTE):].strip("/")
        if not tree.is_dir(path) or f"{path}/kustomization.yaml" not in tree.files:
            result.problems.append(Problem("kustomize", str(overlay), f"{path} is not a kustomization of {version}"))
            continue
        docs.extend(builder.build(path))
    docs = builder.transform(docs, {**k, "resources": []}, str(overlay))
    for doc in docs:
        name = (doc.get("metadata") or {}).get("name")
        result.objects.append(KubeObject(doc, origin=f"kustomize {overlay.name}: {doc.get('kind')} {name}"))
    return result


__all__ = ["Rendered", "apply_patch", "render"]
