"""Schemas of everything that would reach the API server.

Core kinds: the Kubernetes OpenAPI of the stack's version as kubernetes-validate ships it (strict
variant: unknown fields are errors). Custom kinds: the `openAPIV3Schema` of the served version of the
CRD that a pinned chart installs, made strict the way the API server's field validation is: an object
schema with `properties` and neither `additionalProperties` nor `x-kubernetes-preserve-unknown-fields`
rejects other fields; `x-kubernetes-int-or-string`, `nullable` and embedded resources as the API
server reads them. Null values are dropped first, as the API server does for fields that are not
nullable. A kind with neither schema is an error: nothing is skipped."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from infra.conformance.model import CLUSTER_SCOPED, KubeObject, Problem

MAX_ERRORS_PER_OBJECT = 5


def strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


def _strict(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node.get("x-kubernetes-int-or-string"):
        node.pop("type", None)
        node.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    props = node.get("properties")
    if node.get("x-kubernetes-embedded-resource"):
        props = node.setdefault("properties", {})
        for key in ("apiVersion", "kind"):
            props.setdefault(key, {"type": "string"})
        props.setdefault("metadata", {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    if props is not None and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        node["additionalProperties"] = False
    for key in ("properties", "patternProperties"):
        for child in (node.get(key) or {}).values():
            _strict(child)
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            _strict(node[key])
    for key in ("allOf", "anyOf", "oneOf"):
        for child in node.get(key) or []:
            _strict(child)
    return node


def strict_crd_schema(schema: dict[str, Any]) -> dict[str, Any]:
    out = _strict(copy.deepcopy(schema))
    props = out.setdefault("properties", {})
    for key in ("apiVersion", "kind"):
        props.setdefault(key, {"type": "string"})
    props.setdefault("metadata", {"type": "object"})
    out.pop("additionalProperties", None) if out.get("x-kubernetes-preserve-unknown-fields") else None
    return out


@dataclass
class CrdVersion:
    group_version: str
    kind: str
    namespaced: bool
    schema: dict[str, Any] | None
    crd: KubeObject  # the CRD object (release / urn that installs it)
    _validator: Any = None

    def validator(self) -> Any:
        if self._validator is None and self.schema is not None:
            self._validator = jsonschema.Draft7Validator(strict_crd_schema(self.schema))
        return self._validator


class CrdRegistry:
    """group/version + kind -> the CRD version that serves it."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], CrdVersion] = {}

    def add(self, crd: KubeObject) -> None:
        spec = crd.manifest.get("spec") or {}
        group, kind = spec.get("group"), (spec.get("names") or {}).get("kind")
        for version in spec.get("versions") or []:
            if not version.get("served", True):
                continue
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            key = (f"{group}/{version['name']}", kind)
            self.versions.setdefault(key, CrdVersion(key[0], kind, spec.get("scope") != "Cluster", schema, crd))

    def get(self, api_version: str, kind: str) -> CrdVersion | None:
        return self.versions.get((api_version, kind))

    def namespaced(self, manifest: dict[str, Any]) -> bool:
        found = self.get(str(manifest.get("apiVersion")), str(manifest.get("kind")))
        if found is not None:
            return found.namespaced
        return manifest.get("kind") not in CLUSTER_SCOPED


class CoreSchemas:
    """Kubernetes OpenAPI (JSON schema form) of one minor version, from kubernetes-validate's files."""

    def __init__(self, kubernetes_version: str) -> None:
        import kubernetes_validate.utils as kv
        import referencing

        wanted = kv.major_minor(kubernetes_version)
        available = [v for v in kv.all_versions() if _minor_key(kv.major_minor(v)) <= _minor_key(wanted)]
        if not available or kv.major_minor(available[-1]) != wanted:
            raise LookupError(f"kubernetes-validate {kv.__version__} has no schemas for Kubernetes {wanted} "
                              f"(it has {kv.all_versions()[0]}..{kv.latest_version()})")
        self.version = available[-1]
        self.dir = Path(str(kv.importlib_resources.files("kubernetes_validate"))) / "kubernetes-json-schema" \
            / f"v{self.version}-local-strict"
        defs = json.loads((self.dir / "_definitions.json").read_text())
        self._registry = referencing.Resource.from_contents(defs) @ referencing.Registry()
        self._validators: dict[tuple[str, str], Any] = {}

    def validator(self, api_version: str, kind: str) -> Any | None:
        key = (api_version, kind)
        if key not in self._validators:
            import re

            api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
            path = self.dir / f"{kind.lower()}-{api}.json"
            if not path.exists():
                self._validators[key] = None
            else:
                schema = json.loads(path.read_text())
                self._validators[key] = jsonschema.Draft202012Validator(schema, registry=self._registry)
        return self._validators[key]


def _minor_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:2])


@lru_cache(maxsize=4)
def core_schemas(kubernetes_version: str) -> CoreSchemas:
    return CoreSchemas(kubernetes_version)


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(root)"


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties" and error.validator_value is False:
        return error.message.replace("Additional properties are not allowed", "unknown field")
    text = error.message
    return text if len(text) <= 240 else text[:237] + "..."


def validate_object(obj: KubeObject, core: CoreSchemas, crds: CrdRegistry) -> list[Problem]:
    manifest = strip_nulls(obj.manifest)
    crd = crds.get(obj.api_version, obj.kind)
    if crd is not None:
        validator = crd.validator()
        source = f"CRD {crd.crd.name} ({crd.crd.origin})"
        if validator is None:
            return [Problem("schema", obj.where, f"{source} has no openAPIV3Schema for {obj.api_version}",
                            obj.release)]
    else:
        validator = core.validator(obj.api_version, obj.kind)
        if validator is None:
            return [Problem("schema", obj.where,
                            f"no schema: {obj.api_version} {obj.kind} is neither in Kubernetes {core.version} "
                            "nor in a CRD that a release of this plan installs", obj.release)]
    errors = sorted(validator.iter_errors(manifest), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [Problem("schema", obj.where, f"{_path(e)}: {_message(e)}", obj.release)
            for e in errors[:MAX_ERRORS_PER_OBJECT]]
