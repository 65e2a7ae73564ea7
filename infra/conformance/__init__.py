"""Conformance of the program against the real upstream artifacts.

The synthesized plan is the input: every Helm release is rendered with the pinned chart and exactly
the values, release name and namespace the plan declares, and everything that would reach the API
server (rendered manifests and the program's own resources) is checked against the Kubernetes
OpenAPI of the stack's version and the CRD schemas the pinned charts ship. One module per concern:

- `charts`   chart archives: repository (HTTPS index / OCI), digest check, cache, mirror
- `plan`     releases, own objects and the dependency graph of a preview-shaped plan
- `render`   the Helm engine (helm-python-sdk) over each release; YAML documents as objects
- `schemas`  Kubernetes OpenAPI (kubernetes-validate) and CRD structural schemas
- `deadkeys` values keys that change nothing in the render (allow-list with reasons)
- `operators` the workloads operators make from custom resources (Seldon Core 2 at the pinned tag)
- `wiring`   monitors, NetworkPolicies, metrics, references, retention jobs
- `ordering` every custom resource depends on what installs its CRD
- `scanner`  checkov over the rendered manifests, with a baseline
- `runner`   all of it for one stack, as a report
"""
