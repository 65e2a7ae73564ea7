"""`mlplat runbook list` and `mlplat runbook run NAME [--env ENV] [--dry-run | --execute]`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from contracts import local_platform
from contracts.governance import audit_log_path
from ml.service_checks import LOCAL_FIX, bound_mlflow_client, check_mlflow, check_model_server, check_prometheus

# The catalog (every runbook module, with the AWS and Kubernetes clients) is imported when a command runs
# (start-up time); local/ only for `--env local` (optional: the ops image ships runbooks/ without local/).


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runbook", help="list runbooks; run one (dry-run by default)")
    rsub = p.add_subparsers(dest="runbook_command", required=True)
    rsub.add_parser("list", help="every runbook with its title and whether it has executable steps").set_defaults(
        func=_list)
    i = rsub.add_parser("index", help="regenerate docs/RUNBOOKS.md")
    i.add_argument("--check", action="store_true", help="exit 1 when docs/RUNBOOKS.md is stale")
    i.set_defaults(func=_index)
    r = rsub.add_parser("run", help="run a runbook's steps")
    r.add_argument("name")
    r.add_argument("--env", default="local", choices=["local", "dev", "staging", "prod"])
    mode = r.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="(default) check and print what would change")
    mode.add_argument("--execute", action="store_true", help="perform, audit and verify each step")
    r.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="runbook parameter")
    r.add_argument("--outputs", type=Path, help="`pulumi stack output --json` of the stack (names override)")
    r.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"), help="MLflow tracking URI")
    r.add_argument("--serving-url", default=os.environ.get("MLPLAT_SERVING_URL"), help="MLServer base URL")
    r.add_argument("--kube", choices=["none", "cluster"], default="none",
                   help="`cluster`: use the current kubeconfig for Kubernetes steps")
    r.add_argument("--audit-log", type=Path, default=None,
                   help="default $MLPLAT_AUDIT_LOG, else runbook-audit.jsonl in the local platform's state directory")
    r.set_defaults(func=_run)


def _list(args: argparse.Namespace) -> int:
    from runbooks.catalog import documents

    docs = documents()
    width = max(len(d.name) for d in docs)
    for d in docs:
        steps = f"{len(d.runbook.steps)} steps" if d.runbook else "document only"
        print(f"{d.name:<{width}}  {steps:<14} {d.title}")
    return 0


def _index(args: argparse.Namespace) -> int:
    from runbooks.catalog import RUNBOOK_DIR, render_index

    path = RUNBOOK_DIR.parent / "docs" / "RUNBOOKS.md"
    text = render_index()
    if args.check:
        stale = not path.exists() or path.read_text() != text
        if stale:
            print(f"{path} is stale: run `mlplat runbook index`", file=sys.stderr)
        return int(stale)
    path.write_text(text)
    print(f"wrote {path}")
    return 0


def check_services(services: tuple[str, ...], ctx: Any) -> None:
    """The services a runbook's steps call answer (ServiceDown naming the first that does not, with its fix)."""
    bound_mlflow_client()
    fix = LOCAL_FIX if ctx.env == "local" else "check the URL (e.g. the port-forward to the cluster's service)"
    if "mlflow" in services and ctx.tracking_uri:
        check_mlflow(ctx.tracking_uri, fix=fix)
    if "serving" in services and ctx.serving_url:
        check_model_server(ctx.serving_url, fix=fix)
    if "prometheus" in services and ctx.prometheus_url:
        check_prometheus(ctx.prometheus_url, fix=fix)


def _run(args: argparse.Namespace) -> int:
    from runbooks.catalog import EXECUTABLE, documents
    from runbooks.context import RunContext, load_outputs
    from runbooks.engine import AuditLog, run

    runbook = EXECUTABLE.get(args.name)
    if runbook is None:
        known = {d.name for d in documents()}
        why = "has no executable steps (read its document)" if args.name in known else "does not exist"
        print(f"runbook {args.name!r} {why}; see `mlplat runbook list`", file=sys.stderr)
        return 2
    if args.env not in runbook.envs:
        print(f"runbook {args.name} applies to {', '.join(runbook.envs)}, not {args.env}", file=sys.stderr)
        return 2
    try:
        params = dict(p.split("=", 1) for p in args.param)
    except ValueError:
        print("--param takes NAME=VALUE", file=sys.stderr)
        return 2
    kube = None
    if args.kube == "cluster":
        from runbooks.kube import ClusterKubeOps

        kube = ClusterKubeOps()
    platform = None
    if args.env == "local":
        # The running platform as `local up` recorded it (state directory, ports): the ports it was started
        # with, whatever flags or variables this shell has.
        try:
            platform = local_platform.find_running()
        except local_platform.PlatformNotFound as exc:
            if not (args.tracking_uri and args.serving_url):
                print(f"runbook {args.name}: {exc}; or pass --tracking-uri and --serving-url", file=sys.stderr)
                return 2
        if platform is not None:
            print(f"runbook {args.name}: using the {platform.describe()}", file=sys.stderr)
    ctx = RunContext(
        env=args.env, stack_outputs=load_outputs(args.outputs), params=params, kube=kube,
        tracking_uri=args.tracking_uri or (platform.tracking_uri if platform else None),
        serving_url=args.serving_url or (platform.serving_url if platform else None),
        prometheus_url=platform.url("prometheus") if platform else None,
        slot_dir=platform.slot_dir if platform else None,
    )
    check_services(runbook.services, ctx)
    audit = AuditLog(args.audit_log or audit_log_path())
    report = run(runbook, ctx, execute=args.execute, audit=audit, out=sys.stdout)
    return 0 if report.ok else 1
