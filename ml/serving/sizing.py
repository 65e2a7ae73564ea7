"""Capacity plan from measured serving figures: pods, vCPUs, nodes, Redis shards and a monthly cost for a
target throughput and latency budget, beside the reference fleet in the same units (`mlplat capacity`,
docs/CAPACITY.md).

Inputs: a `mlplat bench models --json FILE` report, the stack file (the inference node group's
instance type, the Redis node type and replicas per shard) and the dated price table `ml/serving/prices.yaml`.

The arithmetic, per model, every step printed by the command:

1. Requests/s one core sustains: 1 / (MLServer CPU seconds per request), measured from the server
   process's CPU time during the HTTP run (`server_cpu_us`). Without that figure, the run's requests/s
   (one single-process MLServer is at most one core). The bench runs its load generator on other CPUs
   than the server (`CpuLayout`, ml/serving/loadgen.py), but a shared machine's CPU-second still does
   more or less work with the host's load (docs/CAPACITY.md): measure on the instance type.
2. Within the latency budget: a pod is a single-server queue with an almost constant service time
   S = 1 / (per-core rate), plus, for models that read the online store on every request with a
   blocking client (`resp`, the bench entry's `online_client`), `store_rtt_ms`: the event loop serves
   nothing else while that round trip is on the wire. With an asynchronous client (`resp-async`, `redis-asyncio`)
   the wait overlaps other requests: S is the CPU alone (measured with that client, so its own cost
   is in it), and the round trip is spent outside the queue, so it comes off the budget instead. The
   round trip is measured from a pod with `mlplat bench store --url`, and reproduced on one machine
   with `--rtt-ms` (a delay proxy). At utilisation u the mean wait of an M/D/1 queue is
   u*S / (2*(1 - u)); taking the wait's tail as exponential, p99 ~ S + ln(100) * u*S / (2*(1 - u)).
   The budget left to the server is the p99 budget minus `fixed_latency_ms` (ingress/Envoy hop and
   the network to the caller) and, with the asynchronous client, the round trip; B = that / S, so
   u <= (B - 1) / (B - 1 + ln(100) / 2); no u fits when B <= 1. The pod runs at min(`utilisation`,
   that bound). The bench's own p99 at its closed-loop concurrency is reported beside it (`bench p99
   in budget`), not used: on a shared machine it measures the machine. A pod serves u / S requests/s.
3. A pod is one MLServer process (`parallel_workers: 0`, one core) plus Seldon's agent and rclone
   sidecars, run at the utilisation of step 2; the count is rounded up to a multiple of the three
   availability zones.
4. Nodes: the inference node group's first instance type; allocatable vCPU = vCPU - `node_reserve_vcpu`
   (kubelet, system daemons, DaemonSets); pods per node = floor(allocatable / pod vCPU).
5. Redis, for models whose benchmarked requests fetch online features (`fetches_per_request` in the
   report, else the spec's `features.every_request`): round trips per second = TPS (one pipelined
   round trip per request); a shard's
   primary serves 1 / (redis-server CPU seconds per request) at `utilisation`, measured the same way
   (`redis_cpu_us`), else `default_shard_rps`. Each shard has `replicasPerShard` replicas.
6. Cost: (nodes x instance price + Redis nodes x node price) x 730 h, from `ml/serving/prices.yaml`.
7. Like with like: vCPUs of the pods (pods x pod vCPU), of the nodes and of the online store, beside
   the reference fleet's (`REFERENCE`: its pods x stated CPU per pod, its stated node count x vCPU per
   node, priced as our table's instance of that size). The factor between the pods' vCPUs is the
   product of four parts (`factor_parts`): per-request CPU against what the reference's pods give a
   request at full load, 1 / the utilisation the latency budget allows, the store wait (service time
   / CPU), and the pod's vCPU per serving core (sidecars).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from contracts import model_registry
from contracts.feast import ASYNC_ONLINE_CLIENTS
from ml.serving.settings import BARE

PRICES = Path(__file__).with_name("prices.yaml")
# The client of a bench entry that names none: reports written before entries named their client were
# measured with the blocking `resp`, then the bench's default.
UNNAMED_CLIENT = "resp"
AZS = 3
# The architecture this blueprint implements quotes ~200 pods of 2-4 CPU on 50-100 nodes of 16 vCPU,
# ~$27k/month, for 1M TPS under 5 ms. It names no instance type: a 16-vCPU node is priced as
# `node_type`, the 16-vCPU compute instance of the price table. Ranges are (low, high).
REFERENCE = {"tps": 1_000_000, "p99_ms": 5.0, "pods": 200, "usd_per_month": 27_000, "pod_vcpu": (2, 4),
             "nodes": (50, 100), "node_vcpu": 16, "node_type": "c6i.4xlarge"}


@dataclass(frozen=True)
class Assumptions:
    utilisation: float = 0.6  # share of a pod's measured capacity used at peak (upper bound)
    fixed_latency_ms: float = 1.0  # ingress/Envoy hop + network to the caller, outside the server's queue
    # Online store round trip on the cluster network, waited for inside the service time (step 2): an
    # assumption (TLS to ElastiCache, two of three zones away from a shard's primary) until measured
    # with `mlplat bench store --url` from a pod.
    store_rtt_ms: float = 0.5
    pod_vcpu: float = 1.25  # MLServer (1 core) + agent + rclone sidecars
    pod_vcpu_note: str = "MLServer's core + Seldon agent + rclone sidecars"
    node_reserve_vcpu: float = 0.5  # kubelet, system daemons, DaemonSets per node
    default_shard_rps: float = 50_000  # Redis requests/s per shard primary when the bench has no figure


@dataclass
class ModelPlan:
    model: str
    measured_rps: float
    http_p99_ms: float
    server_cpu_us: float | None
    per_core_rps: float
    service_ms: float  # per request in the pod: CPU plus the store round trip waited for
    store_wait_ms: float  # the part of service_ms spent waiting for the online store
    online_client: str | None  # of the bench entry, for models that read the store
    store_rtt_ms: float  # the round trip planned for (0 for models that do not read the store)
    utilisation: float
    within_budget: bool
    bench_p99_in_budget: bool
    budget_rps_per_core: float
    pods: int
    pods_per_node: int
    nodes: int
    redis_shards: int
    redis_nodes: int
    usd_per_month: float
    usd_nodes: float
    usd_redis: float
    pod_vcpus: float  # pods x pod vCPU (requested)
    node_vcpus: int  # nodes x instance vCPU
    store_vcpus: int  # Redis nodes x node vCPU


def load_prices(path: Path = PRICES) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _instance(prices: dict[str, Any], kind: str, name: str) -> dict[str, float]:
    table = prices[kind]
    if name not in table:
        raise KeyError(f"{name} is not in the price table {PRICES.name} ({kind}); add it with its source")
    return table[name]


def bench_figures(bench: dict[str, Any], model: str) -> dict[str, Any]:
    """The HTTP figures of `model` in a bench report (the median run when it was repeated)."""
    try:
        return bench["models"][model]["http"]
    except KeyError:
        raise KeyError(f"the bench report has no HTTP figures for {model!r}") from None


def plan_model(model: str, http: dict[str, Any], tps: float, p99_budget_ms: float, instance: str,
               redis_node: str, redis_replicas: int, prices: dict[str, Any],
               assume: Assumptions = Assumptions(), reads_features: bool = True,
               online_client: str = UNNAMED_CLIENT) -> ModelPlan:
    cpu_us = http.get("server_cpu_us")
    per_core = 1e6 / cpu_us if cpu_us else float(http["rps"])
    p99 = float(http["p99_ms"])
    rtt = assume.store_rtt_ms if reads_features else 0.0
    overlapped = online_client in ASYNC_ONLINE_CLIENTS
    store_wait_ms = 0.0 if overlapped else rtt
    service_ms = 1000.0 / per_core + store_wait_ms
    server_budget = p99_budget_ms - assume.fixed_latency_ms - (rtt if overlapped else 0.0)
    b = server_budget / service_ms
    within = b > 1
    bound = (b - 1) / (b - 1 + math.log(100) / 2) if within else 0.0
    utilisation = min(assume.utilisation, bound) if within else 0.05  # out of budget: flagged, nominal load
    budget_rate = 1000.0 / service_ms * utilisation
    pod_rps = budget_rate
    pods = math.ceil(tps / pod_rps)
    pods = math.ceil(pods / AZS) * AZS
    node = _instance(prices, "ec2", instance)
    pods_per_node = max(1, math.floor((node["vcpu"] - assume.node_reserve_vcpu) / assume.pod_vcpu))
    nodes = math.ceil(pods / pods_per_node)
    shards = redis_nodes = 0
    if reads_features:
        redis_cpu = http.get("redis_cpu_us")
        shard_rps = (1e6 / redis_cpu if redis_cpu else assume.default_shard_rps) * assume.utilisation
        shards = math.ceil(tps / shard_rps)
        redis_nodes = shards * (1 + redis_replicas)
    hours = prices["hours_per_month"]
    store_node = _instance(prices, "elasticache", redis_node)
    usd_nodes = nodes * node["usd_per_hour"] * hours
    usd_redis = redis_nodes * store_node["usd_per_hour"] * hours
    return ModelPlan(model, float(http["rps"]), p99, cpu_us, round(per_core, 1), round(service_ms, 3), store_wait_ms,
                     online_client if reads_features else None, rtt,
                     round(utilisation, 3), within,
                     p99 <= p99_budget_ms, round(budget_rate, 1),
                     pods, pods_per_node, nodes, shards, redis_nodes, round(usd_nodes + usd_redis),
                     round(usd_nodes), round(usd_redis), round(pods * assume.pod_vcpu, 2),
                     round(nodes * node["vcpu"]), round(redis_nodes * store_node["vcpu"]))


def reference_plan(instance: str, prices: dict[str, Any], assume: Assumptions = Assumptions()) -> dict[str, Any]:
    """The reference fleet in our units: requests/s per pod, its pods' and nodes' vCPUs, what its nodes
    cost at our prices, and how many of our inference nodes its pods would fill."""
    node = _instance(prices, "ec2", instance)
    pods_per_node = max(1, math.floor((node["vcpu"] - assume.node_reserve_vcpu) / assume.pod_vcpu))
    nodes = math.ceil(REFERENCE["pods"] / pods_per_node)
    ref_node = _instance(prices, "ec2", REFERENCE["node_type"])
    if ref_node["vcpu"] != REFERENCE["node_vcpu"]:
        raise ValueError(f"{REFERENCE['node_type']} has {ref_node['vcpu']} vCPU in {PRICES.name}, "
                         f"not the reference's {REFERENCE['node_vcpu']}")
    hours = prices["hours_per_month"]
    return {**REFERENCE, "rps_per_pod": REFERENCE["tps"] / REFERENCE["pods"], "nodes_on_our_instance": nodes,
            "usd_nodes_on_our_instance": round(nodes * node["usd_per_hour"] * hours),
            "pod_vcpus": [REFERENCE["pods"] * v for v in REFERENCE["pod_vcpu"]],
            "node_vcpus": [n * REFERENCE["node_vcpu"] for n in REFERENCE["nodes"]],
            # CPU time a request can have when every pod core is busy: the most the reference's pods allow.
            "cpu_ms_per_request": [REFERENCE["pods"] * v / REFERENCE["tps"] * 1000 for v in REFERENCE["pod_vcpu"]],
            "usd_nodes_at_our_prices": [round(n * ref_node["usd_per_hour"] * hours) for n in REFERENCE["nodes"]]}


def factor_parts(plan: ModelPlan, reference: dict[str, Any], assume: Assumptions = Assumptions()) -> dict[str, Any]:
    """Our pods' vCPUs over the reference's, and the four parts it is the product of (each a (low, high)
    pair against the reference's 2 and 4 CPU pods; the product differs from the ratio of the printed
    vCPUs only by the rounding of pods up to whole pods in every zone)."""
    cpu_ms = plan.service_ms - plan.store_wait_ms
    parts = {
        "per_request_cpu": [cpu_ms / ref for ref in reference["cpu_ms_per_request"]],
        "utilisation": 1 / plan.utilisation,
        "store_wait": plan.service_ms / cpu_ms,
        "pod_overhead": assume.pod_vcpu,
    }
    rest = parts["utilisation"] * parts["store_wait"] * parts["pod_overhead"]
    return {**parts, "product": [p * rest for p in parts["per_request_cpu"]],
            "pod_vcpu_ratio": [plan.pod_vcpus / v for v in reference["pod_vcpus"]],
            "node_vcpu_ratio": [plan.node_vcpus / v for v in reference["node_vcpus"]]}


def _span(pair: list[float], fmt: str = ".1f") -> str:
    low, high = sorted(pair)
    return f"{low:{fmt}}" if f"{low:{fmt}}" == f"{high:{fmt}}" else f"{low:{fmt}}-{high:{fmt}}"


def explain(plan: ModelPlan, reference: dict[str, Any], tps: float, assume: Assumptions = Assumptions(),
            bare_cpu_us: float | None = None) -> list[str]:
    """The headline plan against the reference in sentences; `bare_cpu_us`: the bare runtime's CPU per request in
    the same bench (MLServer's own share of every request), when the bench served it."""
    ours = plan.budget_rps_per_core
    ref = reference["tps"] / reference["pods"]
    f = factor_parts(plan, reference, assume)
    cpu_ms = plan.service_ms - plan.store_wait_ms
    lines = [
        f"Like with like: {plan.model}'s pods request {plan.pod_vcpus:,.0f} vCPU on {plan.node_vcpus:,} node vCPU; "
        f"the reference's {reference['pods']} pods of {_span(list(reference['pod_vcpu']), 'g')} CPU request "
        f"{_span(reference['pod_vcpus'], ',.0f')} vCPU on {_span(reference['node_vcpus'], ',.0f')} node vCPU "
        f"({_span(list(reference['nodes']), 'g')} nodes of {reference['node_vcpu']} vCPU, "
        f"${_span(reference['usd_nodes_at_our_prices'], ',.0f')}/month at our prices as {reference['node_type']}; "
        f"stated ${reference['usd_per_month']:,}): {_span(f['pod_vcpu_ratio'])}x the pod vCPUs, "
        f"{_span(f['node_vcpu_ratio'])}x the node vCPUs; in money, {plan.model}'s nodes cost "
        f"${plan.usd_nodes:,.0f}/month, {_span([plan.usd_nodes / u for u in reference['usd_nodes_at_our_prices']])}x "
        f"the reference's nodes at the same prices, and its store ${plan.usd_redis:,.0f} more.",
        f"That factor is the product of: per-request CPU {cpu_ms:.3f} ms against the "
        f"{_span(reference['cpu_ms_per_request'], '.1f')} ms a request gets when every reference pod core is busy "
        f"({_span(f['per_request_cpu'], '.2f')}x) x utilisation allowed by the latency budget "
        f"{plan.utilisation:.2f} ({f['utilisation']:.2f}x) x store wait ({f['store_wait']:.2f}x: "
        + (f"{plan.store_wait_ms:.2f} ms of round trip on a blocking event loop" if plan.store_wait_ms
           else "none: " + ("the asynchronous client overlaps it" if plan.online_client else "no store read"))
        + f") x pod overheads ({f['pod_overhead']:.2f}x: {assume.pod_vcpu} vCPU per serving core, "
        f"{assume.pod_vcpu_note}) = {_span(f['product'])}x.",
        f"Per pod: the reference needs {ref:,.0f} requests/s; {plan.model} serves {ours:,.0f} here "
        f"(utilisation {plan.utilisation:.2f} / service time {plan.service_ms:.3f} ms), so {plan.pods:,} pods "
        f"instead of {reference['pods']}.",
        "Where the per-request CPU goes: each request pays MLServer's Python V2 path (FastAPI routing, pydantic "
        "parsing of the inputs, JSON encoding: "
        + (f"{bare_cpu_us / 1000:.2f} ms of CPU in the bare runtime alone, which calls the same ONNX model and "
           f"nothing else) before the {plan.model} runtime's own {max(cpu_ms - bare_cpu_us / 1000, 0):.2f} ms"
           if bare_cpu_us else "the bare runtime's share, served in the bench, is the measure) before the "
           "model's own work")
        + "; the reference's figures need at most 0.4-0.8 ms per request at full load, i.e. a "
        "compiled server (Triton/C++ or Rust), gRPC with binary tensors, and server-side batching.",
        "The reference cost also leaves out the feature store: at one pipelined Redis round trip per request, "
        f"{tps:,.0f} TPS needs {plan.redis_shards:,} shard primaries here ({plan.store_vcpus:,} vCPU with replicas, "
        f"${plan.usd_redis:,.0f}/month).",
    ]
    if plan.store_wait_ms:
        lines.append(
            f"{plan.model}'s service time is {cpu_ms:.3f} ms of CPU (measured) + {plan.store_wait_ms:.3f} ms "
            f"waiting for the online store (--store-rtt-ms) with the blocking `{plan.online_client}` client; at this "
            f"round trip it costs {1 - cpu_ms / plan.service_ms:.0%} of a pod's throughput.")
    elif plan.online_client:
        lines.append(
            f"{plan.model} reads the store with `{plan.online_client}`: its {plan.store_rtt_ms:.3f} ms round trip "
            "overlaps other requests, so it lengthens each request's latency (taken off the budget) but not the "
            f"pod's service time of {cpu_ms:.3f} ms of CPU, measured with that client.")
    if not plan.within_budget:
        lines.append(f"{plan.model} cannot meet the budget at any load: its service time alone exceeds it "
                     "(step 2); the plan shows a nominal 5 % utilisation.")
    if not plan.bench_p99_in_budget:
        lines.append(f"The bench itself measured p99 {plan.http_p99_ms:.2f} ms for {plan.model} at its closed-loop "
                     "concurrency: look at the bench machine's load average before trusting the CPU figure.")
    return lines


def _reads_store_per_request(model: str) -> bool:
    """A registered model whose spec says its runtime reads the online store on every request."""
    if model not in model_registry.names():
        return False
    features = model_registry.get(model).features
    return features is not None and features.every_request


def _base(bench: dict[str, Any], served: str) -> str:
    """The registered model a bench entry serves (entries per client or round trip are named apart)."""
    return bench["models"][served].get("model") or served


def _reads_features(http: dict[str, Any], model: str) -> bool:
    """Whether the benchmarked requests fetched online features: measured by the bench
    (`fetches_per_request`), else what the model's spec declares."""
    if "fetches_per_request" in http:
        return http["fetches_per_request"] > 0.5
    return _reads_store_per_request(model)


class ImpossibleTarget(ValueError):
    """A target no number of pods can meet (the budget is spent before a request reaches a server)."""


def check_target(tps: float, p99_budget_ms: float, assume: Assumptions = Assumptions()) -> None:
    """Refuse targets that no plan can meet, with the reason."""
    if tps <= 0:
        raise ImpossibleTarget(f"--tps must be > 0, got {tps:g}")
    if p99_budget_ms <= assume.fixed_latency_ms:
        raise ImpossibleTarget(
            f"a p99 budget of {p99_budget_ms:g} ms leaves no time for the model server: "
            f"{assume.fixed_latency_ms:g} ms of every request is assumed to be spent outside it (ingress hop and "
            f"network to the caller); ask for more than {assume.fixed_latency_ms:g} ms")


def capacity(bench: dict[str, Any], tps: float, p99_budget_ms: float, stack_cfg: Any,
             models: list[str] | None = None, prices: dict[str, Any] | None = None,
             assume: Assumptions = Assumptions()) -> dict[str, Any]:
    check_target(tps, p99_budget_ms, assume)
    prices = prices or load_prices()
    instance = stack_cfg.node_groups["inference"].instance_types[0]
    redis_node, redis_replicas = stack_cfg.redis.node_type, stack_cfg.redis.replicas_per_shard
    # Default: every served variant of a registered model (not the bare baseline, not an explainer, which
    # answers the occasional analyst's question rather than the request stream).
    registered = set(model_registry.names())
    names = models or [m for m in bench["models"] if "http" in bench["models"][m] and _base(bench, m) in registered]
    plans = [plan_model(m, bench_figures(bench, m), tps, p99_budget_ms, instance, redis_node, redis_replicas,
                        prices, assume, reads_features=_reads_features(bench["models"][m]["http"], _base(bench, m)),
                        online_client=bench["models"][m].get("online_client") or UNNAMED_CLIENT)
             for m in names]
    reference = reference_plan(instance, prices, assume)
    # Explained: the first model that reads the online store with the stack's client (what the cluster would
    # run), else the first that reads the store at all (it needs pods and Redis), else the first.
    client = stack_cfg.workloads.seldon.online_client
    headline = next((p for p in plans if p.redis_shards and p.online_client == client),
                    next((p for p in plans if p.redis_shards), plans[0] if plans else None))
    return {
        "tps": tps, "p99_budget_ms": p99_budget_ms, "instance_type": instance, "redis_node_type": redis_node,
        "redis_replicas_per_shard": redis_replicas, "prices_as_of": prices["as_of"], "assumptions": asdict(assume),
        "bench_machine": bench.get("machine", {}), "plans": [asdict(p) for p in plans], "reference": reference,
        "explanation": explain(headline, reference, tps, assume,
                               bench["models"].get(BARE, {}).get("http", {}).get("server_cpu_us"))
        if headline else [],
        "factors": {p.model: factor_parts(p, reference, assume) for p in plans},
    }


def render(result: dict[str, Any]) -> str:
    a = result["assumptions"]
    w = max([16, *(len(p["model"]) + 2 for p in result["plans"])])
    lines = [
        f"capacity for {result['tps']:,.0f} requests/s, p99 budget {result['p99_budget_ms']} ms; inference nodes "
        f"{result['instance_type']}, Redis {result['redis_node_type']} + {result['redis_replicas_per_shard']} "
        f"replica(s)/shard; prices {result['prices_as_of']}",
        f"assumptions: utilisation <= {a['utilisation']} (M/D/1 p99 bound), {a['fixed_latency_ms']} ms of the budget "
        f"outside the server, online store round trip {a['store_rtt_ms']} ms waited for per request (models that "
        f"read it), pod {a['pod_vcpu']} vCPU, node reserve {a['node_reserve_vcpu']} vCPU; each model sized to carry "
        "the whole TPS alone",
        "",
        f"{'model':<{w}}{'bench rps':>10}{'p99 ms':>8}{'cpu us/req':>11}{'rps/core':>10}{'svc ms':>8}{'util':>6}"
        f"{'rps/pod':>9}"
        f"{'pods':>8}{'pods/node':>10}{'nodes':>7}{'redis shards':>13}{'$/month':>11}",
    ]
    for p in result["plans"]:
        cpu = f"{p['server_cpu_us']:.0f}" if p["server_cpu_us"] else "-"
        lines.append(
            f"{p['model']:<{w}}{p['measured_rps']:>10,.0f}{p['http_p99_ms']:>8.2f}{cpu:>11}{p['per_core_rps']:>10,.0f}"
            f"{p['service_ms']:>8.3f}{p['utilisation'] if p['within_budget'] else 'NO':>6}"
            f"{p['budget_rps_per_core']:>9,.0f}{p['pods']:>8,}{p['pods_per_node']:>10}{p['nodes']:>7,}"
            f"{p['redis_shards']:>13,}{p['usd_per_month']:>11,.0f}")
    r = result["reference"]
    lines += [
        f"{'reference':<{w}}{'':>10}{r['p99_ms']:>8.2f}{'':>11}{'':>10}{'':>8}{'':>6}{r['rps_per_pod']:>9,.0f}{r['pods']:>8,}"
        f"{'':>10}{r['nodes_on_our_instance']:>7,}{'-':>13}{r['usd_per_month']:>11,.0f}",
        "",
        f"fleet in vCPUs and money ({result['prices_as_of'].split(' ')[0]} prices; the reference's own node type, "
        f"{r['node_vcpu']} vCPU, priced as {r['node_type']}):",
        f"{'model':<{w}}{'store client':>14}{'rtt ms':>7}{'pods':>8}{'pod vCPU':>10}{'nodes':>8}{'node vCPU':>11}"
        f"{'store vCPU':>12}{'$ nodes':>15}{'$ store':>10}{'$/month':>10}",
    ]
    for p in result["plans"]:
        rtt = f"{p['store_rtt_ms']:g}" if p["online_client"] else "-"
        lines.append(
            f"{p['model']:<{w}}{p['online_client'] or '-':>14}{rtt:>7}{p['pods']:>8,}{p['pod_vcpus']:>10,.0f}"
            f"{p['nodes']:>8,}{p['node_vcpus']:>11,}{p['store_vcpus']:>12,}{p['usd_nodes']:>15,.0f}"
            f"{p['usd_redis']:>10,.0f}{p['usd_per_month']:>10,.0f}")
    lines += [
        f"{'reference':<{w}}{'-':>14}{'-':>7}{r['pods']:>8,}{_span(r['pod_vcpus'], ',.0f'):>10}"
        f"{_span(list(r['nodes']), 'g'):>8}{_span(r['node_vcpus'], ',.0f'):>11}{'not stated':>12}"
        f"{_span(r['usd_nodes_at_our_prices'], ',.0f'):>15}{'-':>10}{r['usd_per_month']:>10,}",
        "",
        *[f"- {line}" for line in result["explanation"]],
    ]
    return "\n".join(lines)


def load_bench(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
