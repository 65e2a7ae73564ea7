"""CrossGuard policy pack of the ML platform.

The rules live in `policies.rules` as plain functions (no `pulumi_policy` import), so `mlplat policy`
evaluates them in-process in the IaC environment; `policies/__main__.py` wraps the same functions
into a `PolicyPack` for `pulumi preview --policy-pack policies`.
"""
