"""What `mlplat local apply` changes for a deploy tree (no process: the plan only)."""

from __future__ import annotations

import pytest

from local.config import LocalConfig
from local.deploy_apply import plan

pytestmark = pytest.mark.ml


def test_the_tree_decides_champion_and_challenger_and_nothing_else(tmp_path):
    cfg = LocalConfig(state_dir=tmp_path, models=("fraud", "sentiment"))
    tree = {"fraud": {"champion": "3", "challenger": "4"}, "sentiment": {"champion": "1"},
            "recommendation": {"champion": "7"}}  # not served by this platform
    serving = {"fraud": "2", "sentiment": "1"}
    assert plan(cfg, tree, serving.get) == [("fraud", "champion", "3"), ("fraud", "challenger", "4")]
    assert plan(cfg, {"fraud": {"champion": "2", "challenger": "2"}}, serving.get) == []  # already in effect
    assert plan(cfg, {}, serving.get) == []  # an empty repository changes nothing
