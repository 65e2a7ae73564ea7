"""`mlplat charts pull`: every chart of stacks/bom.yaml at its pinned version into .cache/charts/.

From the chart's repository (HTTPS index or OCI) first, checked against the index's digest and the
reviewed digests in infra/conformance/chart-digests.yaml; where the repository cannot be reached,
from a mirror directory (`--mirror DIR` or $MLPLAT_CHART_MIRROR). The files never go into the repository.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("charts", help="fetch the BOM's pinned Helm charts into .cache/charts (digest-checked)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    pull = actions.add_parser("pull", help="fetch every pinned chart (repository, then mirror)")
    pull.add_argument("--mirror", type=Path, help="directory of chart .tgz files (default: $MLPLAT_CHART_MIRROR)")
    pull.add_argument("--offline", action="store_true", help="take the mirror only")
    pull.set_defaults(func=_pull)


def _pull(args: argparse.Namespace) -> int:
    from infra.conformance.charts import HOW_TO, ChartStore, mirror_from_env, pins

    store = ChartStore(mirror=args.mirror or mirror_from_env(), online=not args.offline)
    wanted = pins()
    got, errors = store.pull_all(wanted)
    for pin in wanted:
        if pin.archive in got:
            print(f"{pin.archive:45} {store.sources.get(pin.archive, '?')}")
    if errors:
        for error in errors:
            print(f"mlplat charts: {error}", file=sys.stderr)
        print(HOW_TO, file=sys.stderr)
        return 1
    print(f"{len(got)} charts in {store.cache}")
    return 0
