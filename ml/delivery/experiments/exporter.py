"""Prometheus metrics of the experiment controllers: traffic weights, counts, posteriors, A/B statistics.

A controller process owns its own `CollectorRegistry` (not the process-global one the model runtimes
use) and serves it on its metrics port; every round it sets the gauges from the experiment state, so
what Prometheus scrapes is what `mlplat experiment status` prints. `METRICS` is the contract with the
docs (docs/DELIVERY.md lists the same names; a test keeps the two in sync).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from ml.delivery.experiments.state import ExperimentState

WEIGHT = "mlplat_experiment_traffic_weight"
OUTCOMES = "mlplat_experiment_outcomes"
SUCCESSES = "mlplat_experiment_successes"
SUCCESS_RATE = "mlplat_experiment_success_rate"
POSTERIOR_ALPHA = "mlplat_experiment_posterior_alpha"
POSTERIOR_BETA = "mlplat_experiment_posterior_beta"
PROBABILITY_BEST = "mlplat_experiment_probability_best"
ROUNDS = "mlplat_experiment_rounds"
UPLIFT = "mlplat_experiment_ab_uplift"
P_VALUE = "mlplat_experiment_ab_p_value"

VARIANT_LABELS = ("model", "kind", "variant")
# name -> (labels, help); all gauges: each is set from the state of the latest round.
METRICS: dict[str, tuple[tuple[str, ...], str]] = {
    WEIGHT: (VARIANT_LABELS, "Traffic weight (percent of the model's live requests) the controller set per variant."),
    OUTCOMES: (VARIANT_LABELS, "Outcomes (labels, clicks) received since the experiment started, per variant; "
               "for the ctr metric, requests served."),
    SUCCESSES: (VARIANT_LABELS, "Successful outcomes (correct decisions, clicks) since the experiment started."),
    SUCCESS_RATE: (VARIANT_LABELS, "Successes per outcome (the experiment's metric) per variant."),
    POSTERIOR_ALPHA: (VARIANT_LABELS, "Bandit: alpha of the variant's Beta posterior (1 + successes)."),
    POSTERIOR_BETA: (VARIANT_LABELS, "Bandit: beta of the variant's Beta posterior (1 + failures)."),
    PROBABILITY_BEST: (VARIANT_LABELS, "Bandit: posterior probability that the variant has the highest rate."),
    ROUNDS: (("model", "kind"), "Rounds the controller has completed."),
    UPLIFT: (("model",), "A/B: relative uplift of the challenger's rate over the champion's."),
    P_VALUE: (("model",), "A/B: p-value of H0 'the challenger is not better by the margin' (interim until decided)."),
}


class ExperimentMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.gauges = {name: Gauge(name, help_, list(labels), registry=self.registry)
                       for name, (labels, help_) in METRICS.items()}

    def update(self, state: ExperimentState) -> None:
        g = self.gauges
        for variant, weight in state.weights.items():
            g[WEIGHT].labels(state.model, state.kind, variant).set(weight)
        for variant, counts in state.counts.items():
            labels = (state.model, state.kind, variant)
            g[OUTCOMES].labels(*labels).set(counts["trials"])
            g[SUCCESSES].labels(*labels).set(counts["successes"])
            if counts.get("rate") is not None:
                g[SUCCESS_RATE].labels(*labels).set(counts["rate"])
        for variant, post in state.posteriors.items():
            labels = (state.model, state.kind, variant)
            g[POSTERIOR_ALPHA].labels(*labels).set(post["alpha"])
            g[POSTERIOR_BETA].labels(*labels).set(post["beta"])
            g[PROBABILITY_BEST].labels(*labels).set(post["p_best"])
        g[ROUNDS].labels(state.model, state.kind).set(state.rounds)
        test = (state.decision or {}).get("test")
        if test:
            g[UPLIFT].labels(state.model).set(test["uplift"])
            g[P_VALUE].labels(state.model).set(test["p_value"])

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve /metrics on host:port from a daemon thread (prometheus_client's own server)."""
        start_http_server(port, addr=host, registry=self.registry)
