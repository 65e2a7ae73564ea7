"""Inference API fuzzing on the demo platform (`make demo`'s `mlplat local up --redis`), per model.

1. schemathesis against MLServer's own OpenAPI for the V2 dataplane, as the running server publishes
   it for each model (`GET /v2/models/<model>/docs/dataplane.json`): every operation, positive and
   negative cases. Checked on every response: schemathesis' `not_a_server_error`,
   `status_code_conformance`, `content_type_conformance`, `response_schema_conformance`, and ours:
   the body of every 4xx names the problem. Three corrections are made to the document first, each
   printed: `"type": "bytes"` is not a JSON Schema type (V2 BYTES tensors are JSON strings); readiness
   endpoints answer 404 for an unknown version (the V2 protocol: "a 4xx status code indicating
   false"); 422 is documented for inference (request bodies the server's framework cannot parse, and the
   runtimes' unusable values, docs/MODELS.md).
2. hypothesis, model-aware: a valid request of the model with exactly one tensor whose metadata
   contradicts its data (shape vs number of values, datatype vs the values or their range) must be a
   400 naming that input; consistent variants (batches, nested rows, narrower integer types) a 200.
3. The streaming routes (`infer_stream`, `generate_stream`): a valid request streams one event equal to
   `/infer`'s answer. MLServer 1.7.1 sends the 200 status line before the model runs, so an invalid
   request cannot become a 4xx there: its stream ends without an event (counted and printed; never
   an answer to a bad request).

Bounded: a fixed number of examples (MLPLAT_FUZZ_EXAMPLES scales it), seed MLPLAT_FUZZ_SEED (default 0,
printed) so a failure reproduces. Counts are printed per model.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import os
import time
from typing import Any

import pytest
import requests

pytestmark = [pytest.mark.integration, pytest.mark.ml]

SEED = int(os.environ.get("MLPLAT_FUZZ_SEED", "0"))
SCALE = float(os.environ.get("MLPLAT_FUZZ_EXAMPLES", "1"))
GENERIC = {"", "bad request", "not found", "internal server error", "unprocessable entity", "error"}
STREAMS = ("/infer_stream", "/generate_stream")


def _examples(label: str) -> int:
    """More examples where the models' code runs (inference), a few for the server's own routes."""
    if label.endswith("/infer") and "/versions/" not in label:
        n = 12
    elif label.endswith(("/infer", "/generate")):
        n = 4
    else:
        n = 3
    return max(1, round(n * SCALE))


# ---- the OpenAPI document, as served, with the documented corrections -------------------------------

def served_openapi(base: str, model: str) -> tuple[dict[str, Any], list[str]]:
    doc = requests.get(f"{base}/v2/models/{model}/docs/dataplane.json", timeout=10).json()
    notes = []
    text = json.dumps(doc)
    if '"type": "bytes"' in text:
        doc = json.loads(text.replace('"type": "bytes"', '"type": "string"'))
        notes.append('TensorData `"type": "bytes"` -> "string" (not a JSON Schema type; BYTES are JSON strings)')
    error = {"application/json": {"schema": {"type": "object", "properties": {
        "error": {"type": "string"}, "detail": {"type": "array"}}}}}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            if path.endswith("/ready") and "404" not in op["responses"]:
                op["responses"]["404"] = {"description": "Not Found (V2 protocol: 4xx means not ready)",
                                          "content": error}
                notes.append(f"{method.upper()} {path}: 404 documented (V2 protocol)")
            if path.endswith(("/infer", "/generate")) and "422" not in op["responses"]:
                op["responses"]["422"] = {"description": "Unprocessable: body validation or unusable values",
                                          "content": error}
                notes.append(f"{method.upper()} {path}: 422 documented (docs/MODELS.md)")
    return doc, notes


def names_problem(status: int, text: str) -> str | None:
    """None if the 4xx body says what is wrong, else why not."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        return f"not JSON: {text[:80]!r}"
    if isinstance(body, dict) and isinstance(body.get("detail"), list) and body["detail"]:
        # FastAPI's request validation: each entry names the location and the rule broken.
        bad = [d for d in body["detail"] if not (isinstance(d, dict) and d.get("loc") and d.get("msg"))]
        return f"validation entries without loc/msg: {bad[:2]}" if bad else None
    message = body.get("error") if isinstance(body, dict) else None
    if not isinstance(message, str) or message.strip().lower() in GENERIC or len(message.strip()) < 15:
        return f"generic or missing message: {text[:120]!r}"
    return None


