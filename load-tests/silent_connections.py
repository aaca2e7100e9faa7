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
    t_full = time.time()
    filled = t_full - t0

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
    by_fd = {s.fileno(): s for s in socks}
    poller = select.poll()
    for fd in by_fd:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    open_socks = set(by_fd)
    deadline = time.time() + 120
    while time.time() < deadline and (open_socks or first_ok is None):
        if first_ok is None and served():
            first_ok = time.time() - t_full
        for fd, _ in poller.poll(50):
            poller.unregister(fd)
            open_socks.discard(fd)
    all_closed = time.time() - t_full if not open_socks else None
    print(f"silent connections: {a.n}; header_read_timeout {a.timeout}; opened in {filled:.2f}s")
    print(f"a new client served after: {first_ok and round(first_ok, 2)}s after the last silent connect")
    print(f"all silent connections closed by the gateway: {all_closed and round(all_closed, 2)}s after the last connect"
          f" ({len(open_socks)} still open)")
    print(f"the gateway was full (max_connections = {a.n}) while the first connections were younger than the timer")
finally:
    for s in socks:
        s.close()
    for p in (gw, backend):
        if p:
            p.terminate()
            p.wait(10)
