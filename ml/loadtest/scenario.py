"""The Locust scenario: one user class per served model, run headless with Locust as a library.

Each class posts its model's requests (the mix, round robin from a random start per user) to the V2
endpoint `/v2/models/<name>/infer` with no wait between requests (closed loop: each user keeps one
request in flight, so `--users` is the concurrency). The users are split evenly over the models
(`fixed_count`); every model gets at least one. Through the Seldon mesh (`mesh=True`) a model is
addressed as its champion Seldon Model (`<name>-champion`, header `Seldon-Model`: Seldon's Experiment
then splits it as configured); an explainer keeps its own name.

Importing this module imports Locust, which monkey-patches the standard library for gevent: only the
load-test command imports it, in a process of its own.
"""

from __future__ import annotations

import json
import random
from typing import Any

import gevent
from locust import FastHttpUser, constant, task
from locust.env import Environment

from contracts import model_registry
from ml.loadtest.results import LoadReport, ModelLoad, split_users


def mesh_name(served: str) -> str:
    """The Seldon Model that serves `served` on the cluster: a registered model's champion, else itself."""
    return f"{served}-champion" if served in model_registry.names() else served


def _user_class(served: str, route: str, bodies: list[bytes], count: int, mesh: bool) -> type[FastHttpUser]:
    headers = {"Content-Type": "application/json", **({"Seldon-Model": route} if mesh else {})}
    path = f"/v2/models/{route}/infer"

    class ModelUser(FastHttpUser):
        wait_time = constant(0)
        fixed_count = count

        def on_start(self) -> None:
            self.position = random.randrange(len(bodies))

        @task
        def infer(self) -> None:
            self.position = (self.position + 1) % len(bodies)
            self.client.post(path, data=bodies[self.position], headers=headers, name=served)

    ModelUser.__name__ = f"{served.replace('-', '_')}_user"
    return ModelUser


def run(target: str, mix: dict[str, list[dict[str, Any]]], users: int, duration_s: float,
        mesh: bool = False, seed: int = 0) -> LoadReport:
    """Run the scenario against `target` for `duration_s` seconds and return what the clients saw."""
    random.seed(seed)
    counts = split_users(users, list(mix))
    classes = [_user_class(name, mesh_name(name) if mesh else name,
                           [json.dumps(b).encode() for b in bodies], counts[name], mesh)
               for name, bodies in mix.items()]
    report = LoadReport(target=target, users=users, duration_s=duration_s, models={n: ModelLoad(n) for n in mix})

    env = Environment(user_classes=classes, host=target.rstrip("/"))

    def on_request(name: str, response_time: float, exception: BaseException | None = None, **_: Any) -> None:
        load = report.models.get(name)
        if load is not None:
            load.record(response_time, None if exception is None else f"{type(exception).__name__}: {exception}")

    env.events.request.add_listener(on_request)
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=users)  # every user at once: the whole duration is under full load
    gevent.sleep(duration_s)
    runner.quit()
    return report
