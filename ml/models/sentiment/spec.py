"""The sentiment model's specification (standard library + contracts only: the IaC environment loads it).

Sample-data floor: three balanced classes give ~0.33 macro-F1 by chance; 0.80 on the small generated
sample checks that the model learned the planted signal (the production floor, 0.92, is for real data).
"""

from __future__ import annotations

from contracts.models import ModelSpec

SPEC = ModelSpec(
    name="sentiment",
    description="Sentiment.",
    intended_use="Classify short English social-media texts as negative, neutral or positive (-1/0/1) with "
                 "class probabilities. Learned from lexicon-labelled Twitter and Reddit posts; not for other "
                 "languages, long documents or decisions about individuals.",
    runtime="ml.models.sentiment.runtime.SentimentRuntime",
    plugin="ml.models.sentiment.plugin.SentimentPlugin",
    quality_gates={"macro_f1": 0.92},
    sample_gates={"macro_f1": 0.80},
    features=None,  # the text is the only input (ml/models/sentiment/features.py says why)
)