# ---- 1. schemathesis over the served OpenAPI --------------------------------------------------------

def run_schemathesis(base: str, model: str) -> dict[str, Any]:
    import schemathesis
    from schemathesis import GenerationMode

    doc, notes = served_openapi(base, model)
    schema = schemathesis.openapi.from_dict(doc)
    run: dict[str, Any] = {"counts": collections.Counter(), "failures": [], "notes": notes, "samples": {},
                           "operations": 0, "session": requests.Session()}
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path.endswith(STREAMS):
            continue  # section 3: a streamed body is not the document's application/json
        run["operations"] += 1
        # Negative cases need a body or a typed parameter: the GET routes only have string path parameters.
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if op.method.upper() == "POST" else (
            GenerationMode.POSITIVE,)
        for mode in modes:
            _fuzz_operation(base, op, mode, run)
    del run["session"]
    return run


def _fuzz_operation(base: str, op: Any, mode: Any, run: dict[str, Any]) -> None:
    from hypothesis import HealthCheck, Phase, given, seed, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    counts, failures, samples = run["counts"], run["failures"], run["samples"]

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=_examples(op.label), deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @seed(SEED)
    def fuzz(case: Any) -> None:
        try:
            response = case.call(base_url=base, session=run["session"], timeout=30)
        except requests.RequestException as exc:
            counts[(op.label, -1)] += 1
            failures.append(f"{op.label}: no response ({type(exc).__name__}: {exc})\n  {case.as_curl_command()}")
            return
        counts[(op.label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=checks)
        except Exception as exc:  # schemathesis' failure group: record, keep fuzzing
            failures.append(f"{op.label} {response.status_code}: {str(exc)[:400]}\n  "
                            f"{case.as_curl_command()[:600]}")
        if 400 <= response.status_code < 500:
            why = names_problem(response.status_code, response.text)
            if why:
                failures.append(f"{op.label} {response.status_code}: {why}")
            samples.setdefault(response.status_code, response.text[:160])

    # No negative case exists for some operations (a GET whose only parameter is a string in the path).
    with contextlib.suppress(Unsatisfiable):
        fuzz()


# ---- 2. model-aware contradictions -----------------------------------------------------------------

INTEGER_TYPES = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")


def _contradictions(base_request: dict[str, Any]) -> Any:
    from hypothesis import strategies as st

    n_inputs = len(base_request["inputs"])

    @st.composite
    def one(draw: Any) -> tuple[str, dict[str, Any], str]:
        req = copy.deepcopy(base_request)
        inp = req["inputs"][draw(st.integers(0, n_inputs - 1))]
        data, n, numeric = inp["data"], len(inp["data"]), inp["datatype"] != "BYTES"
        kinds = ["shape-count", "shape-rank", "shape-negative", "data-extra", "ragged"]
        kinds += (["non-numeric", "boolean", "datatype-bytes", "datatype-bool", "range"] if numeric
                  else ["non-string", "datatype-numeric"])
        if inp["datatype"] in INTEGER_TYPES:
            kinds.append("fraction")
        kind = draw(st.sampled_from(kinds))
        i = draw(st.integers(0, n - 1))
        if kind == "shape-count":
            inp["shape"] = [n + draw(st.integers(-n, 4).filter(lambda d: d != 0))]
        elif kind == "shape-rank":
            inp["shape"] = [n, draw(st.integers(2, 4))]
        elif kind == "shape-negative":
            inp["shape"] = [-draw(st.integers(1, 5))]
        elif kind == "data-extra":
            inp["data"] = data + data[:1] * draw(st.integers(1, 3))
        elif kind == "ragged":
            inp["data"] = [data, data[:1]]
        elif kind == "non-numeric":
            data[i] = draw(st.one_of(st.text(max_size=8), st.none(), st.dictionaries(st.text(max_size=3),
                                                                                    st.integers(), max_size=2)))
        elif kind == "boolean":
            data[i] = draw(st.booleans())
        elif kind == "datatype-bytes":
            inp["datatype"] = "BYTES"
        elif kind == "datatype-bool":
            inp["datatype"] = "BOOL"
            data[i] = draw(st.one_of(st.integers(2, 10**6), st.floats(0.1, 1e6)))
        elif kind == "range":
            inp["datatype"], data[i] = draw(st.sampled_from([
                ("INT8", draw(st.integers(128, 10**9))), ("UINT8", draw(st.integers(-(10**9), -1))),
                ("INT64", draw(st.integers(2**63, 2**80))), ("FP16", draw(st.floats(7e4, 1e30))),
                ("FP32", draw(st.floats(1e39, 1e300)))]))
        elif kind == "fraction":
            data[i] = draw(st.floats(-1e6, 1e6, allow_nan=False).filter(lambda x: not x.is_integer()))
        elif kind == "non-string":
            data[i] = draw(st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.none()))
        elif kind == "datatype-numeric":
            inp["datatype"] = draw(st.sampled_from(["INT64", "FP32", "BOOL"]))
        return kind, req, inp["name"]

    return one()


