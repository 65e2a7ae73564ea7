"""`mlplat rollout ... --cluster`: the command-line side of ml/delivery/rollout_cluster_cli.py (messages, exit codes).

Exit codes as the local commands: 0 promoted (or done), 3 stopped or aborted by the analysis, 1 an error of the
rollout, 2 no cluster to talk to (no kube config, API server unreachable).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from dataclasses import asdict
from typing import Any

from ml.delivery.kube_api import KubeError, KubernetesApi
from ml.delivery.rollout import RolloutError, format_status
from ml.delivery.seldon import SplitterError

EXIT_STOPPED = 3
DEFAULT_POLL_S = 15.0


def _api(command: str, context: str | None) -> Any:
    try:
        api = KubernetesApi.connect(context, in_cluster=False)
    except KubeError as exc:
        print(f"mlplat rollout {command} --cluster: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"mlplat rollout {command}: cluster {api.where}", file=sys.stderr, flush=True)
    return api


def _fail(command: str, exc: Exception) -> int:
    print(f"mlplat rollout {command} --cluster: {exc}", file=sys.stderr)
    return 1


def start(args: argparse.Namespace) -> int:
    from ml.delivery import rollout_cluster_cli as cl

    api = _api("start", args.context)
    try:
        previous = cl.last_started(api, args.name)
        job = cl.start(api, args.name, args.version, args.steps, args.interval, args.min_requests,
                       started_by=getpass.getuser(), poll_s=args.poll or DEFAULT_POLL_S)
    except (RolloutError, KubeError) as exc:
        return _fail("start", exc)
    where = f"{job['metadata']['namespace']}/{job['metadata']['name']}"
    print(f"{args.name}: rollout of v{args.version} runs as Job {where} (it goes on if this terminal closes)",
          flush=True)
    if args.detach:
        print(f"`mlplat rollout status {args.name} --cluster` shows it; `mlplat rollout abort {args.name} --cluster` "
              "stops it")
        return 0
    try:
        result = cl.follow(api, args.name, previous, lambda line: print(line, flush=True))
    except (RolloutError, KubeError) as exc:
        return _fail("start", exc)
    except KeyboardInterrupt:
        print(f"\nstopped following; the rollout goes on in the cluster (`mlplat rollout status {args.name} "
              "--cluster`)", file=sys.stderr)
        return 130
    print(format_status(result))
    if result.phase == "promoted":
        return 0
    return EXIT_STOPPED if result.phase in ("stopped", "aborted") else 1


def status(args: argparse.Namespace) -> int:
    from ml.delivery import rollout_cluster_cli as cl

    api = _api("status", args.context)
    try:
        st = cl.status(api, args.name)
    except (RolloutError, KubeError) as exc:
        return _fail("status", exc)
    if st.rollout is None:
        print(f"mlplat rollout status --cluster: no rollout of {args.name} recorded (Job: {st.job})", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({**asdict(st.rollout), "live_shares": st.live, "job": st.job, "note": st.note}, indent=1))
    else:
        print(format_status(st.rollout, st.live) + f"\njob: {st.job}" + (f"\nnote: {st.note}" if st.note else ""))
    return 0


def abort(args: argparse.Namespace) -> int:
    from ml.delivery import rollout_cluster_cli as cl

    api = _api("abort", args.context)
    try:
        record = cl.abort(api, args.name, by=f"mlplat rollout abort ({getpass.getuser()})")
    except (RolloutError, KubeError, SplitterError) as exc:
        return _fail("abort", exc)
    print(f"{args.name}: champion at 100 %" + (f"; rollout {record.phase}" if record is not None else ""))
    return 0
