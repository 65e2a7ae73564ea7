"""Compare the serving lexicon scorers (lexicon_scorers.py) with the VADER and TextBlob packages on every text
of a sentiment data directory, as the model prepares them; print how many differ and the CPU each way takes per
text; exit 1 on any difference. Run it after upgrading either package:

    python -m ml.models.sentiment.compare_lexicons --data DIR
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from textblob.en import sentiment as textblob_sentiment

from ml.models.sentiment import algorithm, data, lexicons
from ml.models.sentiment.lexicon_scorers import TextBlobScorer, VaderScorer


def compare(texts: Sequence[str]) -> dict[str, float]:
    """Both scorers and both packages on every text (as the model prepares it): texts whose scores differ,
    and the CPU microseconds per text of each way."""
    vader, textblob = VaderScorer(), TextBlobScorer(textblob_sentiment)
    package_vader, package_textblob = lexicons._analyzers()
    differ, fast_s, package_s = 0, 0.0, 0.0
    for raw in texts:
        prepared = algorithm.prepare(raw, algorithm.DEFAULT_PARAMS["max_chars"])
        started = time.process_time()
        ours = vader.polarity_scores(prepared.light), textblob(prepared.tokens)
        middle = time.process_time()
        theirs = package_vader.polarity_scores(prepared.light), tuple(package_textblob(prepared.tokens)[:2])
        package_s += time.process_time() - middle
        fast_s += middle - started
        differ += ours != theirs
    n = max(len(texts), 1)
    return {"texts": len(texts), "differ": differ, "fast_us": round(fast_s / n * 1e6, 1),
            "packages_us": round(package_s / n * 1e6, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="compare the fast lexicon scorers with the packages")
    parser.add_argument("--data", type=Path, required=True, help="sentiment data directory (all its files are read)")
    args = parser.parse_args(argv)
    texts = data.load(args.data)["text"].tolist()
    human = data.load_human(args.data)
    if human is not None:
        texts += human["text"].tolist()
    result = compare(texts)
    print(f"{result['texts']} texts, {result['differ']} with different scores; CPU per text: fast scorers "
          f"{result['fast_us']} us, packages {result['packages_us']} us")
    return 1 if result["differ"] else 0


if __name__ == "__main__":
    sys.exit(main())
