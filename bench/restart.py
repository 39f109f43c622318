#!/usr/bin/env python3
"""First searches after a restart: bench/search stops a server (SIGTERM: it saves its indexes),
starts it again on the same database and runs this. Waits for /graphql, then times one
SEMANTIC and one KEYWORD search over everything the key sees (each checked: HTTP 200, no
`errors`, at least one hit), and prints one Markdown line with the time from process start to
the first answer, both searches' latency and the server's RSS after them."""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import SEARCH_QUERY, WORDS, gql, rss_mb  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--started", type=float, required=True, help="the process's start (epoch s)")
    ap.add_argument("--query", default=" ".join(WORDS[:4]), help="default: the corpus's commonest words")
    ap.add_argument("--timeout", type=float, default=300)
    a = ap.parse_args()
    deadline = time.time() + a.timeout
    while True:
        try:
            gql(a.url, a.key, "{ viewer { __typename } }", timeout=5)
            break
        except Exception:  # not listening yet, or still starting
            if time.time() > deadline:
                print("server did not answer after the restart", file=sys.stderr)
                return 1
            time.sleep(0.05)
    ready = time.time()
    timings = {}
    for mode in ("SEMANTIC", "KEYWORD"):
        t = time.time()
        hits = gql(a.url, a.key, SEARCH_QUERY % mode, {"q": a.query}, timeout=a.timeout)["searchMemories"]
        timings[mode] = (time.time() - t) * 1000
        if not hits:
            print(f"{mode} after the restart returned no hit", file=sys.stderr)
            return 1
    rss, hwm = rss_mb(a.pid)
    print(f"restart: serving {ready - a.started:.2f} s after start · first SEMANTIC "
          f"{timings['SEMANTIC']:.0f} ms, first KEYWORD {timings['KEYWORD']:.0f} ms · "
          f"RSS {rss:.0f} MB (peak {hwm:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
