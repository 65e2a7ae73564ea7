"""Per-tier values of the environment-dependent keys that the stack files do not write out yet.

Each tier's block has the shape of the `config:` section of its `Pulumi.<env>.yaml` (keys without the
`mlplatform:` prefix) and fills only keys the stack file leaves out: a value written in the stack
file always wins. These choices used to be branches on the environment name inside the components
(e.g. a final snapshot "unless dev"); they are typed keys of stacks/schema.py now, with these values,
and docs/CONFIG.md lists them per tier.

Transitional: the blocks belong in the stack files themselves. They are kept here only because the
golden plans (tests/golden/*.json) echo each stack file's config, so writing them into the files
changes those files' `config` section (and nothing else). Moving each block into its stack file,
refreshing the golden plans and deleting this module (and its one call in stacks/config.py) is one
reviewed change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic.alias_generators import to_snake

from stacks.schema import PlatformConfig

TIER_DEFAULTS: dict[str, dict[str, Any]] = {
    "dev": {
        "secrets": {"recoveryWindowDays": 0},
        "dataKeys": {"deletionWindowDays": 7},
        "cluster": {"volumeReclaimPolicy": "Delete"},
        "redis": {"finalSnapshot": False, "applyImmediately": True},
        "kafka": {"enhancedMonitoring": "DEFAULT"},
        "database": {"finalSnapshot": False, "deleteAutomatedBackups": True, "applyImmediately": True},
        "workloads": {
            "modelServerRepository": {"forceDelete": True},
            "observability": {"alertmanagerReplicas": 1},
            "tracing": {"samplingRatio": 1},
        },
    },
    "staging": {
        "secrets": {"recoveryWindowDays": 30},
        "dataKeys": {"deletionWindowDays": 7},
        "cluster": {"volumeReclaimPolicy": "Delete"},
        "redis": {"finalSnapshot": True, "applyImmediately": True},
        "kafka": {"enhancedMonitoring": "DEFAULT"},
        "database": {"finalSnapshot": True, "deleteAutomatedBackups": True, "applyImmediately": True},
        "workloads": {
            "modelServerRepository": {"forceDelete": True},
            "observability": {"alertmanagerReplicas": 1},
            "tracing": {"samplingRatio": 1},
        },
    },
    "prod": {
        "secrets": {"recoveryWindowDays": 30},
        "dataKeys": {"deletionWindowDays": 30},
        "cluster": {"volumeReclaimPolicy": "Retain"},
        "redis": {"finalSnapshot": True, "applyImmediately": False},
        "kafka": {"enhancedMonitoring": "PER_TOPIC_PER_BROKER"},
        "database": {"finalSnapshot": True, "deleteAutomatedBackups": False, "applyImmediately": False},
        "workloads": {
            "modelServerRepository": {"forceDelete": False},
            "observability": {"alertmanagerReplicas": 2},
            "tracing": {"samplingRatio": 0.1},
        },
    },
}


def _merge(raw: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(raw)
    for key, value in defaults.items():
        present = key if key in out else to_snake(key) if to_snake(key) in out else None
        if present is None:
            out[key] = value
        elif isinstance(value, Mapping) and isinstance(out[present], Mapping):
            out[present] = _merge(out[present], value)
        # Anything else (a value written in the stack file, or a malformed section) is left to the schema.
    return out


def with_tier_defaults(raw: Mapping[str, Any]) -> dict[str, Any]:
    """`raw` (a stack file's platform keys) completed with its tier's values for the keys it leaves out.
    A required section the file lacks stays missing, so the schema names it."""
    defaults = TIER_DEFAULTS.get(str(raw.get("environment")), {})
    fields = PlatformConfig.model_fields
    missing_required = {
        key for key in defaults
        if key not in raw and to_snake(key) not in raw and fields[to_snake(key)].is_required()
    }
    return _merge(raw, {k: v for k, v in defaults.items() if k not in missing_required})
