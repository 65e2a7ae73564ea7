"""Ordering: a custom resource can be created only after its CRD exists.

- every custom resource the program declares must depend, in the plan's dependency graph (directly or
  through other resources), on the release that installs its CRD;
- a release that renders custom resources of a CRD another release installs must depend on that
  release (Helm refuses a manifest whose kind the API server does not know yet);
- a release whose pods reference a Secret, ConfigMap or ServiceAccount the program declares must
  depend on it (otherwise `atomic` installs can time out on pods that cannot start).
"""

from __future__ import annotations

from infra.conformance.model import KubeObject, Problem
from infra.conformance.plan import Plan
from infra.conformance.schemas import CrdRegistry
from infra.conformance.selectors import pod_templates
from infra.conformance.wiring import pod_references


def check(plan: Plan, objects: list[KubeObject], crds: CrdRegistry) -> list[Problem]:
    problems = []
    seen_release_pairs: set[tuple[str, str]] = set()
    for obj in objects:
        if obj.derived:
            continue
        crd = crds.get(obj.api_version, obj.kind)
        if crd is None or crd.crd.urn is None:
            continue
        provider = crd.crd.urn
        if obj.release is None and obj.urn and not plan.depends_on(obj.urn, provider):
            problems.append(Problem("ordering", obj.where,
                                    f"does not depend on release {crd.crd.release}, which installs the CRD "
                                    f"{crd.crd.name}: it can be created before its kind exists", None))
        if obj.release is not None and obj.release != crd.crd.release and obj.urn:
            pair = (obj.release, str(crd.crd.release))
            if pair not in seen_release_pairs and not plan.depends_on(obj.urn, provider):
                seen_release_pairs.add(pair)
                problems.append(Problem("ordering", f"release {obj.release}",
                                        f"renders {obj.kind} but does not depend on release {crd.crd.release}, which "
                                        f"installs the CRD {crd.crd.name}", obj.release))
    own = {(o.kind, o.namespace, o.name): o for o in objects if o.release is None and not o.derived}
    for pod in pod_templates([o for o in objects if o.release is not None and not o.derived]):
        for kind, name, _key, where in pod_references(pod.spec):
            target = own.get((kind, pod.namespace, name))
            release_urn = pod.owner.urn
            if target is None or target.urn is None or release_urn is None:
                continue
            if not plan.depends_on(release_urn, target.urn):
                problems.append(Problem("ordering", f"release {pod.owner.release}",
                                        f"{pod.owner.ref} {where} needs {kind} {pod.namespace}/{name}, which the "
                                        "program declares, but the release does not depend on it",
                                        pod.owner.release))
    return problems
