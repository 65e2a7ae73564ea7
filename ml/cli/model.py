"""`mlplat model train|evaluate|card|approve|drift|promote|follow`: the model lifecycle from the command line.

    mlplat model train NAME (--data DIR | --data-version REF) [--dataset NAME] [--registry DIR] [--remote NAME]
                            [--tracking-uri URI] [--sample] [--out DIR] [--seed N]
                            [--stack-file Pulumi.<env>.yaml] [--no-register]
    mlplat model evaluate NAME --model URI_OR_DIR --data FILE [--tracking-uri URI]
    mlplat model card NAME [--version V] [--json] [--tracking-uri URI]
    mlplat model approve NAME VERSION --by WHO --reason TEXT [--stack-file F] [--no-promote]
    mlplat model drift NAME [--samples DIR] [--out DIR] [--window N] [--tracking-uri URI]
    mlplat model promote NAME VERSION --stack-file F [--slot S] [--repo PATH_OR_URL] [--bucket B] [--no-stage]
    mlplat model follow [NAME ...] --stack-file F [--repo PATH_OR_URL] [--bucket B]

train, evaluate and approve print one JSON document on stdout (logs go to stderr), so they compose
with `jq`; card prints Markdown (or JSON with --json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from contracts import local_platform, model_registry
from contracts.governance import GATES, AuditLog
from ml.data.contract import DataContractError
from ml.datasets.session import training_data
from ml.model_plugin import ModelPlugin, load_plugin
from ml.service_checks import bound_mlflow_client, check_mlflow
from ml.training import card
from ml.training.approval import ApprovalError, approve, promotion_policy
from ml.training.follow import FollowError, Serving, promote, server_ready
from ml.training.gates import load_gates
from ml.training.tracking import ensure_experiment, resolve_model_dir
from stacks.config import load_stack_file

# Imported where a command runs, for the start-up time of `mlplat` and its other subcommands: MLflow
# (registration, the client), pandera (training-data validation), pandas and Evidently (drift reports).

REGISTRY_HELP = ("MLflow tracking URI (default $MLFLOW_TRACKING_URI, else the running local platform's MLflow: "
                 "`mlplat local up`, state directory $MLPLAT_LOCAL_DIR or .local/)")


TRACKING_FIX = "start the platform with `mlplat local up`, or pass --tracking-uri of a running MLflow server"


def registry(command: str, explicit: str | None) -> local_platform.Registry:
    """The registry this command uses, announced in one line on stderr; exit 2 when there is none."""
    try:
        found = local_platform.registry_for(explicit)
    except local_platform.PlatformNotFound as exc:
        print(f"mlplat model {command}: {exc}; or pass --tracking-uri URI", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"mlplat model {command}: using the {found.source}", file=sys.stderr, flush=True)
    # Its server answers first: seconds and a named fix, not the MLflow client's minutes of retries.
    bound_mlflow_client()
    check_mlflow(found.tracking_uri, fix=TRACKING_FIX)
    return found


def serving_of(found: local_platform.Registry) -> Serving | None:
    """Where the local platform serves, when the registry is that platform's (serving then follows it)."""
    if found.platform is None:
        return None
    return Serving(found.platform.slot_dir, found.platform.serving_url)


