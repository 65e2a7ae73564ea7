"""Calls made from inside the check's network namespace (run there with `nsenter`; standard library only).

Reads a JSON list of requests on stdin and writes a JSON list of results:
`{"kind": "http", "url", "headers", "timeout", "data"}` (a POST when data is given) as the kubelet's HTTP
probe or Prometheus' scrape sends it (the Host header is the target's address, as Go's client sets it),
or `{"kind": "tcp", "host", "port"}` as the kubelet's TCP probe.
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request
from typing import Any


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _http(req: dict[str, Any]) -> dict[str, Any]:
    opener = urllib.request.build_opener(_NoRedirect)
    data = req["data"].encode() if req.get("data") is not None else None
    request = urllib.request.Request(req["url"], headers=req.get("headers") or {}, data=data)
    try:
        with opener.open(request, timeout=req.get("timeout", 3)) as resp:
            return {"status": resp.status, "body": resp.read(200_000).decode(errors="replace")}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "body": exc.read(2000).decode(errors="replace")}
    except (OSError, ValueError) as exc:
        return {"status": 0, "error": f"{type(exc).__name__}: {exc}"}


def _tcp(req: dict[str, Any]) -> dict[str, Any]:
    try:
        socket.create_connection((req["host"], req["port"]), req.get("timeout", 1)).close()
        return {"status": 1}
    except OSError as exc:
        return {"status": 0, "error": f"{type(exc).__name__}: {exc}"}


def main() -> None:
    requests = json.load(sys.stdin)
    json.dump([_http(r) if r["kind"] == "http" else _tcp(r) for r in requests], sys.stdout)


if __name__ == "__main__":
    main()
