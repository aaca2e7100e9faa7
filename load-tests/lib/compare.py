#!/usr/bin/env python3
"""Interleaved oha rounds against running targets; medians, ratios, a markdown table and an SVG.

The calling script starts the servers (and stops them); this program only sends load, reads
/proc, and writes results. Every oha run is bounded by its duration plus a timeout.

Usage:
  compare.py --oha PATH --out-dir DIR --name NAME --baseline nginx --half-of portico \
      --target NAME URL PID [--target ...] [--half-target NAME ...] [--rounds 5] \
      [--half-rounds 3] [--duration 5s] [--connections 32] [--loadgen-cpu 1] \
      [--oha-arg ARG ...] [--title TEXT] [--note TEXT] [--side-pid NAME PID ...]

A target's PID is the leader of its process group: CPU time is summed over every process in
that group (nginx master + worker, haproxy, Portico's threads), read from /proc/PID/stat.
PID 0 means "no proxy process" (direct-to-backend): CPU columns are left empty.
--side-pid adds the CPU of another process group (e.g. a Redis the proxy calls) per 2xx answer
of every target, reported under the main table.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

TICKS = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(leader):
    """utime+stime of every process whose process group is `leader`, in seconds."""
    user, system = group_cpu_split(leader)
    return user + system


def group_cpu_split(leader):
    """(utime, stime) of every process whose process group is `leader`, in seconds: the user
    and kernel shares, so a proxy's own code can be told from the syscalls it makes."""
    user = system = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == leader:
            user += int(fields[11])
            system += int(fields[12])
    return user / TICKS, system / TICKS


def group_rss_mb(leader):
    total_kb = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            if int(stat[stat.rindex(")") + 2 :].split()[2]) != leader:
                continue
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total_kb / 1024


def alive(pid):
    return pid == 0 or os.path.exists(f"/proc/{pid}")


def seconds(text):
    text = text.strip()
    for suffix, mult in (("ms", 0.001), ("s", 1), ("m", 60)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * mult
    return float(text)


def run_oha(args, target, rate=None):
    """One bounded oha run; returns the parsed figures plus the proxy's CPU seconds."""
    cmd = [
        "taskset", "-c", str(args.loadgen_cpu),
        args.oha, "--no-tui", "--output-format", "json",
        "-z", args.duration, "-c", str(args.connections),
    ]
    if rate:
        cmd += ["-q", str(rate), "--latency-correction"]
    cmd += args.oha_arg + target["args"] + [target["url"]]
    pid = target["pid"]
    if not alive(pid):
        sys.exit(f"compare: target {target['name']} (pid {pid}) is no longer running")
    split0 = group_cpu_split(pid) if pid else (0.0, 0.0)
    cpu0 = sum(split0)
    side0 = {n: group_cpu_seconds(int(p)) for n, p in args.side_pid}
    t0 = time.monotonic()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds(args.duration) + 60
    )
    wall = time.monotonic() - t0
    split1 = group_cpu_split(pid) if pid else (0.0, 0.0)
    cpu1 = sum(split1)
    side1 = {n: group_cpu_seconds(int(p)) for n, p in args.side_pid}
    if proc.returncode != 0:
        sys.exit(f"compare: oha failed against {target['name']}: {proc.stderr.strip()[:500]}")
    data = json.loads(proc.stdout)
    codes = {int(k): v for k, v in data.get("statusCodeDistribution", {}).items()}
    ok = sum(v for k, v in codes.items() if 200 <= k < 300)
    bad = sum(v for k, v in codes.items() if not 200 <= k < 300)
    # A run cut by the deadline aborts the requests in flight; that is not a proxy error.
    errors = {
        k: v
        for k, v in data.get("errorDistribution", {}).items()
        if "deadline" not in k.lower()
    }
    lat = data.get("latencyPercentiles", {})
    cpu = cpu1 - cpu0
    return {
        "target": target["name"],
        "rate": rate,
        "rps": data["summary"]["requestsPerSec"],
        "p50_ms": (lat.get("p50") or 0) * 1000,
        "p99_ms": (lat.get("p99") or 0) * 1000,
        "ok": ok,
        "non_2xx": bad,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "cpu_s": cpu if pid else None,
        "us_per_req": (cpu / ok * 1e6) if pid and ok else None,
        "user_us_per_req": ((split1[0] - split0[0]) / ok * 1e6) if pid and ok else None,
        "sys_us_per_req": ((split1[1] - split0[1]) / ok * 1e6) if pid and ok else None,
        "req_per_cpu_s": (ok / cpu) if pid and cpu > 0 else None,
        "rss_mb": group_rss_mb(pid) if pid else None,
        "wall_s": wall,
        "side_us_per_req": {
            n: (side1[n] - side0[n]) / ok * 1e6 if ok else None for n in side0
        },
    }


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values):
    """(max - min) / median, in percent: how noisy the rounds were."""
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return None
    m = statistics.median(values)
    return (max(values) - min(values)) / m * 100 if m else None


