#!/usr/bin/env python3
"""Helpers of bench/run (Python 3.11 standard library only).

    bench.py wait URL [--timeout S]                      wait until a GraphQL endpoint answers
    bench.py seed --url U --key K --spaces N --per-space M [--concurrency C] --out FILE
    bench.py search-bodies --mode KEYWORD|HYBRID --out FILE
    bench.py check --kind memspace|postgraphile --url U --key K --per-space M --out-body FILE
    bench.py report --dir OUT --md FILE

`seed` writes through Memspace's own GraphQL API: createSpace per space, then one
createMemories call per space (batches of at most 1000), concurrently, and records the ingest
rate. `check` runs the benchmark query once, verifies the rows, and writes the wrk body.
`report` prints the results table and writes it to a markdown file.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import random
import sys
import time
import urllib.error
import urllib.request

# Plain English words, so stemming and full-text search behave like real text.
WORDS = """
account action advice agent alarm album answer apple archive area argument army arrow art
article audit author autumn baby backup badge balance ball band bank battery beach bean bear
bell bench berry bicycle bird birthday blanket board boat bone book border bottle box brain
branch bread bridge brother bucket budget bug builder bus butter button cable cake calendar
camera camp candle canvas capital captain car card carpet castle cat ceiling cell chain chair
chart cheese chicken child chocolate church circle city class clock cloud coach coast code
coffee coin college colour comment company computer concert contract cookie copper corner
cotton country course cousin crane cream credit crowd crystal cup curtain customer cycle
dance data date deadline decision deploy desert design desk detail diamond diary dinner
doctor document dog door dragon drawer dream dress driver drum duck eagle earth editor egg
elephant email engine error evening event exam factory family farm father feature fence
festival field file film finger fire fish flag flight floor flower forest fork fountain
friend frog fruit galaxy game garden gate ghost gift glass glove goal gold grape graph grass
guitar hammer harbor hat health heart helmet highway hill holiday honey horse hospital hotel
house invoice island jacket jelly jewel journey juice jungle kettle key king kitchen kite
knife ladder lake lamp language laptop lawyer leader leaf lemon letter library light lion
list lobby lock machine magnet manager map market meeting memory menu metal milk mirror model
monkey moon morning mother mountain mouse museum music nail needle network night note number
ocean office onion orange oven owner page painter palace paper parcel park party pencil
pepper piano picture pilot pipe planet plant plate pocket poem police pool potato printer
project pumpkin puzzle queen question rabbit radio rain receipt recipe record report river
road robot rocket roof room rope rose salad salt sand school science screen sea season secret
server shadow ship shirt shoe shop signal silver sister sky snake snow soap soldier song
spider spoon spring square stadium star station stone storm story street student sugar
summer sun sweater table teacher team temple tennis ticket tiger timber toast tomato tower
town toy track train tree truck tunnel umbrella uncle university valley vase village violin
volcano wallet water wave weather wheel window winter wizard wolf worker yacht yard zebra
""".split()

SPACES_QUERY = "{ spaces(first: 50) { edges { node { id name memoryCount } } } }"
PGL_QUERY = "{ allSpaces(first: 50) { nodes { id name %s { totalCount } } } }"
SEARCH_QUERY = (
    "query($q: String!) { searchMemories(input: {query: $q, mode: %s, limit: 10}) "
    "{ score memory { id content } } }"
)


def gql(url: str, key: str | None, query: str, variables: dict | None = None, timeout=120):
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    doc = json.loads(raw or b"{}")
    if status != 200 or doc.get("errors") or not doc.get("data"):
        raise RuntimeError(f"HTTP {status}: {raw[:500].decode(errors='replace')}")
    return doc["data"]


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of `pid` in MiB."""
    vals = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                vals[k] = int(v.split()[0]) / 1024
    return vals.get("VmRSS", 0.0), vals.get("VmHWM", 0.0)


def cmd_wait(a):
    deadline = time.time() + a.timeout
    last = None
    while time.time() < deadline:
        try:
            gql(a.url, a.key, "{ __typename }", timeout=5)
            return
        except Exception as e:  # noqa: BLE001 - anything means "not yet"
            last = e
            time.sleep(0.3)
    sys.exit(f"{a.url} did not answer within {a.timeout}s: {last}")


