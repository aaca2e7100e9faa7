#!/usr/bin/env python3
"""Drives the built-in registry for load-tests/discovery (standard library only).

  register --admin HOST:PORT --port P --count N
      registers instances i1..iN at 127.0.0.{1..N}:P on upstream `churn`
  churn --admin HOST:PORT --port P --count N --rate R --max-seconds S
      R changes per second (deregister one instance, re-register it next time) until killed or
      S seconds passed
  latency --admin HOST:PORT --samples K
      registers a marker instance (a local HTTP server) while traffic flows, and measures the
      time from the PUT's answer to the marker's first request; prints the figures as JSON
"""
import argparse
import http.client
import http.server
import json
import statistics
import sys
import threading
import time


def call(admin, method, path, body=None):
    host, port = admin.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=5)
    data = json.dumps(body).encode() if body is not None else None
    c.request(method, path, body=data, headers={"content-type": "application/json"})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def reg(admin, iid, addr):
    s = call(admin, "PUT", f"/registry/churn/{iid}", {"address": addr, "ttl": "600s"})
    if s not in (200, 201):
        sys.exit(f"PUT {iid} answered {s}")


def register(a):
    for i in range(1, a.count + 1):
        reg(a.admin, f"i{i}", f"127.0.0.{i}:{a.port}")


def churn(a):
    gap = 1.0 / a.rate
    end = time.monotonic() + a.max_seconds
    i, gone, n = 1, False, 0
    nxt = time.monotonic()
    while time.monotonic() < end:
        if gone:
            reg(a.admin, f"i{i}", f"127.0.0.{i}:{a.port}")
            i = i % a.count + 1
        else:
            call(a.admin, "DELETE", f"/registry/churn/i{i}")
        gone = not gone
        n += 1
        nxt += gap
        time.sleep(max(0.0, nxt - time.monotonic()))
    print(f"churn: {n} changes", file=sys.stderr)


def latency(a):
    seen = threading.Event()
    first = [0.0]

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if not seen.is_set():
                first[0] = time.monotonic()
                seen.set()
            body = b'{"ok":true}'
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    addr = f"127.0.0.1:{srv.server_address[1]}"
    out = []
    for _ in range(a.samples):
        seen.clear()
        reg(a.admin, "marker", addr)
        t0 = time.monotonic()
        if not seen.wait(5):
            sys.exit("the marker instance got no request within 5 s")
        out.append((first[0] - t0) * 1000)
        call(a.admin, "DELETE", "/registry/churn/marker")
        time.sleep(0.2)
    srv.shutdown()
    out.sort()
    print(json.dumps({
        "samples": len(out),
        "p50_ms": round(statistics.median(out), 3),
        "p90_ms": round(out[int(len(out) * 0.9) - 1], 3),
        "max_ms": round(out[-1], 3),
    }))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["register", "churn", "latency"])
    p.add_argument("--admin", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--rate", type=float, default=10)
    p.add_argument("--max-seconds", type=float, default=900)
    p.add_argument("--samples", type=int, default=20)
    a = p.parse_args()
    {"register": register, "churn": churn, "latency": latency}[a.mode](a)


if __name__ == "__main__":
    main()