def plugin_for(name: str) -> ModelPlugin:
    try:
        return load_plugin(name)
    except ValueError as exc:
        raise SystemExit(f"mlplat model: {exc}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("model", help="train / evaluate / approve the registered models; cards, drift")
    sub = parser.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    names = model_registry.names()

    train = sub.add_parser("train", help="train, log to MLflow, register (challenger; champion if gates pass)")
    train.add_argument("name", choices=names)
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="directory with the dataset files (recorded as a dataset version)")
    source.add_argument("--data-version", metavar="REF",
                        help="train on this recorded version: NAME, NAME@REV or a content hash "
                             "(`mlplat data versions`)")
    train.add_argument("--dataset", help="dataset name the --data directory is recorded under (default: its name)")
    train.add_argument("--registry", type=Path, help="the data registry (default $MLPLAT_DATA_REGISTRY, else "
                                                     "<state dir>/data-registry)")
    train.add_argument("--remote", help="the registry remote the version is read from (default: its default)")
    train.add_argument("--tracking-uri", help=REGISTRY_HELP)
    train.add_argument("--sample", action="store_true", help="first generate small synthetic data into --data")
    train.add_argument("--out", type=Path, help="where to write the serving artifact (default <state dir>/models/...)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--params", type=json.loads, default=None, help="JSON overriding the algorithm's params")
    train.add_argument("--stack-file", type=Path, help="read quality gates from this Pulumi.<env>.yaml")
    train.add_argument("--no-register", action="store_true", help="skip MLflow; only write the artifact")
    train.set_defaults(func=run_train)

    ev = sub.add_parser("evaluate", help="print held-out metrics of a model as JSON")
    ev.add_argument("name", choices=names)
    ev.add_argument("--model", required=True, help="artifact directory or models:/NAME@ALIAS")
    ev.add_argument("--data", type=Path, required=True, help="a file with the schema of a dataset file")
    ev.add_argument("--tracking-uri", help="for models:/ URIs: " + REGISTRY_HELP)
    ev.add_argument("--seed", type=int, default=0, help="seed of any random split the evaluation makes")
    ev.set_defaults(func=run_evaluate)

    card = sub.add_parser("card", help="show the model card of a registered version")
    card.add_argument("name", choices=names)
    card.add_argument("--version", help="registry version (default: the champion, else the challenger)")
    card.add_argument("--json", action="store_true", help="the card as JSON instead of Markdown")
    card.add_argument("--tracking-uri", help=REGISTRY_HELP)
    card.set_defaults(func=run_card)

    ap = sub.add_parser("approve", help="record an approval of a version (MLflow tags + audit log) and promote it")
    ap.add_argument("name", choices=names)
    ap.add_argument("version")
    ap.add_argument("--by", required=True, help="who approves (recorded)")
    ap.add_argument("--reason", required=True, help="why (recorded)")
    ap.add_argument("--stack-file", type=Path, help="the stack whose environment is recorded in the audit log")
    ap.add_argument("--no-promote", action="store_true", help="record the approval only; leave `champion` as is")
    ap.add_argument("--tracking-uri", help=REGISTRY_HELP)
    ap.add_argument("--audit-log", type=Path,
                    help="audit log (default $MLPLAT_AUDIT_LOG or <state dir>/runbook-audit.jsonl)")
    ap.set_defaults(func=run_approve)

    pr = sub.add_parser("promote", help="write a released version into the deploy tree in git (Argo CD applies it): "
                                        "a commit, or a pull-request branch where the stack wants review")
    pr.add_argument("name", choices=names)
    pr.add_argument("version")
    pr.add_argument("--stack-file", type=Path, required=True, help="the stack (Pulumi.<env>.yaml) whose tree changes")
    pr.add_argument("--slot", choices=("champion", "challenger"), default="champion")
    pr.add_argument("--repo", help="deploy repository: a path or URL (default: the running local platform's "
                                   "<state dir>/deploy.git, else the stack's workloads.gitops.repoUrl)")
    pr.add_argument("--bucket", help="models bucket (stack output buckets.models); needed for the first release only")
    pr.add_argument("--no-stage", action="store_true",
                    help="write the tree only (the version's immutable prefix in the models bucket is already staged); "
                         "the default for the local platform's repository")
    pr.add_argument("--tracking-uri", help=REGISTRY_HELP)
    pr.set_defaults(func=run_promote)

    fo = sub.add_parser("follow", help="after a deploy-tree change is merged: move each model's champion slot and "
                                       "registry alias to the version the deploy branch names")
    fo.add_argument("models", nargs="*", help="only these models (default: all in the tree)")
    fo.add_argument("--stack-file", type=Path, required=True, help="the stack (Pulumi.<env>.yaml) whose tree to follow")
    fo.add_argument("--repo", help="deploy repository: a path or URL (default: the stack's workloads.gitops.repoUrl)")
    fo.add_argument("--bucket", help="models bucket (default: the one the tree names)")
    fo.add_argument("--tracking-uri", help=REGISTRY_HELP)
    fo.set_defaults(func=run_follow)

    dr = sub.add_parser("drift", help="Evidently drift report: sampled serving inputs vs the training reference")
    dr.add_argument("name", choices=names)
    dr.add_argument("--samples", help="serving samples: a directory or s3://bucket/prefix "
                                      "(default $MLPLAT_SERVING_SAMPLES or <state dir>/serving-samples)")
    dr.add_argument("--model", help="artifact directory or models:/NAME@ALIAS with the reference "
                                    "(default models:/NAME@champion)")
    dr.add_argument("--window", type=int, default=5000, help="the newest N sampled rows (default 5000)")
    dr.add_argument("--out", help="where reports go: a directory or s3://bucket/prefix "
                                  "(default <state dir>/drift-reports)")
    dr.add_argument("--tracking-uri", help=REGISTRY_HELP)
    dr.add_argument("--no-log", action="store_true", help="do not log the report to MLflow")
    dr.set_defaults(func=run_drift)