def summarize(runs, names):
    out = {}
    for name in names:
        rs = [r for r in runs if r["target"] == name]
        out[name] = {
            "rounds": len(rs),
            "rps": median(r["rps"] for r in rs),
            "p50_ms": median(r["p50_ms"] for r in rs),
            "p99_ms": median(r["p99_ms"] for r in rs),
            "us_per_req": median(r["us_per_req"] for r in rs),
            "user_us_per_req": median(r.get("user_us_per_req") for r in rs),
            "sys_us_per_req": median(r.get("sys_us_per_req") for r in rs),
            "req_per_cpu_s": median(r["req_per_cpu_s"] for r in rs),
            "rss_mb": median(r["rss_mb"] for r in rs),
            "errors": sum(r["errors"] + r["non_2xx"] for r in rs),
            "spread_cpu_pct": spread([r["req_per_cpu_s"] for r in rs]),
            "spread_rps_pct": spread([r["rps"] for r in rs]),
            "side_us_per_req": {
                n: median(r.get("side_us_per_req", {}).get(n) for r in rs)
                for n in (rs[0].get("side_us_per_req", {}) if rs else {})
            },
        }
    return out


def fmt(v, digits=0, suffix=""):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}{suffix}"


def ratio(a, b, digits=2):
    if a is None or b in (None, 0):
        return "-"
    return f"{a / b:.{digits}f}x"


