"""The fraud model's specification (standard library + contracts only: the IaC environment loads it).

Sample-data floor: the generated sample is synthetic and small (~500 held-out rows with ~17 frauds,
so F1 swings by 0.1 per misclassified fraud); the production floors (AUC 0.95 + F1 0.90) say nothing
there. AUC 0.90 checks that the model learned the planted signal, far above chance (AUC 0.5).
"""

from __future__ import annotations

from contracts.models import DashboardPanel, Features, ModelSpec, Stream

SPEC = ModelSpec(
    name="fraud",
    description="Fraud detection.",
    intended_use="Score single card transactions for fraud at authorisation time (probability and decision at "
                 "a threshold chosen for precision >= 0.9). Trained on labelled transactions; not a credit or "
                 "identity decision, and not for transactions of other schemas.",
    runtime="ml.models.fraud.runtime.FraudRuntime",
    # Per-feature contributions of one decision (TreeSHAP from the booster shipped beside the graph).
    explainer="ml.models.fraud.explainer.FraudExplainerRuntime",
    plugin="ml.models.fraud.plugin.FraudPlugin",
    quality_gates={"auc": 0.95, "f1": 0.90},
    sample_gates={"auc": 0.90},
    metrics=("auc", "pr_auc", "precision", "recall", "f1"),
    features=Features(
        module="ml.models.fraud.features",
        entities=("card", "device"),
        feature_views=("card_features", "device_features"),
    ),
    # Velocity features from this topic: the Flink job where the stack enables Flink, else the stream ingestor
    # (ml/models/fraud/streaming; docs/DATA-PLATFORM.md says which writes what).
    stream=Stream(topic="fraud-transactions", ingestor="ml.models.fraud.streaming.ingestor",
                  job="ml.models.fraud.streaming.flink_job"),
    business_panels=(
        DashboardPanel(
            title="Fraud rate (share of transactions flagged)",
            expr='sum(rate(mlplat_model_predicted_class_total{model=~"fraud.*",cls="fraud"}[1h])) '
                 '/ sum(rate(mlplat_model_predicted_class_total{model=~"fraud.*"}[1h]))',
            legend="fraud rate", unit="percentunit", summary="fraud rate",
        ),
        DashboardPanel(
            title="False-positive rate (labelled transactions)",
            expr='sum(rate(mlplat_ingestor_labelled_transactions_total{flagged="true",fraud="false"}[1d])) '
                 '/ sum(rate(mlplat_ingestor_labelled_transactions_total{fraud="false"}[1d]))',
            legend="FPR", unit="percentunit", summary="false-positive rate",
        ),
    ),
)
