"""The deploy tree Argo CD applies, and one owner per object.

When the plan declares the model ApplicationSet (infra/workloads/gitops.py), the objects of the stack's
deploy tree (contracts/deploy_tree.py, rendered from the stack file with the plan's models bucket) join
the run: they are validated against the Seldon CRD schemas like every other object, and `check` proves the
line between Pulumi and Argo CD:
- no object (kind, namespace, name) is both declared by the plan (or rendered by its releases) and in the tree;
- every Application the ApplicationSet generates points at a folder of the tree and at a namespace the plan
  creates, inside the destinations of its AppProject;
- the AppProject admits exactly the kinds the tree holds, and no cluster-scoped kind.
"""

from __future__ import annotations

from typing import Any

from contracts import deploy_tree
from infra.conformance.model import KubeObject, Problem
from infra.conformance.plan import Plan
from stacks.config import load_stack_file, stack_file
from stacks.delivery import model_releases

CHECK = "ownership"
RELEASE = "deploy tree (Argo CD)"
BUCKET_TYPE = "aws:s3/bucket:Bucket"
MODELS_BUCKET = "data-storage-models"


def _one(objects: list[KubeObject], kind: str) -> KubeObject | None:
    return next((o for o in objects if o.kind == kind and o.api_version.startswith("argoproj.io/")), None)


def _bucket(plan: Plan) -> str:
    for urn, type_ in plan.types.items():
        if type_ == BUCKET_TYPE and urn.endswith(f"::{MODELS_BUCKET}"):
            return str(plan.inputs[urn].get("bucket") or "")
    return ""


def tree_objects(plan: Plan) -> list[KubeObject]:
    """The deploy tree of the plan's stack, or nothing when the plan declares no ApplicationSet."""
    if _one(plan.objects, "ApplicationSet") is None:
        return []
    cfg = load_stack_file(stack_file(plan.stack))
    rendered = deploy_tree.objects(cfg.environment, _bucket(plan) or "models-bucket", model_releases(cfg))
    prefix = f"{cfg.workloads.gitops.path}/"
    return [KubeObject(obj, origin=f"deploy tree {prefix}{path}", release=RELEASE) for path, obj in rendered.items()]


def _key(obj: KubeObject) -> tuple[str, str, str]:
    return (obj.kind, obj.namespace, obj.name)


def _elements(appset: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for g in appset.get("spec", {}).get("generators", []) for e in (g.get("list") or {}).get("elements", [])]


def check(plan: Plan, objects: list[KubeObject], tree: list[KubeObject]) -> list[Problem]:
    """`objects`: everything the plan declares and its releases render; `tree`: `tree_objects(plan)`."""
    appset_obj = _one(plan.objects, "ApplicationSet")
    if appset_obj is None:
        return []
    problems: list[Problem] = []
    subject = appset_obj.where
    owned_by_pulumi = {_key(o): o for o in objects if o.release != RELEASE and not o.derived}
    for obj in tree:
        if _key(obj) in owned_by_pulumi:
            problems.append(Problem(CHECK, obj.where, f"is also declared by {owned_by_pulumi[_key(obj)].where}: two "
                                    "owners (Pulumi and Argo CD) would undo each other's changes"))
    namespaces = {o.name for o in objects if o.kind == "Namespace"}
    project_obj = _one(plan.objects, "AppProject")
    appset = appset_obj.manifest
    template = appset["spec"]["template"]["spec"]
    destination = template["destination"]["namespace"]
    folders = {o.origin.removeprefix("deploy tree ").rsplit("/", 1)[0] for o in tree}
    for element in _elements(appset):
        app = f"Application {element.get('model')}-{element.get('environment')} ({subject})"
        if element.get("path") not in folders:
            problems.append(Problem(CHECK, app, f"path {element.get('path')!r} is no folder of the deploy tree "
                                    f"({', '.join(sorted(folders)) or 'empty'})"))
    if destination not in namespaces:
        problems.append(Problem(CHECK, subject, f"destination namespace {destination!r} is not created by the plan"))
    for obj in tree:
        if obj.namespace != destination:
            problems.append(Problem(CHECK, obj.where, f"is in namespace {obj.namespace!r}, the Applications deploy "
                                    f"to {destination!r}"))
    if project_obj is None or project_obj.name != template.get("project"):
        problems.append(Problem(CHECK, subject, f"project {template.get('project')!r} is not declared by the plan"))
        return problems
    project = project_obj.manifest["spec"]
    allowed = {(w.get("group", ""), w.get("kind", "")) for w in project.get("namespaceResourceWhitelist", [])}
    held = {(o.group, o.kind) for o in tree}
    if allowed != held:
        problems.append(Problem(CHECK, project_obj.where, f"admits {sorted(allowed)}, the deploy tree holds "
                                f"{sorted(held)}: the project must admit exactly what the tree holds"))
    if project.get("clusterResourceWhitelist"):
        problems.append(Problem(CHECK, project_obj.where, "admits cluster-scoped kinds; the deploy tree holds none"))
    if {(d.get("server"), d.get("namespace")) for d in project.get("destinations", [])} != {
            (template["destination"].get("server"), destination)}:
        problems.append(Problem(CHECK, project_obj.where, f"destinations {project.get('destinations')} differ from "
                                f"the Applications' {template['destination']}"))
    if template["source"].get("repoURL") not in project.get("sourceRepos", []):
        problems.append(Problem(CHECK, project_obj.where, "does not admit the Applications' repository "
                                f"{template['source'].get('repoURL')!r}"))
    return problems