def markdown(meta, sat, half, baseline, direct, references=()):
    lines = [f"# {meta['title']}", ""]
    lines.append(
        f"{meta['when']} on {meta['machine']}. {meta['rounds']} interleaved rounds of "
        f"{meta['duration']} per target, {meta['connections']} {meta['conn_kind']}, "
        f"proxies pinned to CPU {meta['proxy_cpu']}, oha and the backend to CPU "
        f"{meta['loadgen_cpu']}. Medians; ratios are to {baseline} in the same run; "
        "'spread' is (max-min)/median of req per CPU-s across rounds."
    )
    if meta.get("note"):
        lines += ["", meta["note"]]
    lines += [
        "",
        f"| target | RPS | p50 ms | p99 ms | CPU us/req | req per CPU-s | req/CPU-s vs {baseline} "
        f"| RPS vs {baseline} | p99 vs {baseline} | spread | RSS MB | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    b = sat.get(baseline, {})
    for name, s in sat.items():
        lines.append(
            f"| {name} | {fmt(s['rps'])} | {fmt(s['p50_ms'], 3)} | {fmt(s['p99_ms'], 3)} "
            f"| {fmt(s['us_per_req'], 1)} | {fmt(s['req_per_cpu_s'])} "
            f"| {ratio(s['req_per_cpu_s'], b.get('req_per_cpu_s'))} "
            f"| {ratio(s['rps'], b.get('rps'))} | {ratio(s['p99_ms'], b.get('p99_ms'))} "
            f"| {fmt(s['spread_cpu_pct'], 0, '%')} | {fmt(s['rss_mb'], 1)} | {s['errors']} |"
        )
    split = ", ".join(
        f"{name} {fmt(s.get('user_us_per_req'), 1)} / {fmt(s.get('sys_us_per_req'), 1)}"
        for name, s in sat.items()
        if s.get("user_us_per_req") is not None
    )
    if split:
        lines += ["", f"User / kernel CPU per 2xx answer (median us, same runs): {split}."]
    sides = sorted({n for s in sat.values() for n in s.get("side_us_per_req", {})})
    for side in sides:
        per = ", ".join(
            f"{name} {fmt(s['side_us_per_req'].get(side), 1)}" for name, s in sat.items()
        )
        lines += ["", f"CPU of {side} per 2xx answer (median us, same runs): {per}."]
    if half:
        rate = half["rate"]
        lines += [
            "",
            f"## Added latency at half of saturation ({rate:,} req/s, half of "
            f"{half['of']}'s median RPS; oha -q with latency correction, "
            f"{meta['half_rounds']} rounds)",
            "",
            f"| target | p50 ms | p99 ms | added p50 ms vs {direct} | added p99 ms vs {direct} "
            "| CPU us/req | errors |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        d = half["summary"].get(direct, {})
        for name, s in half["summary"].items():
            add50 = add99 = None
            if name != direct and d:
                add50 = s["p50_ms"] - d["p50_ms"]
                add99 = s["p99_ms"] - d["p99_ms"]
            lines.append(
                f"| {name} | {fmt(s['p50_ms'], 3)} | {fmt(s['p99_ms'], 3)} | {fmt(add50, 3)} "
                f"| {fmt(add99, 3)} | {fmt(s['us_per_req'], 1)} | {s['errors']} |"
            )
        refs = [half["summary"][r] for r in references if r in half["summary"]]
        if refs:
            slow50 = max(r["p50_ms"] for r in refs)
            slow99 = max(r["p99_ms"] for r in refs)
            lines += [
                "",
                f"Over the slowest of {', '.join(references)} at the same rate "
                f"(p50 {slow50:.3f} ms, p99 {slow99:.3f} ms):",
                "",
            ]
            for name, s in half["summary"].items():
                if name not in references:
                    lines.append(
                        f"- {name}: p50 {s['p50_ms'] - slow50:+.3f} ms, "
                        f"p99 {s['p99_ms'] - slow99:+.3f} ms"
                    )
    lines += ["", f"Raw runs: `{meta['json_name']}`. Chart: `{meta['svg_name']}`.", ""]
    return "\n".join(lines)


def svg_chart(meta, sat, baseline):
    """Two horizontal bar panels: requests per CPU-second and p99 latency."""
    names = list(sat)
    panels = [
        ("Requests per CPU-second of the proxy process (higher is better)", "req_per_cpu_s", 0),
        ("Requests per second, whole system (higher is better)", "rps", 0),
        ("p99 latency in ms at saturation (lower is better)", "p99_ms", 3),
    ]
    width, left, bar_h, gap = 760, 150, 22, 6
    panel_h = 36 + len(names) * (bar_h + gap)
    height = 50 + panel_h * len(panels)
    colors = {"portico": "#2b6cb0", baseline: "#2f855a", "haproxy": "#b7791f", "direct": "#718096"}
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="22" font-size="15" font-weight="bold">{esc(meta["title"])}</text>',
        f'<text x="10" y="40" fill="#444">{esc(meta["when"])} - medians of {meta["rounds"]} '
        f'rounds - {esc(meta["machine"])}</text>',
    ]
    y = 50
    for title, key, digits in panels:
        values = [sat[n][key] for n in names]
        top = max([v for v in values if v is not None] or [1]) or 1
        out.append(f'<text x="10" y="{y + 20}" font-weight="bold">{esc(title)}</text>')
        y += 30
        for n, v in zip(names, values):
            base = n.split("+")[0].split(" ")[0]
            color = colors.get(base, "#805ad5")
            out.append(f'<text x="10" y="{y + 15}">{esc(n)}</text>')
            if v is not None:
                w = max(1, (width - left - 110) * v / top)
                out.append(
                    f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>'
                )
                out.append(f'<text x="{left + w + 6:.1f}" y="{y + 15}">{fmt(v, digits)}</text>')
            else:
                out.append(f'<text x="{left}" y="{y + 15}" fill="#888">n/a</text>')
            y += bar_h + gap
        y += 6
    out.append("</svg>")
    return "\n".join(out) + "\n"


def esc(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} x {cpu}, Linux {platform.release()}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--oha", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--name", required=True, help="file name stem, e.g. plain")
    p.add_argument("--title", default="Portico vs nginx vs haproxy: plain proxy")
    p.add_argument("--note", default="")
    p.add_argument("--target", nargs=3, action="append", metavar=("NAME", "URL", "PID"), required=True)
    p.add_argument("--half-target", action="append", default=[], metavar="NAME")
    p.add_argument("--half-of", default="portico")
    p.add_argument("--baseline", default="nginx")
    p.add_argument("--direct", default="direct")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--half-rounds", type=int, default=3)
    p.add_argument("--duration", default="5s")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--proxy-cpu", default="0")
    p.add_argument("--loadgen-cpu", default="1")
    p.add_argument("--oha-arg", action="append", default=[], help="extra oha argument, every run")
    p.add_argument("--target-header", nargs=2, action="append", default=[],
                   metavar=("NAME", "HEADER"), help="a request header for one target's runs")
    p.add_argument("--reference", action="append", default=[], metavar="NAME",
                   help="half-load table: also show each target's p50 over the slowest reference")
    p.add_argument("--side-pid", nargs=2, action="append", default=[], metavar=("NAME", "PID"),
                   help="also report this process group's CPU per 2xx answer of each target")
    p.add_argument("--fail-on-errors", action="store_true",
                   help="exit 3 after writing results when any run saw errors or non-2xx answers")
    args = p.parse_args()

    targets = [{"name": n, "url": u, "pid": int(pid), "args": []} for n, u, pid in args.target]
    names = [t["name"] for t in targets]
    for name, header in args.target_header:
        if name not in names:
            sys.exit(f"compare: --target-header {name} is not a --target")
        next(t for t in targets if t["name"] == name)["args"] += ["-H", header]
    for name in args.half_target:
        if name not in names:
            sys.exit(f"compare: --half-target {name} is not a --target")
    if args.rounds < 1 or args.rounds > 50:
        sys.exit("compare: --rounds must be 1..50")

    # Warm-up: one short run per target (pools, page cache, CPU frequency), not recorded.
    warm = argparse.Namespace(**{**vars(args), "duration": "1s"})
    for t in targets:
        run_oha(warm, t)

    runs = []
    for r in range(args.rounds):
        # Rotate the order each round so no target always runs first or last.
        order = targets[r % len(targets):] + targets[: r % len(targets)]
        for t in order:
            res = run_oha(args, t)
            res["round"] = r + 1
            runs.append(res)
            print(
                f"round {r + 1}/{args.rounds} {t['name']:>14}: {res['rps']:>9,.0f} rps "
                f"p99 {res['p99_ms']:.3f} ms"
                + (f", {res['us_per_req']:.1f} us CPU/req" if res["us_per_req"] else ""),
                file=sys.stderr,
                flush=True,
            )
    sat = summarize(runs, names)

    half = None
    if args.half_target:
        of = sat.get(args.half_of, {}).get("rps")
        if not of:
            sys.exit(f"compare: --half-of {args.half_of} has no RPS")
        rate = max(1, int(of / 2))
        half_runs = []
        chosen = [t for t in targets if t["name"] in args.half_target]
        for r in range(args.half_rounds):
            order = chosen[r % len(chosen):] + chosen[: r % len(chosen)]
            for t in order:
                res = run_oha(args, t, rate=rate)
                res["round"] = r + 1
                half_runs.append(res)
                print(
                    f"half-load round {r + 1}/{args.half_rounds} {t['name']:>14}: "
                    f"p50 {res['p50_ms']:.3f} ms p99 {res['p99_ms']:.3f} ms",
                    file=sys.stderr,
                    flush=True,
                )
        half = {"rate": rate, "of": args.half_of, "runs": half_runs,
                "summary": summarize(half_runs, [t["name"] for t in chosen])}

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    os.makedirs(args.out_dir, exist_ok=True)
    meta = {
        "title": args.title,
        "note": args.note,
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "rounds": args.rounds,
        "half_rounds": args.half_rounds,
        "duration": args.duration,
        "connections": args.connections,
        "conn_kind": "concurrent clients, a new connection per request"
        if "--disable-keepalive" in args.oha_arg
        else "keep-alive connections",
        "proxy_cpu": args.proxy_cpu,
        "loadgen_cpu": args.loadgen_cpu,
        "json_name": f"{args.name}-{stamp}.json",
        "svg_name": f"{args.name}-latest.svg",
    }
    with open(os.path.join(args.out_dir, meta["json_name"]), "w") as f:
        json.dump({"meta": meta, "runs": runs, "summary": sat, "half": half}, f, indent=1)
    md = markdown(meta, sat, half, args.baseline, args.direct, args.reference)
    with open(os.path.join(args.out_dir, f"{args.name}-latest.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out_dir, meta["svg_name"]), "w") as f:
        f.write(svg_chart(meta, sat, args.baseline))
    print(md)
    all_runs = runs + (half["runs"] if half else [])
    failed = [r for r in all_runs if r["errors"] or r["non_2xx"]]
    if failed:
        kinds = {}
        for r in failed:
            for k, v in r["error_kinds"].items():
                kinds[k] = kinds.get(k, 0) + v
        print(f"compare: {len(failed)} run(s) saw errors or non-2xx answers: "
              f"{sum(r['non_2xx'] for r in failed)} non-2xx, errors {kinds}", file=sys.stderr)
        if args.fail_on_errors:
            sys.exit(3)


if __name__ == "__main__":
    main()
