"""The recommendation model's specification (standard library + contracts only: the IaC environment
loads it).

Sample-data floor: popularity reaches NDCG@10 ~0.04 on the small generated sample; 0.15 checks that the
model learned the planted taste clusters (the production floor, 0.32, is for the real ratings).
"""

from __future__ import annotations

from contracts.models import Features, ModelSpec

SPEC = ModelSpec(
    name="recommendation",
    description="Book recommendation.",
    intended_use="Recommend books from the goodbooks catalogue to a reader, from the books they rated "
                 "(history in the request, or the reader's recent books from the online store); never "
                 "returns a book already read. Not for catalogues it was not trained on.",
    runtime="ml.models.recommendation.runtime.RecommendationRuntime",
    plugin="ml.models.recommendation.plugin.RecommendationPlugin",
    quality_gates={"ndcg@10": 0.32},
    sample_gates={"ndcg@10": 0.15},
    metrics=("ndcg@10", "recall@10"),
    features=Features(
        module="ml.models.recommendation.features",
        entities=("book", "reader"),
        feature_views=("book_features", "reader_recent_books"),
        every_request=False,  # only requests that carry a user_id instead of a history read the store
    ),
)
