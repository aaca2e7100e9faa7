#!/usr/bin/env python3
"""A stand-in for oha in tests of compare.py: prints oha-shaped JSON without sending anything.

Latency grows with the URL's port digit sum and halves under `-q`, so targets differ
predictably; a URL containing "/fail" reports 5 non-2xx answers.
"""
import json
import sys

args = sys.argv[1:]
url = args[-1]
rate = float(args[args.index("-q") + 1]) if "-q" in args else None
base = 0.0005 + (sum(int(c) for c in url if c.isdigit()) % 7) * 0.0001
if rate:
    base /= 2
codes = {"200": 1000}
if "/fail" in url:
    codes["503"] = 5
print(json.dumps({
    "summary": {"requestsPerSec": 1000.0 / (base * 1000)},
    "latencyPercentiles": {"p50": base, "p99": base * 3},
    "statusCodeDistribution": codes,
    "errorDistribution": {"aborted due to deadline": 3},
}))
