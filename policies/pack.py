"""Adapter: turn the plain rules into pulumi_policy policies (imported only where pulumi_policy exists).

`pulumi_policy` is imported inside the functions: `policies.rules` stays importable from the IaC
environment, which cannot install it (protobuf pin).

Props reach a rule as plain values behind the rules' own view (policies/rules/base.py): the same code
path as the offline evaluator. When a rule needs a value unknown at preview, the adapter raises
pulumi_policy's `UnknownValueError`, so the analyzer reports it exactly as it reports any policy
that touches an unknown ("can't run policy ... during preview", advisory); violations the rule found
before that are reported as usual.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from policies.rules import ALL_RULES, PACK_NAME, PlanResource, Rule, StackInfo
from policies.rules.base import UnknownAtPreview, as_mapping, environment_of, view

PACK_DESCRIPTION = ("Guard rails of the ML platform blueprint: EKS, network, S3, KMS, Redis, MSK, RDS, IAM, "
                    "tagging, Kubernetes and stack-level rules.")


def _stack_info(provider_props: Mapping[str, Any] | None, *tag_sets: Mapping[str, Any]) -> StackInfo:
    default_tags = as_mapping(as_mapping((provider_props or {}).get("defaultTags")).get("tags"))
    name = os.environ.get("PULUMI_STACK", "")
    return StackInfo(name, environment_of(name, default_tags, *tag_sets), dict(default_tags))


def plain(value: Any) -> Any:
    """Props without pulumi_policy's unknown-checking proxies (placeholders kept as they are)."""
    from pulumi_policy.proxy import _DictProxy, _ListProxy

    if isinstance(value, (_DictProxy, _ListProxy)):
        value = value["__target"]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _unknown_value_error(exc: UnknownAtPreview) -> Exception:
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

    return UnknownValueError(UNKNOWN_STRING_VALUE, exc.path.split("."))


def _resource_validate(rule: Rule) -> Any:
    def validate(args: Any, report_violation: Any) -> None:
        if args.resource_type not in rule.resource_types:
            return
        props = plain(args.props)
        provider = plain(args.provider.props) if args.provider is not None else None
        stack = _stack_info(provider, as_mapping(props.get("tags")))
        config = {**rule.defaults(), **dict(args.get_config() or {})}
        undecided: UnknownAtPreview | None = None
        try:
            for message in rule.check(args.resource_type, view(props), config, stack):
                if isinstance(message, UnknownAtPreview):
                    undecided = undecided or message
                else:
                    report_violation(message, None)
        except UnknownAtPreview as exc:
            undecided = exc
        if undecided is not None:
            raise _unknown_value_error(undecided)
    return validate


def _stack_validate(rule: Rule) -> Any:
    def validate(args: Any, report_violation: Any) -> None:
        resources = [
            PlanResource(urn=r.urn, type=r.resource_type, name=r.name, props=view(plain(r.props)),
                         protect=bool(r.opts.protect), parent=r.parent.urn if r.parent is not None else None,
                         dependencies=[d.urn for d in r.dependencies],
                         provider_props=plain(r.provider.props) if r.provider is not None else None)
            for r in args.resources
        ]
        tagged = [as_mapping(plain(r.props).get("tags")) for r in args.resources]
        providers = [r.provider_props for r in resources if r.provider_props]
        stack = _stack_info(providers[0] if providers else None, *tagged)
        config = {**rule.defaults(), **dict(args.get_config() or {})}
        undecided: UnknownAtPreview | None = None
        try:
            for urn, message in rule.check(resources, config, stack):
                if isinstance(message, UnknownAtPreview):
                    undecided = undecided or message  # judge the other resources first
                else:
                    report_violation(message, urn)
        except UnknownAtPreview as exc:
            undecided = exc
        if undecided is not None:
            raise _unknown_value_error(undecided)
    return validate


def build_policies() -> list[Any]:
    """One pulumi_policy policy per rule, with severity, remediation and config schema."""
    from pulumi_policy import (
        EnforcementLevel,
        PolicyConfigSchema,
        ResourceValidationPolicy,
        Severity,
        StackValidationPolicy,
    )

    policies: list[Any] = []
    for rule in ALL_RULES:
        common = {
            "name": rule.name,
            "description": rule.description,
            "enforcement_level": EnforcementLevel(rule.enforcement),
            "severity": Severity(rule.severity),
            "remediation_steps": rule.remediation,
            "tags": [rule.area.lower().replace(" ", "-")] if rule.area else None,
            "config_schema": PolicyConfigSchema(properties={k: dict(v) for k, v in rule.config.items()})
            if rule.config else None,
        }
        if rule.is_stack_rule:
            policies.append(StackValidationPolicy(validate=_stack_validate(rule), **common))
        else:
            policies.append(ResourceValidationPolicy(validate=_resource_validate(rule), **common))
    return policies


__all__ = ["PACK_DESCRIPTION", "PACK_NAME", "build_policies"]
