#!/usr/bin/env python3
"""One bounded GET to a loopback server; prints the status code (exit 1 when nothing answers).

Usage: probe.py HOST:PORT PATH [--tls] [--body] [HEADER: VALUE ...]
Scenario scripts use it to fail fast with a clear message before a load run.
"""
import http.client
import ssl
import sys


def main(argv):
    addr, path, rest = argv[1], argv[2], argv[3:]
    host, port = addr.rsplit(":", 1)
    if not host.startswith("127.") and host not in ("localhost", "[::1]"):
        print(f"refusing non-loopback target {addr}", file=sys.stderr)
        return 1
    tls = "--tls" in rest
    show_body = "--body" in rest
    headers = dict(h.split(":", 1) for h in rest if h not in ("--tls", "--body"))
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, int(port), timeout=5, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
    except OSError as e:
        print(f"{addr}{path}: {e}", file=sys.stderr)
        return 1
    print(resp.status)
    if show_body:
        print(body.decode("utf-8", "replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
