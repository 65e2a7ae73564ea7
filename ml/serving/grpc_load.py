"""Closed-loop load generator for MLServer's V2 gRPC endpoint (`inference.GRPCInferenceService/ModelInfer`).

No packaged gRPC load tool installs here (`ghz` is in neither Debian's, PyPI's nor npm's registry), so
this is a small multi-process client on `grpcio`: `processes` worker processes (spawned, so no gRPC
state crosses a fork), each keeping `concurrency / processes` calls in flight on one channel with
`grpc.aio` for `duration_s` seconds. Requests are serialized once up front and sent as raw bytes, and
responses are not parsed (only the status is checked), so the client spends as little CPU as it can
on the shared cores; it still costs more than wrk does per request, which the comparison with REST
must keep in mind (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from typing import Any

import numpy as np

METHOD = "/inference.GRPCInferenceService/ModelInfer"


def encode_requests(model: str, bodies: list[dict[str, Any]]) -> list[bytes]:
    """V2 JSON bodies -> serialized `ModelInferRequest` messages for `model`."""
    from mlserver.grpc.converters import ModelInferRequestConverter
    from mlserver.types import InferenceRequest

    out = []
    for body in bodies:
        body = {**body, "inputs": [
            {**inp, "data": [v.encode() if isinstance(v, str) else v for v in inp["data"]]}
            if inp.get("datatype") == "BYTES" else inp for inp in body["inputs"]]}  # proto BYTES are bytes
        msg = ModelInferRequestConverter.from_types(InferenceRequest.model_validate(body), model_name=model)
        out.append(msg.SerializeToString())
    return out


async def _drive(target: str, payloads: list[bytes], in_flight: int, duration_s: float,
                 start_at: float) -> tuple[list[float], int]:
    import grpc

    times: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        await channel.channel_ready()
        await asyncio.sleep(max(0.0, start_at - time.time()))  # every process starts together
        deadline = time.perf_counter() + duration_s

        async def worker(k: int) -> None:
            nonlocal errors
            i = k
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                try:
                    await call(payloads[i % len(payloads)], timeout=10)
                    times.append(time.perf_counter() - t)
                except grpc.aio.AioRpcError:
                    errors += 1
                i += in_flight

        await asyncio.gather(*(worker(k) for k in range(in_flight)))
    return times, errors


def _process(args: tuple[str, list[bytes], int, float, float]) -> tuple[list[float], int]:
    return asyncio.run(_drive(*args))


def grpc_load(target: str, model: str, bodies: list[dict[str, Any]], concurrency: int, duration_s: int,
              processes: int = 2) -> dict[str, Any]:
    """p50/p99 latency and requests/s of `model` at `target` (host:port) at a fixed concurrency."""
    payloads = encode_requests(model, bodies)
    processes = max(1, min(processes, concurrency))
    shares = [concurrency // processes + (1 if k < concurrency % processes else 0) for k in range(processes)]
    start_at = time.time() + 3.0  # time for the spawned interpreters to import grpc and connect
    ctx = mp.get_context("spawn")
    with ctx.Pool(processes) as pool:
        results = pool.map(_process, [(target, payloads, n, float(duration_s), start_at) for n in shares])
    times = [t for ts, _ in results for t in ts]
    errors = sum(e for _, e in results)
    if not times:
        return {"tool": "grpc-python", "p50_ms": float("nan"), "p99_ms": float("nan"), "rps": 0.0, "errors": errors}
    ms = np.asarray(times) * 1000
    return {
        "tool": f"grpc-python x{processes}",
        "p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "rps": round(len(times) / duration_s, 1), "errors": errors,
    }