def _consistent(base_request: dict[str, Any]) -> Any:
    from hypothesis import strategies as st

    @st.composite
    def one(draw: Any) -> tuple[str, dict[str, Any], int]:
        req = copy.deepcopy(base_request)
        if any(i["name"] == "user_id" for i in req["inputs"]):  # one reader per request: vary k instead
            k = draw(st.integers(1, 100))
            req["parameters"] = {**(req.get("parameters") or {}), "k": k}
            return "k", req, k
        n = draw(st.integers(1, 8))
        nested = draw(st.booleans())
        for inp in req["inputs"]:
            values = inp["data"] * n
            inp["data"], inp["shape"] = ([[v] for v in values], [n, 1]) if nested else (values, [n])
            if inp["datatype"] == "INT64" and all(-(2**15) <= v < 2**15 for v in values):
                inp["datatype"] = draw(st.sampled_from(["INT64", "INT32", "INT16"]))
        return ("nested-batch" if nested else "batch"), req, n

    return one()


def run_contradictions(base: str, model: str, request: dict[str, Any]) -> dict[str, Any]:
    from hypothesis import HealthCheck, Phase, given, seed, settings

    url = f"{base}/v2/models/{model}/infer"
    session = requests.Session()
    counts: collections.Counter[tuple[str, int]] = collections.Counter()
    failures: list[str] = []

    @given(case=_contradictions(request))
    @settings(max_examples=max(1, round(60 * SCALE)), deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @seed(SEED)
    def contradicting(case: tuple[str, dict[str, Any], str]) -> None:
        kind, body, name = case
        response = session.post(url, json=body, timeout=30)
        counts[(kind, response.status_code)] += 1
        message = response.json().get("error", "") if response.headers.get("content-type", "").startswith(
            "application/json") else response.text
        if response.status_code != 400 or f"'{name}'" not in str(message):
            failures.append(f"{kind} on {name!r}: {response.status_code} {response.text[:200]}\n  body: "
                            f"{json.dumps(body)[:300]}")

    @given(case=_consistent(request))
    @settings(max_examples=max(1, round(15 * SCALE)), deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @seed(SEED)
    def consistent(case: tuple[str, dict[str, Any], int]) -> None:
        kind, body, n = case
        response = session.post(url, json=body, timeout=30)
        counts[(kind, response.status_code)] += 1
        if response.status_code != 200:
            failures.append(f"consistent {kind}: {response.status_code} {response.text[:200]}")
            return
        lengths = {o["name"]: o["shape"][0] for o in response.json()["outputs"] if o["name"] != "degraded"}
        if set(lengths.values()) != {n}:
            failures.append(f"consistent {kind} of {n}: output lengths {lengths}")

    contradicting()
    consistent()
    return {"counts": counts, "failures": failures}


# ---- 3. the streaming routes ---------------------------------------------------------------------

def run_streams(base: str, model: str, request: dict[str, Any]) -> dict[str, Any]:
    expected = requests.post(f"{base}/v2/models/{model}/infer", json=request, timeout=30).json()["outputs"]
    bad = copy.deepcopy(request)
    bad["inputs"][0]["shape"] = [len(bad["inputs"][0]["data"]) + 1]
    counts: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    for route in ("infer_stream", "generate_stream"):
        for label, url, body in (
            ("valid", f"{base}/v2/models/{model}/{route}", request),
            ("contradicting", f"{base}/v2/models/{model}/{route}", bad),
            ("unknown-version", f"{base}/v2/models/{model}/versions/no-such-version/{route}", request),
        ):
            events, broken = [], False
            with requests.post(url, json=body, timeout=30, stream=True) as response:
                try:
                    events = [line for line in response.iter_lines() if line.startswith(b"data:")]
                except requests.exceptions.ChunkedEncodingError:
                    broken = True
            counts[f"{route} {label}: {response.status_code}{' stream ended without an event' if broken else ''}"] += 1
            if response.status_code >= 500:
                failures.append(f"{route} {label}: {response.status_code}")
            if label == "valid":
                outputs = json.loads(events[0][5:])["outputs"] if len(events) == 1 else None
                if response.status_code != 200 or outputs is None or \
                        [o["data"] for o in outputs] != [o["data"] for o in expected]:
                    failures.append(f"{route} valid: {response.status_code}, events {events[:2]}")
            elif events:
                failures.append(f"{route} {label}: answered a bad request with {events[:1]}")
    return {"counts": counts, "failures": failures}


# ---- the tests --------------------------------------------------------------------------------------

def _smoke_requests(platform: dict[str, Any]) -> dict[str, dict[str, Any]]:
    summary = json.loads((platform["state"] / "summary.json").read_text())
    return {name: doc["request"] for name, doc in summary["smoke"].items()}


@pytest.fixture(scope="module")
def served(demo_up: dict[str, Any]) -> tuple[str, dict[str, dict[str, Any]]]:
    return demo_up["http"], _smoke_requests(demo_up)


def _counts(title: str, counts: collections.Counter[Any]) -> list[str]:
    by_status: collections.Counter[Any] = collections.Counter()
    for key, n in counts.items():
        by_status[key[1] if isinstance(key, tuple) else key] += n
    return [f"  {title}: {sum(counts.values())} request(s)",
            "    by status: " + ", ".join(f"{k}={v}" for k, v in sorted(by_status.items(), key=str))]


@pytest.mark.parametrize("model", ["fraud", "sentiment", "recommendation"])
def test_fuzz_inference_api(served, model, capsys):
    base, smoke = served
    assert model in smoke, f"the demo platform does not serve {model}: {sorted(smoke)}"
    started = time.perf_counter()
    st_run = run_schemathesis(base, model)
    mutations = run_contradictions(base, model, smoke[model])
    streams = run_streams(base, model, smoke[model])
    lines = [f"\nfuzz {model} (seed {SEED}, {time.perf_counter() - started:.1f}s):",
             f"  OpenAPI corrections ({len(st_run['notes'])}):", *(f"    {n}" for n in st_run["notes"]),
             *_counts(f"schemathesis, {st_run['operations']} operation(s)", st_run["counts"]),
             *(f"    e.g. {status}: {text}" for status, text in sorted(st_run["samples"].items())),
             *_counts("contradicting / consistent tensors", mutations["counts"])]
    kinds = collections.Counter(k for k, _ in mutations["counts"].elements())
    lines.append("    kinds: " + ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())))
    lines.append("  streaming routes: " + ", ".join(f"{k} x{v}" for k, v in sorted(streams["counts"].items())))
    server_errors = sum(n for (_, status), n in st_run["counts"].items() if status >= 500) + sum(
        n for (_, status), n in mutations["counts"].items() if status >= 500)
    lines.append(f"  5xx: {server_errors}")
    with capsys.disabled():  # the counts belong in the suite's output, passing or not
        print("\n".join(lines))
    problems = st_run["failures"] + mutations["failures"] + streams["failures"]
    assert sum(st_run["counts"].values()) > 0 and sum(mutations["counts"].values()) > 0
    assert server_errors == 0 and not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:15])
