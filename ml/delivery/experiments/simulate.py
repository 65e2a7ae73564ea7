"""Simulated feedback with known true rates, through the real splitter and the real feedback endpoint.

Requests go to the splitter (the models' entry point) as any caller's would; the splitter picks the
variant by its current weights and says which one answered (`X-Mlplat-Variant`) under which request id
(`X-Request-ID`). The simulator then draws each request's outcome with the true rate of the variant that
answered (seeded) and posts it to the feedback endpoint, which files it under that variant from the
splitter's own log. So the only made-up part is the outcome: which variant served, how many requests it
got and how the outcome reaches the experiment are the platform's own.

`report="all"` posts every outcome (a label arrives for every decision; metric success-rate);
`report="successes"` posts only successes (only clicks are reported; metric ctr).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ml.delivery.feedback import Outcome
from ml.delivery.feedback_server import FeedbackClient
from ml.delivery.splitter import REQUEST_ID_HEADER, VARIANT_HEADER

BATCH = 500
REPORTS = ("all", "successes")


class SimulationError(RuntimeError):
    """The simulation could not send its traffic or outcomes; the message says where it failed."""

    user_error = True


@dataclass
class SimulationResult:
    requests: int
    served: dict[str, int] = field(default_factory=dict)
    successes: dict[str, int] = field(default_factory=dict)
    posted: int = 0
    failed: int = 0  # requests answered with a non-2xx status (no outcome is posted for them)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "served": self.served, "successes": self.successes,
                "posted": self.posted, "failed": self.failed, "seconds": round(self.seconds, 2)}


def parse_rates(text: str) -> dict[str, float]:
    """`champion=0.30,challenger=0.33` -> rates; every rate in [0, 1]."""
    rates: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            rate = float(value)
        except ValueError:
            rate = -1.0
        if not sep or not name or not 0.0 <= rate <= 1.0:
            raise SimulationError(f"--rates takes VARIANT=RATE pairs with rates in [0, 1], got {part!r}")
        rates[name.strip()] = rate
    if not rates:
        raise SimulationError("--rates names no variant (e.g. champion=0.30,challenger=0.33)")
    return rates


def _send(splitter_url: str, model: str, body: bytes, count: int, out: list[tuple[str, str] | None],
          errors: list[str]) -> None:
    url = urllib.parse.urlsplit(splitter_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=30)
    path = f"/v2/models/{model}/infer"
    try:
        for _ in range(count):
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            rid, variant = resp.getheader(REQUEST_ID_HEADER), resp.getheader(VARIANT_HEADER)
            out.append((rid, variant) if 200 <= resp.status < 300 and rid and variant else None)
    except (OSError, http.client.HTTPException) as exc:
        errors.append(f"{splitter_url}{path}: {exc}")
    finally:
        conn.close()


def simulate(splitter_url: str, feedback_url: str, model: str, body: Mapping[str, Any], rates: Mapping[str, float],
             requests: int, *, seed: int = 0, concurrency: int = 4, report: str = "all",
             kind: str = "label") -> SimulationResult:
    """Send `requests` through the splitter, post outcomes drawn with `rates[variant]`."""
    if report not in REPORTS:
        raise SimulationError(f"report must be one of {', '.join(REPORTS)}, got {report!r}")
    if requests < 1 or concurrency < 1:
        raise SimulationError(f"requests and concurrency must be at least 1, got {requests} and {concurrency}")
    started = time.perf_counter()
    payload = json.dumps(dict(body)).encode()
    shares = [requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)]
    answers: list[list[tuple[str, str] | None]] = [[] for _ in shares]
    errors: list[str] = []
    threads = [threading.Thread(target=_send, args=(splitter_url, model, payload, n, answers[i], errors), daemon=True)
               for i, n in enumerate(shares)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SimulationError(f"sending requests through the splitter failed: {errors[0]}")
    result = SimulationResult(requests=requests)
    # One generator per variant: a variant's n-th outcome is fixed by the seed, whatever order the concurrent
    # answers came back in, so the counts depend only on how many requests each variant answered.
    rngs = {v: np.random.default_rng([seed, i]) for i, v in enumerate(sorted(rates))}
    outcomes: list[Outcome] = []
    for answer in (a for chunk in answers for a in chunk):
        if answer is None:
            result.failed += 1
            continue
        rid, variant = answer
        if variant not in rates:
            raise SimulationError(f"the splitter answered with variant {variant!r}, which --rates does not name "
                                  f"({', '.join(rates)})")
        success = bool(rngs[variant].random() < rates[variant])
        result.served[variant] = result.served.get(variant, 0) + 1
        result.successes[variant] = result.successes.get(variant, 0) + int(success)
        if success or report == "all":
            outcomes.append(Outcome(model=model, request_id=rid, success=success, kind=kind))
    client = FeedbackClient(feedback_url)
    for i in range(0, len(outcomes), BATCH):
        client.post(outcomes[i:i + BATCH])
    result.posted = len(outcomes)
    result.seconds = time.perf_counter() - started
    return result
