"""The AWS-side checks of `mlplat conform`, in one pass over the plan: creation order and launch templates
(aws_order), day-2 drift (day2), GPU capacity (accelerators) and settings that create nothing
(dead_settings). Each finding names the resource (or config key) and the field."""

from __future__ import annotations

from infra.conformance import accelerators, aws_order, day2, dead_settings
from infra.conformance.aws_graph import AwsGraph
from infra.conformance.model import KubeObject, Problem
from infra.conformance.plan import Plan


def check(plan: Plan, objects: list[KubeObject]) -> list[Problem]:
    graph = AwsGraph(plan.states)
    return (aws_order.check(graph, objects) + day2.check(graph) + accelerators.check(graph, objects)
            + dead_settings.check())
