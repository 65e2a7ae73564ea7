"""The batch definition of the card velocity features (pandas): the reference the streaming job is held to.

For each card, over a set of transactions (duplicates by `transaction_id` counted once):

    newest            = the card's greatest event time
    velocity_last_24h = count of the card's transactions with newest - window < event_time <= newest
    cardholder_age    = the age on the card's newest transaction
    event_timestamp   = newest

This is the value the online store must hold once the stream has seen the same transactions (the streaming
job, ml/models/fraud/streaming/flink_job.py, and the hand-written VelocityWindow both anchor the window at
the card's newest event, never at wall-clock time, so a replay gives the same answer).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import pandas as pd

from ml.models.fraud.streaming.events import Transaction
from ml.models.fraud.streaming.velocity import DEFAULT_WINDOW

COLUMNS = ("card_id", "cardholder_age", "velocity_last_24h", "event_timestamp")


def frame(transactions: Iterable[Transaction]) -> pd.DataFrame:
    """Transactions as a frame (card_id, transaction_id, event_time, cardholder_age)."""
    rows = [{"card_id": t.card_id, "transaction_id": t.transaction_id, "event_time": t.event_time,
             "cardholder_age": t.cardholder_age} for t in transactions]
    return pd.DataFrame(rows, columns=["card_id", "transaction_id", "event_time", "cardholder_age"])


def card_velocity(events: pd.DataFrame, window: timedelta = DEFAULT_WINDOW) -> pd.DataFrame:
    """One row per card (COLUMNS), sorted by card_id."""
    if window <= timedelta(0):
        raise ValueError(f"window must be positive, got {window}")
    missing = {"card_id", "transaction_id", "event_time", "cardholder_age"} - set(events.columns)
    if missing:
        raise ValueError(f"events frame lacks column(s): {', '.join(sorted(missing))}")
    unique = events.drop_duplicates(subset=["card_id", "transaction_id"], keep="first")
    newest = unique.groupby("card_id")["event_time"].transform("max")
    inside = unique[unique["event_time"] > newest - window]
    counts = inside.groupby("card_id").size().rename("velocity_last_24h")
    last = unique.sort_values(["card_id", "event_time"]).groupby("card_id").tail(1).set_index("card_id")
    out = pd.DataFrame({"cardholder_age": last["cardholder_age"], "velocity_last_24h": counts,
                        "event_timestamp": last["event_time"]}).reset_index()
    out["velocity_last_24h"] = out["velocity_last_24h"].astype("int64")
    out["cardholder_age"] = out["cardholder_age"].astype("int64")
    return out[list(COLUMNS)].sort_values("card_id").reset_index(drop=True)
