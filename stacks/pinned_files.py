"""Fetch a CA bundle the BOM pins (`trustBundles` in stacks/bom.yaml) and check it before an image keeps it.

The model-server image's build runs `python -m stacks.pinned_files rds-ca /etc/ssl/rds/global-bundle.pem`
(docker/model-server/Dockerfile). With a checksum in the BOM the file is written only when its SHA-256 equals
it. With none recorded (`checksum: null`: AWS publishes no digest for the bundle) the file is taken as served
by its HTTPS origin, whose certificate the system trust store verifies, and the build prints the digest to
review and record: from then on a changed file (an added CA, an altered transfer) stops the build until it is
reviewed. Either way the file must hold PEM certificates and nothing else.
"""

from __future__ import annotations

import hashlib
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from stacks.bom import TrustBundle, load_bom

PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
PEM_END = b"-----END CERTIFICATE-----"
Fetcher = Callable[[str], bytes]


class PinError(Exception):
    """The bundle is unknown, unpinned, or not the pinned file."""


def _download(url: str) -> bytes:
    # The default context verifies the server against the system trust store (the truststore host's
    # certificate is from a public CA): the transfer is authenticated, the content is checked below.
    with urllib.request.urlopen(url, timeout=60) as response:
        return bytes(response.read())


def checked(name: str, bundle: TrustBundle, data: bytes, warn: Callable[[str], None] = print) -> bytes:
    """`data` if it is the pinned file (or, unpinned, a file of certificates); PinError naming the bundle, the
    digest got and what to do otherwise."""
    got = hashlib.sha256(data).hexdigest()
    if bundle.digest is not None and got != bundle.digest:
        raise PinError(f"trust bundle {name} ({bundle.url}): sha256 {got}, stacks/bom.yaml pins {bundle.digest}: "
                       "the file changed upstream (a CA rotation) or the transfer was altered; review the new file "
                       "before recording its checksum")
    if not _only_certificates(data):
        raise PinError(f"trust bundle {name} ({bundle.url}) holds no PEM certificate, or something besides them")
    if bundle.digest is None:
        warn(f"note: trust bundle {name} ({bundle.url}) has no checksum in stacks/bom.yaml trustBundles.{name}; "
             f"taken as its HTTPS origin served it, sha256 {got}. Review the certificates it holds and record "
             f"`checksum: \"sha256:{got}\"` there so that a changed file stops the next build")
    return data


def _only_certificates(data: bytes) -> bool:
    """PEM certificate blocks and blank lines only: an error page or a private key is not a trust bundle."""
    text = data.replace(b"\r\n", b"\n").strip()
    if not text.startswith(PEM_CERTIFICATE):
        return False
    inside = False
    for line in text.split(b"\n"):
        line = line.strip()
        if line == PEM_CERTIFICATE:
            if inside:
                return False
            inside = True
        elif line == PEM_END:
            if not inside:
                return False
            inside = False
        elif not inside and line:
            return False
    return not inside


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
