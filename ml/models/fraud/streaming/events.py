"""The fraud-transactions topic's message schema (JSON, one transaction per message).

    {"transaction_id": "t-1", "card_id": 42, "amount": 12.5,
     "event_time": "2026-01-01T12:00:00Z", "cardholder_age": 37}

Optional `flagged` (the payment system's decision from our model) and `fraud_label` (the confirmed
outcome, present on labelled transactions, e.g. after a chargeback investigation) feed the
business dashboard's false-positive rate; with `model_version` (the registry version that made the
decision: `model_version` of the inference response) they also feed the per-version F1 of the
automatic-rollback trigger (contracts/rollback.py).

`cardholder_age` rides along because the Feast view `card_features` holds it next to the velocity
and a push writes whole rows. Bad messages raise `InvalidEvent` naming the offending field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

REQUIRED = ("transaction_id", "card_id", "amount", "event_time", "cardholder_age")


class InvalidEvent(ValueError):
    """A message that is not a valid transaction; the reason names the field."""


@dataclass(frozen=True)
class Transaction:
    transaction_id: str
    card_id: int
    amount: float
    event_time: datetime
    cardholder_age: int
    flagged: bool | None = None
    fraud_label: bool | None = None
    model_version: str | None = None


def _int(doc: dict, key: str) -> int:
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent(f"{key} must be an integer, got {value!r}")
    return value


def parse(raw: bytes | str) -> Transaction:
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent(f"message is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidEvent(f"message must be a JSON object, got {type(doc).__name__}")
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise InvalidEvent(f"missing field(s): {', '.join(missing)}")
    amount = doc["amount"]
    if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
        raise InvalidEvent(f"amount must be a non-negative number, got {amount!r}")
    try:
        when = datetime.fromisoformat(str(doc["event_time"]).replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidEvent(f"event_time is not ISO 8601: {doc['event_time']!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    age = _int(doc, "cardholder_age")
    if not 0 <= age <= 130:
        raise InvalidEvent(f"cardholder_age out of range 0..130: {age}")
    flags = {}
    for key in ("flagged", "fraud_label"):
        value = doc.get(key)
        if value is not None and not isinstance(value, bool):
            raise InvalidEvent(f"{key} must be true, false or absent, got {value!r}")
        flags[key] = value
    version = doc.get("model_version")
    if version is not None and not (isinstance(version, str | int) and not isinstance(version, bool)
                                    and str(version).isdigit()):
        raise InvalidEvent(f"model_version must be a registry version number or absent, got {version!r}")
    return Transaction(str(doc["transaction_id"]), _int(doc, "card_id"), float(amount), when, age, **flags,
                       model_version=None if version is None else str(version))
