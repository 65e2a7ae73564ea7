"""`mlplat charts pull`: every chart and manifest tree of stacks/bom.yaml at its pinned version into
.cache/charts/.

Charts from their repository (HTTPS index or OCI) first, checked against the index's digest and the
reviewed digests in infra/conformance/chart-digests.yaml; manifest trees (`manifests:` in the BOM,
e.g. Kubeflow Pipelines' kustomize tree) from the repository's tag archive, checked against the
reviewed tree digest there. Where a repository cannot be reached, from a mirror directory (`--mirror
DIR` or $MLPLAT_CHART_MIRROR). The files never go into the repository.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("charts", help="fetch the BOM's pinned Helm charts and manifest trees into .cache/charts "
                                      "(digest-checked)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    pull = actions.add_parser("pull", help="fetch every pinned chart and manifest tree (repository, then mirror)")
    pull.add_argument("--mirror", type=Path, help="directory of chart .tgz files (default: $MLPLAT_CHART_MIRROR)")
    pull.add_argument("--offline", action="store_true", help="take the mirror only")
    pull.set_defaults(func=_pull)


def _pull(args: argparse.Namespace) -> int:
    from infra.conformance.charts import HOW_TO, ChartStore, mirror_from_env, pins
    from infra.conformance.manifests import TreeStore, manifest_pins

    store = ChartStore(mirror=args.mirror or mirror_from_env(), online=not args.offline)
    wanted = [p.archive for p in pins()] + [p.archive for p in manifest_pins()]
    got, errors = store.pull_all(pins())
    trees, tree_errors = TreeStore(store).pull_all(manifest_pins())
    got.update(trees)
    errors += tree_errors
    for archive in wanted:
        if archive in got:
            print(f"{archive:45} {store.sources.get(archive, '?')}")
    if errors:
        for error in errors:
            print(f"mlplat charts: {error}", file=sys.stderr)
        print(HOW_TO, file=sys.stderr)
        return 1
    print(f"{len(got) - len(trees)} charts and {len(trees)} manifest tree(s) in {store.cache}")
    return 0
