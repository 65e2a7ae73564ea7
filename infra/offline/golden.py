"""Golden offline plans (tests/golden/<stack>.json): every infrastructure change shows up in review.

`mlplat synth --update-golden` rewrites them; tests/infra/test_golden.py fails while they differ from
what the program synthesizes, naming the changed resources and the refresh command.
"""

from __future__ import annotations

import json
from pathlib import Path

from infra.offline.synth import REPO_ROOT, Synthesis

GOLDEN_DIR = REPO_ROOT / "tests" / "golden"
STACKS = ("dev", "staging", "prod")
REFRESH_COMMAND = ".venv/bin/mlplat synth --update-golden"


def golden_path(stack: str) -> Path:
    return GOLDEN_DIR / f"{stack}.json"


def render(synthesis: Synthesis) -> str:
    """The plan as `write_plan` writes it, steps in URN order (registration order is asynchronous)."""
    plan = synthesis.to_preview_json()
    plan["steps"] = sorted(plan["steps"], key=lambda step: step["urn"])
    return json.dumps(plan, indent=2, sort_keys=True) + "\n"


def write_golden(synthesis: Synthesis) -> Path:
    path = golden_path(synthesis.stack)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(synthesis))
    return path
