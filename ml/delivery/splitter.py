"""The traffic-splitter interface every delivery controller (rollout, shadow, A/B tests, bandits) drives.

A model has variants (today `champion` and `challenger`); the splitter holds, per model, an integer
weight per variant (shares of live traffic, summing to 100) and optionally a mirror: one variant that
receives a copy of `percent` % of the requests without answering callers. Two implementations:

- local: HAProxy's runtime API (ml/delivery/haproxy.py), weights change without a reload;
- cluster: patches of the Seldon Experiment `<model>-experiment` (ml/delivery/seldon.py); Argo CD
  ignores exactly those fields, so a step is an Experiment patch and the final promotion a git change.

Every response that passed the splitter carries the variant that answered (`X-Mlplat-Variant`) and a
request id (`X-Request-ID`), the key the feedback endpoint (ml/delivery/feedback.py) files outcomes under.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

CHAMPION = "champion"
CHALLENGER = "challenger"
VARIANTS = (CHAMPION, CHALLENGER)
TOTAL = 100  # weights are percentages of the model's live traffic

VARIANT_HEADER = "X-Mlplat-Variant"
REQUEST_ID_HEADER = "X-Request-ID"


class SplitterError(RuntimeError):
    """The splitter refused or failed a change (the message names the model, variant and reason)."""


@runtime_checkable
class Splitter(Protocol):
    def weights(self, model: str) -> dict[str, int]:
        """Current weight per variant of `model` (sums to 100)."""
        ...

    def set_weights(self, model: str, weights: Mapping[str, int]) -> None:
        """Set every variant's weight at once (validated with `check_weights`)."""
        ...

    def mirror(self, model: str) -> tuple[str | None, int]:
        """(variant receiving the mirrored copy or None, percent of requests mirrored)."""
        ...

    def set_mirror(self, model: str, variant: str | None, percent: int) -> None:
        """Mirror `percent` % of `model`'s requests to `variant` (None or percent 0: no mirror)."""
        ...


def check_weights(model: str, weights: Mapping[str, int]) -> dict[str, int]:
    """Every variant named once, integer weights 0..100 summing to 100; returns them in VARIANTS order."""
    unknown = sorted(set(weights) - set(VARIANTS))
    if unknown:
        raise ValueError(f"{model}: unknown variant(s) {', '.join(unknown)}; expected {', '.join(VARIANTS)}")
    out = {}
    for variant in VARIANTS:
        value = weights.get(variant, 0)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{model}: weight of {variant} must be a whole number, got {value!r}")
        if not 0 <= value <= TOTAL:
            raise ValueError(f"{model}: weight of {variant} must be 0..{TOTAL}, got {value}")
        out[variant] = value
    if sum(out.values()) != TOTAL:
        raise ValueError(f"{model}: weights {out} sum to {sum(out.values())}, expected {TOTAL}")
    return out


def check_mirror(model: str, variant: str | None, percent: int) -> tuple[str | None, int]:
    """A mirror goes to the challenger (the champion answers callers) with 0..100 % of requests."""
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= TOTAL:
        raise ValueError(f"{model}: mirror percent must be a whole number 0..{TOTAL}, got {percent!r}")
    if variant is None or percent == 0:
        return None, 0
    if variant != CHALLENGER:
        raise ValueError(f"{model}: only the {CHALLENGER} can receive mirrored traffic (the {CHAMPION} answers "
                         f"callers), got {variant!r}")
    return variant, percent


def split(model: str, challenger_share: int) -> dict[str, int]:
    """Weights that give the challenger `challenger_share` % and the champion the rest."""
    return check_weights(model, {CHAMPION: TOTAL - challenger_share, CHALLENGER: challenger_share})
