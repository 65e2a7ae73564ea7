"""Per-card transaction velocity over a sliding window, with duplicate suppression.

Kafka delivery is at-least-once, so a redelivered transaction must not count twice: each card keeps
the ids it has counted inside the window. Events may arrive out of order; the window is anchored at
the newest event time seen for the card, never at wall-clock time, so replays give the same answer.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import datetime, timedelta

DEFAULT_WINDOW = timedelta(hours=24)


@dataclass
class _CardWindow:
    events: list[tuple[datetime, str]] = field(default_factory=list)  # min-heap by event time
    ids: set[str] = field(default_factory=set)
    newest: datetime | None = None


class VelocityWindow:
    """Counts transactions per card in the `window` ending at the card's newest event."""

    def __init__(self, window: timedelta = DEFAULT_WINDOW) -> None:
        if window <= timedelta(0):
            raise ValueError(f"window must be positive, got {window}")
        self.window = window
        self._cards: dict[int, _CardWindow] = {}

    def add(self, card_id: int, transaction_id: str, event_time: datetime) -> int:
        """Record one transaction; return the card's count in the window (duplicates ignored)."""
        card = self._cards.setdefault(card_id, _CardWindow())
        if card.newest is None or event_time > card.newest:
            card.newest = event_time
        start = card.newest - self.window
        if transaction_id not in card.ids and event_time > start:
            heapq.heappush(card.events, (event_time, transaction_id))
            card.ids.add(transaction_id)
        while card.events and card.events[0][0] <= start:
            _, old = heapq.heappop(card.events)
            card.ids.discard(old)
        return len(card.events)

    def seen(self, card_id: int, transaction_id: str) -> bool:
        """Whether this transaction is already counted in the card's window."""
        card = self._cards.get(card_id)
        return card is not None and transaction_id in card.ids

    def newest(self, card_id: int) -> datetime | None:
        """Event time the card's window ends at (late events do not move it back)."""
        card = self._cards.get(card_id)
        return None if card is None else card.newest

    def count(self, card_id: int) -> int:
        card = self._cards.get(card_id)
        return 0 if card is None else len(card.events)

    def __len__(self) -> int:
        return len(self._cards)
