#!/usr/bin/env python3
"""Opens N keep-alive connections (plain or TLS), sends one GET on each and reads its answer,
then holds them idle until stdin closes (bounded by --hold seconds). Prints "ready N" when all
are open. Used by load-tests/idle-conns to measure the proxy's memory per idle connection."""

import argparse
import socket
import ssl
import sys
import time


def open_one(host, port, tls_ctx, path):
    s = socket.create_connection((host, port), timeout=10)
    if tls_ctx is not None:
        s = tls_ctx.wrap_socket(s, server_hostname="localhost")
    s.sendall(f"GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed before the answer")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer: {head[:60]!r}")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed mid-body")
        rest += chunk
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--path", default="/")
    ap.add_argument("--hold", type=float, default=60.0)
    a = ap.parse_args()
    host, port = a.addr.rsplit(":", 1)
    ctx = None
    if a.tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    conns = [open_one(host, int(port), ctx, a.path) for _ in range(a.n)]
    print(f"ready {len(conns)}", flush=True)
    deadline = time.time() + a.hold
    # Wait for stdin to close (the script is done measuring) or the hold time to pass.
    while time.time() < deadline:
        if sys.stdin.readline() == "":
            break
    for c in conns:
        c.close()


if __name__ == "__main__":
    main()
