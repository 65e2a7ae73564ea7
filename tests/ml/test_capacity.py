"""`mlplat capacity` arithmetic on a fixed bench report (no processes, no network)."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest

from ml.serving.sizing import (
    AZS,
    REFERENCE,
    Assumptions,
    ImpossibleTarget,
    capacity,
    explain,
    factor_parts,
    load_prices,
    plan_model,
    reference_plan,
    render,
)
from mlplat.cli import main as cli_main
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
          "ec2": {"c6i.2xlarge": {"vcpu": 8, "usd_per_hour": 0.34}, "c6i.4xlarge": {"vcpu": 16, "usd_per_hour": 0.68}},
          "elasticache": {"cache.r7g.large": {"vcpu": 2, "usd_per_hour": 0.2}}}


def test_fraud_plan_follows_the_documented_steps():
    p = plan_model("fraud", BENCH["models"]["fraud"]["http"], 1_000_000, 5, "c6i.2xlarge", "cache.r7g.large", 2,
                   PRICES, Assumptions(utilisation=0.5, pod_vcpu=1.25, node_reserve_vcpu=0.5, fixed_latency_ms=1.0,
                                       store_rtt_ms=0.0))
    assert p.per_core_rps == 2000.0 and p.within_budget and p.bench_p99_in_budget  # 1 / 500 us
    assert p.service_ms == 0.5  # a store next to the server: no wait
    # S = 0.5 ms, server budget 4 ms: B = 8, bound = 7 / (7 + ln(100)/2) = 0.752 > 0.5 -> u = 0.5
    assert p.utilisation == 0.5 and p.budget_rps_per_core == 1000.0
    assert p.pods == 1002  # ceil(1e6 / 1000) = 1000 -> next multiple of 3 AZs
    assert p.pods_per_node == 6  # floor((8 - 0.5) / 1.25)
    assert p.nodes == 167  # ceil(1002 / 6)
    assert p.redis_shards == 80  # ceil(1e6 / (25,000 * 0.5))
    assert p.redis_nodes == 240  # 80 primaries + 2 replicas each
    assert p.usd_nodes == round(167 * 0.34 * 730) and p.usd_redis == round(240 * 0.2 * 730)
    assert p.usd_per_month == round(167 * 0.34 * 730 + 240 * 0.2 * 730)


def test_the_store_round_trip_waited_for_lengthens_the_service_time_of_models_that_read_it():
    assume = Assumptions(utilisation=0.5, fixed_latency_ms=1.0, store_rtt_ms=0.5)
    p = plan_model("fraud", BENCH["models"]["fraud"]["http"], 1_000_000, 5, "c6i.2xlarge", "cache.r7g.large", 2,
                   PRICES, assume)
    # S = 0.5 ms CPU + 0.5 ms wait = 1 ms, server budget 4 ms: B = 4, bound = 3 / (3 + ln(100)/2) = 0.566 -> u = 0.5
    assert p.service_ms == 1.0 and p.store_wait_ms == 0.5 and p.per_core_rps == 2000.0 and p.utilisation == 0.5
    assert p.budget_rps_per_core == 500.0  # u / S: half the pod of the store-less plan
    assert p.pods == 2001 and p.nodes == 334  # ceil(1e6 / 500) -> multiple of 3; ceil(2001 / 6)
    assert p.redis_shards == 80  # the store's own sizing does not change
    lines = explain(p, reference_plan("c6i.2xlarge", PRICES), 1_000_000)
    assert any("0.500 ms of CPU (measured) + 0.500 ms waiting for the online store" in line and "50%" in line
               for line in lines)
    # A model that does not read the store is not charged the wait.
    q = plan_model("sentiment", BENCH["models"]["sentiment"]["http"], 1_000_000, 5, "c6i.2xlarge",
                   "cache.r7g.large", 2, PRICES, assume, reads_features=False)
    assert q.service_ms == 0.5 and q.store_wait_ms == 0 and not any("waiting for the online store" in line
                                            for line in explain(q, reference_plan("c6i.2xlarge", PRICES), 1e6))


def test_tight_budget_lowers_the_utilisation_by_the_queueing_bound():
    # S = 0.5 ms (2,000/core), server budget 2 - 1 = 1 ms: B = 2, bound = 1 / (1 + ln(100)/2)
    p = plan_model("sentiment", BENCH["models"]["sentiment"]["http"], 100_000, 2, "c6i.2xlarge", "cache.r7g.large",
                   0, PRICES, Assumptions(utilisation=0.9), reads_features=False)
    bound = 1 / (1 + math.log(100) / 2)
    assert p.per_core_rps == 2000.0  # no CPU figure: the run's requests/s (one single-process server)
    assert p.within_budget and not p.bench_p99_in_budget  # the bench's 6 ms p99 is reported, not used
    assert p.utilisation == pytest.approx(bound, abs=1e-3)
    assert p.pods == math.ceil(math.ceil(100_000 / round(2000 * round(bound, 3), 1)) / AZS) * AZS
    assert p.redis_shards == 0 and p.usd_redis == 0


def test_budget_below_the_service_time_is_flagged():
    p = plan_model("sentiment", BENCH["models"]["sentiment"]["http"], 1000, 1.4, "c6i.2xlarge", "cache.r7g.large",
                   0, PRICES, reads_features=False)  # 0.4 ms left for a 0.5 ms service time
    assert not p.within_budget and p.utilisation == 0.05


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


@pytest.mark.parametrize("budget", [0.5, 1.0])
def test_a_budget_spent_outside_the_server_is_refused_with_the_reason(budget):
    with pytest.raises(ImpossibleTarget, match=r"1 ms of every request is assumed to be spent outside it"):
        capacity(BENCH, 1000, budget, load_stack_file(stack_file("prod")), prices=PRICES)


def _cli(tmp_path, *argv: str) -> tuple[int, str, str]:
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(BENCH))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(["capacity", "--bench", str(bench), *argv])
    return code, out.getvalue(), err.getvalue()


def test_capacity_cli_rejects_an_impossible_target_and_fails_a_plan_that_misses_the_budget(tmp_path):
    code, out, err = _cli(tmp_path, "--tps", "1000", "--p99-ms", "0.5")
    assert code == 2 and out == ""
    assert err.startswith("mlplat capacity: impossible target: a p99 budget of 0.5 ms leaves no time")
    code, out, err = _cli(tmp_path, "--tps", "1000", "--p99-ms", "1.4", "--models", "sentiment")
    assert code == 1 and "sentiment" in out  # the plan is printed, and says why
    assert "sentiment cannot meet a p99 of 1.4 ms at any load" in err
    assert _cli(tmp_path, "--tps", "1000", "--p99-ms", "5")[0] == 0


def test_the_asynchronous_client_overlaps_the_round_trip_and_pays_it_from_the_budget():
    assume = Assumptions(utilisation=0.6, fixed_latency_ms=1.0, store_rtt_ms=0.5)
    http = BENCH["models"]["fraud"]["http"]
    sync = plan_model("fraud", http, 1_000_000, 5, "c6i.2xlarge", "cache.r7g.large", 2, PRICES, assume)
    overlapped = plan_model("fraud", {**http, "server_cpu_us": 600.0}, 1_000_000, 5, "c6i.2xlarge", "cache.r7g.large",
                            2, PRICES, assume, online_client="redis-asyncio")
    assert sync.service_ms == 1.0 and sync.store_wait_ms == 0.5 and sync.online_client == "resp"
    # The asynchronous client's own CPU (600 us measured with it) is the whole service time; the round trip
    # comes off the budget: B = (5 - 1 - 0.5) / 0.6 = 5.83, bound = 4.83 / (4.83 + ln(100)/2) = 0.677 -> u = 0.6.
    assert overlapped.service_ms == 0.6 and overlapped.store_wait_ms == 0 and overlapped.store_rtt_ms == 0.5
    assert overlapped.utilisation == 0.6 and overlapped.budget_rps_per_core == 1000.0
    assert overlapped.pods < sync.pods
    lines = explain(overlapped, reference_plan("c6i.2xlarge", PRICES), 1e6, assume)
    assert any("reads the store with `redis-asyncio`" in line for line in lines)
    # A round trip that leaves the server nothing is out of budget even though it is not waited for in the pod.
    tight = plan_model("fraud", http, 1000, 2, "c6i.2xlarge", "cache.r7g.large", 2, PRICES,
                       Assumptions(store_rtt_ms=0.6), online_client="redis-asyncio")
    assert not tight.within_budget  # 2 - 1 - 0.6 = 0.4 ms for a 0.5 ms service time


def test_vcpus_and_money_compare_like_with_like_and_the_factor_is_the_product_of_its_parts():
    assume = Assumptions(utilisation=0.5, fixed_latency_ms=1.0, store_rtt_ms=0.5)
    p = plan_model("fraud", BENCH["models"]["fraud"]["http"], 1_000_000, 5, "c6i.2xlarge", "cache.r7g.large", 2,
                   PRICES, assume)
    assert p.pod_vcpus == p.pods * 1.25 and p.node_vcpus == p.nodes * 8 and p.store_vcpus == p.redis_nodes * 2
    ref = reference_plan("c6i.2xlarge", PRICES, assume)
    assert ref["pod_vcpus"] == [400, 800] and ref["node_vcpus"] == [800, 1600]  # 200 x 2-4 CPU; 50-100 x 16
    assert ref["cpu_ms_per_request"] == [0.4, 0.8]  # 400-800 vCPU busy for 1M requests/s
    assert ref["usd_nodes_at_our_prices"] == [round(50 * 0.68 * 730), round(100 * 0.68 * 730)]
    f = factor_parts(p, ref, assume)
    # 0.5 ms of CPU against 0.4-0.8 ms; utilisation 0.5; (0.5 + 0.5) / 0.5 store wait; 1.25 vCPU per core.
    assert f["per_request_cpu"] == [1.25, 0.625] and f["utilisation"] == 2.0 and f["store_wait"] == 2.0
    assert f["pod_overhead"] == 1.25
    for product, ratio in zip(f["product"], f["pod_vcpu_ratio"], strict=True):
        assert product == pytest.approx(ratio, rel=0.01)  # pods rounded up to whole pods per zone
    text = render(capacity(BENCH, 1_000_000, 5, load_stack_file(stack_file("prod")), prices=PRICES, assume=assume))
    assert "fleet in vCPUs and money" in text and "400-800" in text and "800-1,600" in text
    assert "That factor is the product of" in text and f"{REFERENCE['node_vcpu']} vCPU" in text


def test_the_reference_node_must_have_the_stated_size_in_the_price_table():
    prices = {**PRICES, "ec2": {**PRICES["ec2"], "c6i.4xlarge": {"vcpu": 8, "usd_per_hour": 0.34}}}
    with pytest.raises(ValueError, match="not the reference's 16"):
        reference_plan("c6i.2xlarge", prices)


def test_the_cli_plans_for_the_round_trip_the_bench_ran_behind(tmp_path):
    bench = {**BENCH, "settings": {"store_rtt_ms": [0.2]},
             "models": {**BENCH["models"], "fraud": {**BENCH["models"]["fraud"], "online_client": "resp"}}}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["capacity", "--bench", str(path), "--tps", "1000", "--p99-ms", "5", "--json"]) == 0
    plan = json.loads(out.getvalue())
    assert plan["assumptions"]["store_rtt_ms"] == 0.2
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli_main(["capacity", "--bench", str(path), "--tps", "1000", "--p99-ms", "5", "--json", "--store-rtt-ms", "1"])
    assert json.loads(out.getvalue())["assumptions"]["store_rtt_ms"] == 1.0  # given: it wins
    path.write_text("{not json")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli_main(["capacity", "--bench", str(path), "--tps", "1000", "--p99-ms", "5"]) == 2
    assert "is not a bench report" in err.getvalue()


def test_the_explained_plan_is_the_one_with_the_stacks_client():
    cfg = load_stack_file(stack_file("prod"))
    http = BENCH["models"]["fraud"]["http"]
    bench = {"models": {
        "fraud-resp": {"model": "fraud", "online_client": "resp", "http": {**http, "fetches_per_request": 1.0}},
        "fraud-resp-async": {"model": "fraud", "online_client": "resp-async",
                             "http": {**http, "server_cpu_us": 450.0, "fetches_per_request": 1.0}},
        "fraud-redis-asyncio": {"model": "fraud", "online_client": "redis-asyncio",
                                "http": {**http, "server_cpu_us": 550.0, "fetches_per_request": 1.0}},
        "sentiment": {"http": BENCH["models"]["sentiment"]["http"]},
        # An explainer answers the occasional analyst, not the request stream: not sized by default.
        "fraud-explainer": {"model": "fraud-explainer", "online_client": "resp", "http": {**http, "rps": 400.0}},
        "bare-onnx": {"model": "bare-onnx", "http": {**http, "server_cpu_us": 300.0}}}}
    result = capacity(bench, 1_000_000, 5, cfg, prices=load_prices())
    assert [p["online_client"] for p in result["plans"]] == ["resp", "resp-async", "redis-asyncio", None]
    assert "fraud-explainer" not in [p["model"] for p in result["plans"]]
    chosen = cfg.workloads.seldon.online_client
    assert result["explanation"][0].startswith(f"Like with like: fraud-{chosen}'s pods")
    # MLServer's share of a request is the bare runtime's CPU in the same bench, not a figure written down.
    where = next(line for line in result["explanation"] if line.startswith("Where the per-request CPU goes"))
    assert "0.30 ms of CPU in the bare runtime alone" in where and f"fraud-{chosen} runtime's own 0.15 ms" in where
