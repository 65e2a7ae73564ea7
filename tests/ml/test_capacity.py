"""`mlplat capacity` arithmetic on a fixed bench report (no processes, no network)."""

from __future__ import annotations

import json
import math

import pytest

from ml.capacity import AZS, Assumptions, capacity, load_prices, plan_model, render
from stacks.config import load_stack_file, stack_file

BENCH = {
    "machine": {"cores": 2, "load_before": [0.3, 0.4, 0.5], "load_after": [1.1, 0.6, 0.5]},
    "models": {
        "fraud": {"http": {"rps": 1500.0, "p50_ms": 2.5, "p99_ms": 3.5, "server_cpu_us": 500.0, "redis_cpu_us": 40.0}},
        "sentiment": {"http": {"rps": 2000.0, "p50_ms": 1.8, "p99_ms": 6.0}},
        "bare-onnx": {"http": {"rps": 1800.0, "p50_ms": 2.0, "p99_ms": 3.0, "server_cpu_us": 450.0}},
    },
}
PRICES = {"as_of": "test", "hours_per_month": 730,
          "ec2": {"c6i.2xlarge": {"vcpu": 8, "usd_per_hour": 0.34}},
          "elasticache": {"cache.r7g.large": {"vcpu": 2, "usd_per_hour": 0.2}}}


def test_fraud_plan_follows_the_documented_steps():
    p = plan_model("fraud", BENCH["models"]["fraud"]["http"], 1_000_000, 5, "c6i.2xlarge", "cache.r7g.large", 2,
                   PRICES, Assumptions(utilisation=0.5, pod_vcpu=1.25, node_reserve_vcpu=0.5))
    assert p.per_core_rps == 2000.0 and p.within_budget  # 1 / 500 us
    assert p.pods == 1002  # ceil(1e6 / (2000 * 0.5)) = 1000 -> next multiple of 3 AZs
    assert p.pods_per_node == 6  # floor((8 - 0.5) / 1.25)
    assert p.nodes == 167  # ceil(1002 / 6)
    assert p.redis_shards == 80  # ceil(1e6 / (25,000 * 0.5))
    assert p.redis_nodes == 240  # 80 primaries + 2 replicas each
    assert p.usd_nodes == round(167 * 0.34 * 730) and p.usd_redis == round(240 * 0.2 * 730)
    assert p.usd_per_month == round(167 * 0.34 * 730 + 240 * 0.2 * 730)


def test_over_budget_model_is_scaled_and_flagged():
    p = plan_model("sentiment", BENCH["models"]["sentiment"]["http"], 100_000, 5, "c6i.2xlarge", "cache.r7g.large",
                   0, PRICES, Assumptions(utilisation=1.0), reads_features=False)
    assert not p.within_budget
    assert p.per_core_rps == 2000.0  # no CPU figure: the run's requests/s (one single-process server)
    assert p.budget_rps_per_core == pytest.approx(2000 * 5 / 6, abs=0.1)
    assert p.pods == math.ceil(math.ceil(100_000 / (2000 * 5 / 6)) / AZS) * AZS
    assert p.redis_shards == 0 and p.usd_redis == 0


def test_capacity_uses_the_stack_and_prints_the_reference_side_by_side():
    cfg = load_stack_file(stack_file("prod"))
    result = capacity(BENCH, 1_000_000, 5, cfg, prices=load_prices())
    assert [p["model"] for p in result["plans"]] == ["fraud", "sentiment"]  # the bare baseline is no model
    assert result["instance_type"] == cfg.node_groups["inference"].instance_types[0]
    assert result["reference"]["pods"] == 200 and result["reference"]["rps_per_pod"] == 5000
    text = render(result)
    assert "reference" in text and "27,000" in text and "fraud" in text
    assert any("instead of 200" in line for line in result["explanation"])
    json.dumps(result)  # the --json output is plain JSON


def test_unknown_instance_type_names_the_price_table():
    with pytest.raises(KeyError, match=r"prices\.yaml"):
        plan_model("fraud", BENCH["models"]["fraud"]["http"], 1000, 5, "x9.huge", "cache.r7g.large", 0, PRICES)
