"""Fetch a CA bundle the BOM pins (`trustBundles` in stacks/bom.yaml) and check it before an image keeps it.

The model-server image's build runs `python -m stacks.pinned_files rds-ca /etc/ssl/rds/global-bundle.pem`
(docker/model-server/Dockerfile). The file is written only when its SHA-256 equals the BOM's checksum; with no
checksum recorded yet (`checksum: null`) the build stops and prints the digest it got, so the first build
that can reach the URL tells a maintainer what to review and record, and no unreviewed bundle ever ships.
"""

from __future__ import annotations

import hashlib
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from stacks.bom import TrustBundle, load_bom

PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
Fetcher = Callable[[str], bytes]


class PinError(Exception):
    """The bundle is unknown, unpinned, or not the pinned file."""


def _download(url: str) -> bytes:
    # The default context verifies the server against the system trust store (the truststore host's
    # certificate is from a public CA): the transfer is authenticated, the content is checked below.
    with urllib.request.urlopen(url, timeout=60) as response:
        return bytes(response.read())


def checked(name: str, bundle: TrustBundle, data: bytes) -> bytes:
    """`data` if it is the pinned file; PinError naming the bundle, the digest got and what to do otherwise."""
    got = hashlib.sha256(data).hexdigest()
    if bundle.digest is None:
        raise PinError(f"trust bundle {name} ({bundle.url}) has no checksum in stacks/bom.yaml trustBundles.{name}: "
                       f"the downloaded file's sha256 is {got}. Review the file (the certificates it holds and who "
                       f"issued them), then record `checksum: \"sha256:{got}\"` there and build again")
    if got != bundle.digest:
        raise PinError(f"trust bundle {name} ({bundle.url}): sha256 {got}, stacks/bom.yaml pins {bundle.digest}: "
                       "the file changed upstream (a CA rotation) or the transfer was altered; review the new file "
                       "before recording its checksum")
    if PEM_CERTIFICATE not in data:
        raise PinError(f"trust bundle {name} ({bundle.url}) holds no PEM certificate")
    return data


def fetch(name: str, destination: Path, download: Fetcher = _download) -> str:
    """Write the bundle `name` to `destination` (mode 0644) once checked; its sha256."""
    bundles = load_bom().trust_bundles
    if name not in bundles:
        raise PinError(f"no trust bundle {name!r} in stacks/bom.yaml trustBundles (known: {', '.join(bundles)})")
    data = checked(name, bundles[name], download(bundles[name].url))
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(data)
    destination.chmod(0o644)
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m stacks.pinned_files NAME DESTINATION", file=sys.stderr)
        return 2
    try:
        digest = fetch(args[0], Path(args[1]))
    except PinError as exc:
        print(f"pinned_files: {exc}", file=sys.stderr)
        return 1
    print(f"{args[1]}: sha256 {digest} (stacks/bom.yaml trustBundles.{args[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