def _emit(doc: dict[str, Any]) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True, default=str))


def run_train(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    plugin = plugin_for(args.name)
    out_dir = args.out or local_platform.state_dir() / "models" / args.name / time.strftime("%Y%m%d-%H%M%S")
    if out_dir.exists() and any(out_dir.iterdir()):
        print(f"mlplat model train: output directory {out_dir} is not empty", file=sys.stderr)
        return 2
    found = None if args.no_register else registry("train", args.tracking_uri)
    # Libraries (MLflow, Feast) print to stdout; keep stdout for the JSON result.
    with contextlib.redirect_stdout(sys.stderr):
        if args.sample and args.data is not None:
            plugin.generate_sample(args.data, seed=args.seed)
        elif args.sample:
            print("mlplat model train: --sample generates into --data DIR", file=sys.stderr)
            return 2
        elif args.data is not None and not args.data.is_dir():
            print(f"mlplat model train: --data {args.data} is not a directory (use --sample to generate one)",
                  file=sys.stderr)
            return 2
        from ml.training.validation import recording

        work = Path(tempfile.mkdtemp(prefix="mlplat-train-data-"))
        try:
            args.dataset_version, args.train_dir = training_data(
                data=args.data, data_version=args.data_version, name=args.dataset, registry=args.registry,
                remote=args.remote, state_dir=local_platform.state_dir(), work=work / "data")
            print(f"mlplat model train: dataset {args.dataset_version.ref} (md5 {args.dataset_version.md5}, "
                  f"{args.dataset_version.files} file(s)) from {args.dataset_version.location}", file=sys.stderr)
            started = time.perf_counter()
            with recording() as validations:
                try:
                    result = plugin.train(args.train_dir, out_dir, params=args.params, seed=args.seed)
                except DataContractError as exc:
                    return _refused(args, found, exc, validations)
            doc: dict[str, Any] = {
                "model": args.name, "artifact": str(out_dir), "metrics": result.metrics,
                "train_seconds": round(time.perf_counter() - started, 2),
                "dataset": args.dataset_version.as_dict(),
            }
            if found is not None:
                code = _register(args, found, result, validations, doc)
                if code:
                    return code
        finally:
            shutil.rmtree(work, ignore_errors=True)
    _emit(doc)
    return 0


def _register(args: argparse.Namespace, found: local_platform.Registry, result: Any, validations: list[Any],
              doc: dict[str, Any]) -> int:
    """Register the trained version; on the local platform a version that passes its gates becomes champion
    only together with its slot and the served version (ml/training/follow.py `promote`)."""
    from ml.training.registration import register

    gates = load_gates(args.name, args.stack_file)
    policy = promotion_policy(args.stack_file)
    serving = serving_of(found)
    registered = register(result, found.tracking_uri, gates=gates, promotion=policy, data_dir=args.train_dir,
                          validations=validations, promote=serving is None, dataset=args.dataset_version)
    doc["registry"] = registered.as_dict()
    if serving is None or not (registered.gate.passed and policy == GATES):
        return 0
    try:
        doc["serving"] = promote(_client(found.tracking_uri), args.name, registered.version, serving,
                                 actor="mlplat model train")
    except FollowError as exc:
        print(f"mlplat model train: v{registered.version} is registered as challenger but was not promoted: {exc}",
              file=sys.stderr)
        _emit(doc)
        return 1
    registered.champion = True
    doc["registry"] = registered.as_dict()
    return 0


def _refused(args: argparse.Namespace, found: local_platform.Registry | None, exc: Exception,
             validations: list[Any]) -> int:
    """The training data failed validation: print pandera's report and record a FAILED run with it."""
    report = getattr(exc, "report", None)
    print(f"mlplat model train: the training data failed validation: {exc}", file=sys.stderr)
    if report:
        print(json.dumps(report, indent=1, default=str), file=sys.stderr)
    if found is not None:
        client = _client(found.tracking_uri)
        exp = ensure_experiment(client, f"mlplat-{args.name}", client.tracking_uri)
        run = client.create_run(exp, run_name=f"train-{args.name}",
                                tags={"mlplat.model": args.name, "validation.passed": "false"})
        client.log_dict(run.info.run_id, {"passed": False, "error": str(exc),
                                          "results": [v.as_dict() for v in validations]}, "validation/training.json")
        client.set_terminated(run.info.run_id, "FAILED")
        print(f"recorded as FAILED run {run.info.run_id} (artifact validation/training.json)", file=sys.stderr)
    return 1


def run_evaluate(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    plugin = plugin_for(args.name)
    if not args.data.is_file():
        print(f"mlplat model evaluate: --data {args.data} is not a file", file=sys.stderr)
        return 2
    uri = None
    if str(args.model).startswith(("models:/", "runs:/")):
        uri = registry("evaluate", args.tracking_uri).tracking_uri
    with contextlib.redirect_stdout(sys.stderr):
        model_dir = resolve_model_dir(args.model, uri)
        metrics = plugin.evaluate(model_dir, args.data, seed=args.seed)
    _emit(metrics)
    return 0


def _client(tracking_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def run_card(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    found = registry("card", args.tracking_uri)
    with contextlib.redirect_stdout(sys.stderr):
        try:
            doc = card.load(_client(found.tracking_uri), args.name, args.version)
        except LookupError as exc:
            print(f"mlplat model card: {exc}", file=sys.stderr)
            return 1
    if args.json:
        _emit(doc)
    else:
        print(card.render_markdown(doc))
    return 0


def run_approve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    env, gitops_stack = "local", False
    if args.stack_file is not None:
        cfg = load_stack_file(args.stack_file)
        env, gitops_stack = str(cfg.environment), cfg.workloads.gitops.enabled
    found = registry("approve", args.tracking_uri)
    serving = serving_of(found)
    # On a GitOps cluster the deploy branch decides what serves and the alias follows it (ml/delivery/promotion.py):
    # an approval records the decision; the promotion is the tree change (a reviewed branch in prod).
    follows_tree = gitops_stack and serving is None
    with contextlib.redirect_stdout(sys.stderr):
        try:
            client = _client(found.tracking_uri)
            result = approve(client, args.name, args.version, args.by, args.reason,
                             promote=not args.no_promote and not follows_tree, env=env, audit=AuditLog(args.audit_log),
                             precheck=(lambda: server_ready(serving.serving_url)) if serving else None,
                             mover=_tree_then_serving(found, client, args.name, serving, args.by)
                             if serving else None)
        except (ApprovalError, FollowError) as exc:
            print(f"mlplat model approve: {exc}", file=sys.stderr)
            return 1
    if follows_tree and not args.no_promote:
        result["next"] = (f"the champion alias follows the deploy branch: mlplat model promote {args.name} "
                          f"{args.version} --stack-file {args.stack_file} (a branch to review where the stack wants "
                          f"one), and once merged mlplat model follow --stack-file {args.stack_file}")
    _emit(result)
    return 0


def _tree_then_serving(found: local_platform.Registry, client: Any, name: str, serving: Serving,
                       actor: str) -> Any:
    """The approval's promotion on the local platform: the deploy tree's commit first (where `mlplat local up`
    made the repository), then serving, as the pipeline's publish step does; so `mlplat local apply` keeps it."""
    from ml.delivery import tree_publish  # git and the stack schema: only a promotion needs them
    from ml.delivery.gitops import LOCAL_REPO, GitOpsError
    from ml.training.directory_bucket import LOCAL_BUCKET
    from stacks.delivery import deploy_parameter

    def move(version: str) -> list[str]:
        repo = found.platform.state_dir / LOCAL_REPO if found.platform else None
        done = []
        if repo is not None and (repo / "HEAD").is_file():
            deploy = deploy_parameter(load_stack_file(local_platform.DEPLOY_STACK), LOCAL_BUCKET, location=str(repo))
            if tree_publish.covers(deploy, name):
                try:
                    outcome = tree_publish.write_release(deploy, client, name, str(version), actor=actor)
                except GitOpsError as exc:
                    raise FollowError(f"the deploy tree was not changed, nothing was promoted: {exc}") from exc
                done.append(outcome.message)
                if outcome.branch != tree_publish.parse_parameter(deploy).target.branch:
                    # Proposed for review: serving and the alias follow the merge (`mlplat local apply`).
                    return done
        return done + promote(client, name, version, serving, actor=actor)

    return move


def run_promote(args: argparse.Namespace) -> int:
    """The deploy tree change of a released version, with its model card and gate results in the message."""
    from ml.delivery import gitops

    cfg = load_stack_file(args.stack_file)
    found = registry("promote", args.tracking_uri)
    with contextlib.redirect_stdout(sys.stderr):
        try:
            doc = card.load(_client(found.tracking_uri), args.name, args.version)
        except LookupError as exc:
            print(f"mlplat model promote: {exc}", file=sys.stderr)
            return 1
    gates = doc.get("gates") or {}
    local_repo = str(found.platform.state_dir / gitops.LOCAL_REPO) if found.platform else None
    location = args.repo or local_repo
    if not args.no_stage and (location is None or location != local_repo):
        return _promote_on_cluster(args, cfg, found.tracking_uri)  # the stack's own repository (or --repo)
    target = gitops.target_for(cfg, location=location, bucket=args.bucket)
    release = gitops.Release(args.name, str(args.version), args.slot, card=card.render_markdown(doc),
                             gates=f"{'passed' if gates.get('passed') else 'FAILED'}: {gates.get('summary', '')}",
                             actor="mlplat model promote")
    try:
        outcome = gitops.publish_release(cfg, target, release)
    except gitops.GitOpsError as exc:
        print(f"mlplat model promote: {exc}", file=sys.stderr)
        return 1
    print(f"mlplat model promote: {outcome.message}", file=sys.stderr)
    _emit({"changed": outcome.changed, "branch": outcome.branch, "commit": outcome.commit,
           "files": list(outcome.files), "repository": target.location})
    return 0


def _promote_on_cluster(args: argparse.Namespace, cfg: Any, tracking_uri: str) -> int:
    """The stack's own deploy repository: the version staged in S3 first (the tree names its immutable prefix),
    then the tree; the champion slot and alias follow a commit only (ml/delivery/promotion.py)."""
    from ml.delivery import promotion  # git, S3 and the stack schema: only a promotion needs them

    try:
        steps = promotion.operator_steps(cfg, args.repo, args.bucket, tracking_uri, "mlplat model promote")
        lines = promotion.promote(steps, args.name, str(args.version), args.slot)
    except (promotion.PromotionError, promotion.GitOpsError) as exc:
        print(f"mlplat model promote: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(f"mlplat model promote: {line}", file=sys.stderr)
    _emit({"steps": lines, "repository": args.repo or cfg.workloads.gitops.repo_url})
    return 0


def run_follow(args: argparse.Namespace) -> int:
    """After a deploy-tree change was merged: the champion slot and alias of each model follow the deploy branch."""
    from ml.delivery import promotion  # git, S3 and the stack schema: only this command needs them

    cfg = load_stack_file(args.stack_file)
    found = registry("follow", args.tracking_uri)
    try:
        steps = promotion.operator_steps(cfg, args.repo, args.bucket, found.tracking_uri, "mlplat model follow")
        lines = promotion.follow(steps, args.models or None)
    except (promotion.PromotionError, promotion.GitOpsError) as exc:
        print(f"mlplat model follow: {exc}", file=sys.stderr)
        return 1
    _emit({"followed": lines})
    return 0


def run_drift(args: argparse.Namespace) -> int:
    """An Evidently drift report of the sampled serving inputs against the training reference
    (ml/data/drift_report.py), on demand, into local files (or s3://)."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from ml.data.drift_report import DriftReportError, run

    uri = None
    if args.model is None or str(args.model).startswith(("models:/", "runs:/")) or not args.no_log:
        uri = registry("drift", args.tracking_uri).tracking_uri
    state = local_platform.state_dir()
    samples = args.samples or os.environ.get("MLPLAT_SERVING_SAMPLES") or str(state / "serving-samples")
    with contextlib.redirect_stdout(sys.stderr):
        try:
            summary = run(args.name, samples=samples, model=args.model,
                          window=args.window, out=args.out or str(state / "drift-reports"),
                          tracking_uri=uri, log_to_mlflow=not args.no_log)
        except DriftReportError as exc:
            print(f"mlplat model drift: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return 0 if summary.get("validation", {}).get("passed", True) else 3