def sentence(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def cmd_seed(a):
    rng = random.Random(42)
    t0 = time.perf_counter()

    def create_space(i: int) -> str:
        data = gql(a.url, a.key,
                   "mutation($n: String!) { createSpace(input: {name: $n}) { id } }",
                   {"n": f"bench space {i:05d}"})
        return data["createSpace"]["id"]

    with cf.ThreadPoolExecutor(a.concurrency) as pool:
        space_ids = list(pool.map(create_space, range(a.spaces)))
    t_spaces = time.perf_counter() - t0

    # Content is made up front so the timed phase is the API's work, not Python's.
    batches = []
    for sid in space_ids:
        contents = [sentence(rng, 6, 14) for _ in range(a.per_space)]
        for k in range(0, len(contents), 1000):
            batches.append((sid, [{"content": c} for c in contents[k:k + 1000]]))
    mutation = ("mutation($s: ID!, $i: [MemoryInput!]!) "
                "{ createMemories(spaceId: $s, inputs: $i) { id } }")

    def write(batch) -> int:
        sid, inputs = batch
        data = gql(a.url, a.key, mutation, {"s": sid, "i": inputs})
        return len(data["createMemories"])

    t1 = time.perf_counter()
    with cf.ThreadPoolExecutor(a.concurrency) as pool:
        written = sum(pool.map(write, batches))
    t_mem = time.perf_counter() - t1
    expected = a.spaces * a.per_space
    if written != expected:
        sys.exit(f"seed: wrote {written} memories, expected {expected}")
    out = {
        "spaces": a.spaces,
        "per_space": a.per_space,
        "memories": written,
        "batch": min(a.per_space, 1000),
        "concurrency": a.concurrency,
        "spaces_seconds": round(t_spaces, 3),
        "spaces_per_s": round(a.spaces / t_spaces, 1),
        "memories_seconds": round(t_mem, 3),
        "memories_per_s": round(written / t_mem, 1),
    }
    json.dump(out, open(a.out, "w"))
    print(f"seeded {a.spaces} spaces in {t_spaces:.1f}s ({out['spaces_per_s']}/s); "
          f"{written} memories in {t_mem:.1f}s = {out['memories_per_s']:.0f} memories/s "
          f"(createMemories batches of {out['batch']}, {a.concurrency} concurrent calls)")


def cmd_search_bodies(a):
    rng = random.Random(7 if a.mode == "KEYWORD" else 8)
    with open(a.out, "w") as f:
        for _ in range(a.count):
            q = sentence(rng, 1, 3)
            f.write(json.dumps({"query": SEARCH_QUERY % a.mode, "variables": {"q": q}}) + "\n")


def cmd_check(a):
    if a.kind == "memspace":
        query = SPACES_QUERY
        data = gql(a.url, a.key, query)
        rows = [(e["node"]["id"], e["node"]["name"], e["node"]["memoryCount"])
                for e in data["spaces"]["edges"]]
        expect = '"memoryCount":'
    else:
        fields = gql(a.url, None, '{ __type(name: "Space") { fields { name type { name '
                                  'ofType { name } } } } }')["__type"]["fields"]
        rel = [f["name"] for f in fields if f["name"].startswith("memories")
               and "Connection" in ((f["type"].get("name") or "")
                                    + ((f["type"].get("ofType") or {}).get("name") or ""))]
        if len(rel) != 1:
            sys.exit(f"{a.url}: cannot tell the memories relation of Space among "
                     f"{[f['name'] for f in fields]}")
        rel = rel[0]
        print(f"{a.url}: Space's memories relation is `{rel}`")
        query = PGL_QUERY % rel
        data = gql(a.url, None, query)
        rows = [(n["id"], n["name"], n[rel]["totalCount"]) for n in data["allSpaces"]["nodes"]]
        expect = '"totalCount":'
    want_rows = min(50, a.spaces)
    bad = [r for r in rows if r[2] != a.per_space]
    if len(rows) != want_rows or bad:
        sys.exit(f"{a.url}: expected {want_rows} spaces with {a.per_space} memories each, "
                 f"got {len(rows)} rows, wrong counts: {bad[:3]}")
    print(f"{a.url}: ok, {len(rows)} spaces x {a.per_space} memories; query: {query}")
    print(f"  first row: {rows[0]}")
    with open(a.out_body, "w") as f:
        f.write(json.dumps({"query": query}) + "\n")
    with open(a.out_body + ".expect", "w") as f:
        f.write(f"{expect}{a.per_space}")


def fmt_ms(us):
    return f"{us / 1000:.2f}"


def cmd_report(a):
    d = a.dir
    meta = json.load(open(os.path.join(d, "meta.json")))
    ingest = json.load(open(os.path.join(d, "ingest.json")))
    res = {}
    for name in os.listdir(os.path.join(d, "results")):
        res[name.removesuffix(".json")] = json.load(open(os.path.join(d, "results", name)))

    def errors(r):
        return (r["non200"] + r["gql_errors"] + r["bad_body"] + r["socket_errors"]
                + r["timeouts"])

    def rps(r):
        return r["requests"] / (r["duration_us"] / 1e6)

    lines = []
    w = lines.append
    w(f"# Memspace vs PostGraphile ({meta['mode']} run)")
    w("")
    w(f"- date: {meta['date']}; commit: {meta['commit']}; machine: {meta['cpus']} cores, "
      f"{meta['cpu_model']}; load average at start {meta['load_start']}, "
      f"at end {meta['load_end']}")
    w(f"- PostgreSQL {meta['pg_version']}; Node {meta['node_version']}; "
      f"PostGraphile {meta['pgl_v4_version']} and {meta['pgl_v5_version']}; "
      f"{meta['wrk_version']}")
    w(f"- data: {ingest['spaces']} spaces x {ingest['per_space']} memories = "
      f"{ingest['memories']} memories, seeded through Memspace's GraphQL API; "
      f"PostGraphile reads a copy in schema `pgl` of the same database")
    w(f"- load: wrk -t{meta['wrk_threads']} -c{meta['conc']} for {meta['run_s']} s after a "
      f"{meta['warm_s']} s warm-up, POST /graphql, one query per server (below); pools: "
      f"{meta['pool']} connections each")
    w("- errors = responses that are not a 200 with `data`, no `errors` and the expected count, "
      "plus socket errors and timeouts (wrk Lua `response` hook)")
    w("")
    w("| server | req/s | p50 ms | p99 ms | errors | server RSS MB |")
    w("|---|---:|---:|---:|---:|---:|")
    names = [("memspace", "Memspace"), ("pgl_v4", "PostGraphile v4"),
             ("pgl_v5", "PostGraphile v5")]
    for key, label in names:
        r = res.get(key)
        if r is None:
            w(f"| {label} | - | - | - | not run | - |")
            continue
        w(f"| {label} | {rps(r):.0f} | {fmt_ms(r['p50_us'])} | {fmt_ms(r['p99_us'])} | "
          f"{errors(r)} | {r['rss_kb'] / 1024:.0f} |")
    if "memspace" in res and "pgl_v5" in res:
        w(f"| **Memspace / PostGraphile v5** | **{rps(res['memspace']) / rps(res['pgl_v5']):.2f}x**"
          f" | | | | |")
    if "memspace" in res and "pgl_v4" in res:
        w(f"| Memspace / PostGraphile v4 | {rps(res['memspace']) / rps(res['pgl_v4']):.2f}x"
          f" | | | | |")
    w("")
    w(f"Memspace only, over {ingest['memories']} memories in {ingest['spaces']} spaces "
      f"(searchMemories over every space the admin can read, limit 10, "
      f"{meta['search_queries']} rotating queries of 1-3 words, wrk -c{meta['search_conc']} "
      f"for {meta['search_s']} s after a {meta['warm_s']} s warm-up):")
    w("")
    w("| Memspace | req/s | p50 ms | p99 ms | errors | server RSS MB |")
    w("|---|---:|---:|---:|---:|---:|")
    for key, label in [("search_keyword", "searchMemories KEYWORD"),
                       ("search_hybrid", "searchMemories HYBRID")]:
        r = res.get(key)
        if r is not None:
            w(f"| {label} | {rps(r):.0f} | {fmt_ms(r['p50_us'])} | {fmt_ms(r['p99_us'])} | "
              f"{errors(r)} | {r['rss_kb'] / 1024:.0f} |")
    w(f"| createMemories ingest | **{ingest['memories_per_s']:.0f} memories/s** | | | 0 | |")
    w("")
    w(f"Ingest: {ingest['memories']} memories in {ingest['memories_seconds']} s through "
      f"createMemories (batches of {ingest['batch']}, {ingest['concurrency']} concurrent "
      f"calls, builtin embedder); {ingest['spaces']} createSpace calls at "
      f"{ingest['spaces_per_s']}/s.")
    w("")
    w("Details (measured runs): CPU = server process CPU time / wall time (2.00 = both "
      "cores); idle = machine idle share during the run; peak RSS = VmHWM.")
    w("")
    w("| run | requests | p90 ms | max ms | server CPU | machine idle | load avg before | "
      "peak RSS MB |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    order = ["memspace", "pgl_v4", "pgl_v5", "search_keyword", "search_hybrid"]
    for key in order:
        r = res.get(key)
        if r is None:
            continue
        w(f"| {key} | {r['requests']} | {fmt_ms(r['p90_us'])} | {fmt_ms(r['max_us'])} | "
          f"{r['cpu_cores']:.2f} | {r['idle_pct']:.0f}% | {r['load_before']} | "
          f"{r['hwm_kb'] / 1024:.0f} |")
    w("")
    w("Queries:")
    w("")
    for key, label in names:
        body_file = os.path.join(d, f"{key}.body")
        if os.path.exists(body_file):
            w(f"- {label}: `{json.loads(open(body_file).readline())['query']}`")
    w("")
    w("Reading the table: Memspace's RSS in the first table is sampled before any search; the "
      "first HYBRID/SEMANTIC search loads its in-memory vector index (384 floats per chunk), "
      "hence the larger RSS in the search rows. Memspace is the release build without the "
      "`neural` feature (the in-process model, unused here). It authenticates the API key on "
      "every request (the key's principal is cached, flushed when access changes) and filters "
      "the page by the caller's access, in one SQL statement per request with the counts; "
      "PostGraphile runs without auth (it ignores the header) and answers each query with one "
      "SQL statement. "
      "In PostGraphile v5 (amber preset) `id` is the global node id (the uuid is `rowId`); in v4 "
      "`id` is the uuid column. Node.js runs the JavaScript on one core; Memspace's tokio "
      "runtime uses both. The load generator, PostgreSQL and the server share the same cores.")
    w("")
    text = "\n".join(lines) + "\n"
    open(a.md, "w").write(text)
    print(text)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("wait")
    s.add_argument("url")
    s.add_argument("--key")
    s.add_argument("--timeout", type=float, default=60)
    s = sub.add_parser("seed")
    s.add_argument("--url", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--spaces", type=int, required=True)
    s.add_argument("--per-space", type=int, required=True)
    s.add_argument("--concurrency", type=int, default=8)
    s.add_argument("--out", required=True)
    s = sub.add_parser("search-bodies")
    s.add_argument("--mode", required=True, choices=["KEYWORD", "HYBRID", "SEMANTIC"])
    s.add_argument("--count", type=int, default=16)
    s.add_argument("--out", required=True)
    s = sub.add_parser("check")
    s.add_argument("--kind", required=True, choices=["memspace", "postgraphile"])
    s.add_argument("--url", required=True)
    s.add_argument("--key")
    s.add_argument("--spaces", type=int, required=True)
    s.add_argument("--per-space", type=int, required=True)
    s.add_argument("--out-body", required=True)
    s = sub.add_parser("report")
    s.add_argument("--dir", required=True)
    s.add_argument("--md", required=True)
    a = p.parse_args()
    {"wait": cmd_wait, "seed": cmd_seed, "search-bodies": cmd_search_bodies,
     "check": cmd_check, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
