"""The sentiment model's specification (standard library + contracts only: the IaC environment loads it).

Quality gate: macro-F1 against people's labels (`human_macro_f1`, held-out human-labelled tweets) >= 0.72,
and the lexicon-labelled held-out rows must still agree with their labelling tool (`lexicon_macro_f1`
>= 0.85). A model trained without the human-labelled file has no `human_macro_f1` and is never promoted.
Sample-data floors: three classes give ~0.33 macro-F1 by chance; 0.72 (human, no higher than the production
floor) and 0.80 (lexicon) on the small generated sample check that the model learned the planted signal
(it scores about 0.93 on both).
"""

from __future__ import annotations

from contracts.models import ModelSpec

SPEC = ModelSpec(
    name="sentiment",
    description="Sentiment.",
    intended_use="Classify short English social-media texts (raw tweets) as negative, neutral or positive (-1/0/1) "
                 "with class probabilities. Learned from human-labelled tweets, with lexicon-labelled Twitter and "
                 "Reddit posts as weak supervision; not for other languages, long documents or decisions about "
                 "individuals.",
    runtime="ml.models.sentiment.runtime.SentimentRuntime",
    plugin="ml.models.sentiment.plugin.SentimentPlugin",
    quality_gates={"human_macro_f1": 0.72, "lexicon_macro_f1": 0.85},
    # Sample-data floors never exceed the production floors (tests/infra/test_model_registry.py).
    sample_gates={"human_macro_f1": 0.72, "lexicon_macro_f1": 0.80},
    metrics=tuple(f"{source}_{m}" for source in ("human", "lexicon")
                  for m in ("macro_f1", "accuracy", "f1_negative", "f1_neutral", "f1_positive")),
    features=None,  # the text is the only input (ml/models/sentiment/features.py says why)
)
