#!/usr/bin/env python3
"""Silent-connection flood: N connections that never send a byte fill the listener
(limits.max_connections = N); reports how long until every one is closed by the gateway and
until a real client is served again. Loopback only, bounded in count and time.

Usage: python3 load-tests/silent_connections.py [--portico target/debug/portico]
       [--backend target/debug/portico-fixed-backend] [-n 10000] [--timeout 2s]
"""
import argparse, os, re, select, socket, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("--portico", default="target/debug/portico")
ap.add_argument("--backend", default="target/debug/portico-fixed-backend")
ap.add_argument("-n", type=int, default=10000)
ap.add_argument("--timeout", default="2s", help="header_read_timeout")
a = ap.parse_args()

def read_line(proc, pattern, limit=30):
    end = time.time() + limit
    while time.time() < end:
        line = proc.stdout.readline().decode()
        m = re.search(pattern, line)
        if m:
            return m.group(1)
    sys.exit(f"no line matching {pattern!r}")

backend = subprocess.Popen([a.backend, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE)
gw = None
socks = []
try:
    baddr = read_line(backend, r"listening on (\S+)")
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "gateway.toml"), "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:0"
admin_listen = ""
watch = false
[log]
access_log = false
[limits]
header_read_timeout = "{a.timeout}"
idle_timeout = "60s"
max_connections = {a.n}
[upstreams.app]
endpoints = ["{baddr}"]
[[routes]]
id = "all"
match = {{ path_prefix = "/" }}
upstream = "app"
""")
    gw = subprocess.Popen([a.portico, "run", "--config", os.path.join(d, "gateway.toml")],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    host, port = read_line(gw, r"ready http=(\S+)").rsplit(":", 1)
    port = int(port)
    t0 = time.time()
    for _ in range(a.n):
        s = socket.create_connection((host, port))
        socks.append(s)
    filled = time.time() - t0

    def served():
        try:
            c = socket.create_connection((host, port), timeout=1)
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = c.recv(64)
            c.close()
            return data.startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    first_ok = None
    open_socks = set(socks)
    deadline = time.time() + 60
    while time.time() < deadline and (open_socks or first_ok is None):
        if first_ok is None and served():
            first_ok = time.time() - t0
        r, _, _ = select.select(list(open_socks)[:1000], [], [], 0.05)
        for s in r:
            try:
                if s.recv(1) == b"":
                    open_socks.discard(s)
            except OSError:
                open_socks.discard(s)
    all_closed = time.time() - t0 if not open_socks else None
    print(f"silent connections: {a.n}; header_read_timeout {a.timeout}; opened in {filled:.2f}s")
    print(f"a new client served after: {first_ok and round(first_ok, 2)}s from the first silent connect")
    print(f"all silent connections closed by the gateway after: {all_closed and round(all_closed, 2)}s"
          f" ({len(open_socks)} still open)")
finally:
    for s in socks:
        s.close()
    for p in (gw, backend):
        if p:
            p.terminate()
            p.wait(10)
