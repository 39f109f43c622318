#!/usr/bin/env python3
"""Search benchmark driver of bench/search (Python 3.11; numpy and faiss-cpu for the peers).

    search.py --url U --key K --db FILE --pid PID --memories N --spaces S --out DIR [--smoke]

Builds the corpus through Memspace's own API (createSpace, concurrent createMemories of
12-25 English words drawn from a Zipf-like vocabulary), then runs every case over HTTP:
SEMANTIC, KEYWORD and HYBRID at concurrency 1 (p50, p99) and 8 (req/s), with `spaceIds` when
the corpus is one space and without when it is spread over S spaces. Queries are stored
memories with 2-3 words dropped. Every response is checked (HTTP 200, no `errors`); the
memory the query was made from must be among the hits of KEYWORD/HYBRID (and is counted for
SEMANTIC). recall@10 is measured against an exact scan of the same vectors (read from the
server's SQLite file). The same vectors and query vectors go through the peers in the same run:
faiss HNSW (M=32, efSearch=64, in-process, inner product) and an exact numpy scan.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import http.client
import json
import os
import random
import sqlite3
import statistics
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import WORDS, gql  # noqa: E402

SEARCH = (
    "query($q: String!, $m: SearchMode!, $s: [ID!]) { searchMemories(input: "
    "{query: $q, mode: $m, spaceIds: $s, limit: 10}) { score memory { id } } }"
)


def zipf_words(rng: random.Random, n: int) -> list[str]:
    weights = [1.0 / (r + 1) ** 1.07 for r in range(len(WORDS))]
    return rng.choices(WORDS, weights=weights, k=n)


class Client:
    """One keep-alive HTTP connection per thread."""

    def __init__(self, url: str, key: str):
        u = urllib.parse.urlparse(url)
        self.host, self.port, self.path, self.key = u.hostname, u.port, u.path, key
        self.local = threading.local()

    def post(self, query: str, variables: dict) -> tuple[int, dict]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        body = json.dumps({"query": query, "variables": variables})
        headers = {"content-type": "application/json", "authorization": f"Bearer {self.key}"}
        try:
            conn.request("POST", self.path, body, headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (http.client.HTTPException, OSError):
            self.local.conn = None
            raise
        return resp.status, json.loads(raw or b"{}")


def rss_mb(pid: int) -> tuple[float, float]:
    vals = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                vals[k] = int(v.split()[0]) / 1024
    return vals.get("VmRSS", 0.0), vals.get("VmHWM", 0.0)


def seed(url, key, spaces: int, memories: int, rng, conc=4, batch=1000):
    ids = []
    for i in range(spaces):
        d = gql(url, key, "mutation($n: String!) { createSpace(input: {name: $n}) { id } }",
                {"n": f"bench-{i}-{rng.randrange(1 << 30)}"})
        ids.append(d["createSpace"]["id"])
    texts = [" ".join(zipf_words(rng, rng.randint(12, 25))) for _ in range(memories)]
    jobs = []
    per = memories // spaces
    for s, sid in enumerate(ids):
        part = texts[s * per:(s + 1) * per]
        for b in range(0, len(part), batch):
            jobs.append((sid, part[b:b + batch]))
    mut = ("mutation($s: ID!, $i: [MemoryInput!]!) "
           "{ createMemories(spaceId: $s, inputs: $i) { id } }")
    t0 = time.time()
    created: dict[str, tuple[str, str]] = {}

    def one(job):
        sid, chunk = job
        d = gql(url, key, mut, {"s": sid, "i": [{"content": c} for c in chunk]}, timeout=600)
        return [(m["id"], sid, c) for m, c in zip(d["createMemories"], chunk)]

    with cf.ThreadPoolExecutor(conc) as ex:
        for rows in ex.map(one, jobs):
            for mid, sid, c in rows:
                created[mid] = (sid, c)
    rate = len(created) / (time.time() - t0)
    return ids, created, rate


def vectors(db_path: str, np, space_ids: list[str] | None = None):
    """(memory ids, matrix) of the chunk vectors (one chunk per short memory)."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    q = "SELECT memory_id, embedding, space_id FROM chunks"
    ids, rows = [], []
    wanted = set(space_ids) if space_ids else None
    for mid, blob, sid in con.execute(q):
        mid = str(mid) if not isinstance(mid, bytes) else mid.decode()
        if wanted is not None and str(sid) not in wanted:
            continue
        ids.append(mid)
        rows.append(np.frombuffer(blob, dtype="<f4"))
    con.close()
    return ids, np.vstack(rows).astype("float32")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def run_case(client, queries, mode, space_ids, conc, seconds, expect):
    """Runs queries round-robin for `seconds` at `conc`; returns stats and per-query hit ids."""
    lat, bad, missed = [], 0, 0
    results: dict[int, list[str]] = {}
    lock = threading.Lock()
    deadline = time.time() + seconds
    counter = iter(range(1 << 40))

    def worker():
        nonlocal bad, missed
        while time.time() < deadline:
            with lock:
                i = next(counter) % len(queries)
            text, src = queries[i]
            t0 = time.perf_counter()
            status, doc = client.post(SEARCH, {"q": text, "m": mode, "s": space_ids})
            dt = time.perf_counter() - t0
            ok = status == 200 and not doc.get("errors") and doc.get("data")
            with lock:
                lat.append(dt)
                if not ok:
                    bad += 1
                    continue
                hits = [h["memory"]["id"] for h in doc["data"]["searchMemories"]]
                results.setdefault(i, hits)
                if src not in hits:
                    missed += 1

    t0 = time.time()
    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    return {
        "n": len(lat), "p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3,
        "rps": len(lat) / wall, "bad": bad, "missed": missed,
    }, results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--memories", type=int, default=100_000)
    ap.add_argument("--spaces", type=int, default=1)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--label", default="")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    import numpy as np

    rng = random.Random(20)
    log = lambda *m: print(f"[search.py {time.strftime('%H:%M:%S')}]", *m, file=sys.stderr, flush=True)
    log(f"seeding {a.memories} memories over {a.spaces} space(s)")
    space_ids, created, ingest_rate = seed(a.url, a.key, a.spaces, a.memories, rng)
    log(f"ingest {ingest_rate:.0f} memories/s")

    # Queries: stored memories with 2-3 words dropped; their vectors come from the server's
    # own embedder (a scratch space, deleted before searching).
    sources = rng.sample(sorted(created), a.queries)
    queries = []
    for mid in sources:
        words = created[mid][1].split()
        for _ in range(rng.randint(2, 3)):
            words.pop(rng.randrange(len(words)))
        queries.append((" ".join(words), mid))
    qspace, qcreated, _ = seed_queries(a.url, a.key, [q for q, _ in queries])
    ids, mat = vectors(a.db, np, space_ids)
    qids, qmat_all = vectors(a.db, np, [qspace])
    order = {mid: i for i, mid in enumerate(qids)}
    qmat = np.vstack([qmat_all[order[m]] for m in qcreated])
    gql(a.url, a.key, "mutation($id: ID!) { deleteSpace(id: $id) { id } }", {"id": qspace})
    log(f"{len(ids)} corpus vectors, {len(qmat)} query vectors")

    # Exact ground truth and the exact-scan peer.
    exact_top = []
    t_exact = []
    for q in qmat:
        t0 = time.perf_counter()
        scores = mat @ q
        top = np.argpartition(-scores, 10)[:10]
        t_exact.append(time.perf_counter() - t0)
        exact_top.append({ids[i] for i in top})

    client = Client(a.url, a.key)
    scope = space_ids if a.spaces == 1 else None
    rows = []
    rss_before = rss_mb(a.pid)
    t0 = time.perf_counter()
    status, doc = client.post(SEARCH, {"q": queries[0][0], "m": "SEMANTIC", "s": scope})
    first = time.perf_counter() - t0
    assert status == 200 and not doc.get("errors"), doc
    log(f"first search {first * 1e3:.0f} ms")
    for mode in ("SEMANTIC", "KEYWORD", "HYBRID"):
        c1, res = run_case(client, queries, mode, scope, 1, a.seconds, None)
        c8, _ = run_case(client, queries, mode, scope, 8, a.seconds, None)
        recall = None
        if mode == "SEMANTIC":
            got = [len(set(res[i]) & exact_top[i]) / 10 for i in res]
            recall = statistics.mean(got)
        rows.append({"engine": "memspace", "mode": mode, "c1": c1, "c8": c8, "recall": recall})
        log(mode, json.dumps(rows[-1]))
    rss = rss_mb(a.pid)

    # Peers on the same vectors.
    import faiss

    faiss.omp_set_num_threads(1)
    t0 = time.time()
    hnsw = faiss.IndexHNSWFlat(mat.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 128
    faiss.omp_set_num_threads(os.cpu_count() or 2)
    hnsw.add(mat)
    faiss.omp_set_num_threads(1)
    build_s = time.time() - t0
    hnsw.hnsw.efSearch = 64
    f_lat, f_recall = [], []
    for i, q in enumerate(qmat):
        t0 = time.perf_counter()
        _, I = hnsw.search(q.reshape(1, -1), 10)
        f_lat.append(time.perf_counter() - t0)
        f_recall.append(len({ids[j] for j in I[0] if j >= 0} & exact_top[i]) / 10)
    f_lat = f_lat * max(1, int(a.seconds * 200 / len(f_lat)))

    def faiss_c8():
        n = 0
        deadline = time.time() + min(a.seconds, 5)
        while time.time() < deadline:
            for q in qmat[:50]:
                hnsw.search(q.reshape(1, -1), 10)
                n += 1
        return n

    t0 = time.time()
    with cf.ThreadPoolExecutor(8) as ex:
        total = sum(ex.map(lambda _: faiss_c8(), range(8)))
    f_rps = total / (time.time() - t0)
    peers = [
        {"engine": f"faiss {faiss.__version__} HNSW32 ef64 (in-process)", "p50_ms": pct(f_lat, 50) * 1e3,
         "p99_ms": pct(f_lat, 99) * 1e3, "rps": f_rps, "recall": statistics.mean(f_recall),
         "build_s": build_s},
        {"engine": "numpy exact scan (in-process, 1 query)", "p50_ms": pct(t_exact, 50) * 1e3,
         "p99_ms": pct(t_exact, 99) * 1e3, "rps": None, "recall": 1.0},
    ]
    out = {
        "label": a.label, "memories": a.memories, "spaces": a.spaces, "ingest_per_s": ingest_rate,
        "first_search_ms": first * 1e3, "rss_mb": rss[0], "peak_rss_mb": rss[1],
        "rss_before_search_mb": rss_before[0], "rows": rows, "peers": peers,
    }
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"search-{a.label or a.memories}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(table(out))
    bad = sum(r["c1"]["bad"] + r["c8"]["bad"] for r in rows)
    sys.exit(1 if bad else 0)


def seed_queries(url, key, texts):
    d = gql(url, key, "mutation($n: String!) { createSpace(input: {name: $n}) { id } }",
            {"n": f"bench-queries-{time.time_ns()}"})
    sid = d["createSpace"]["id"]
    mut = ("mutation($s: ID!, $i: [MemoryInput!]!) "
           "{ createMemories(spaceId: $s, inputs: $i) { id } }")
    # Duplicate detection could fold two equal queries into one memory: make each unique.
    inputs = [{"content": t, "metadata": {"q": i}} for i, t in enumerate(texts)]
    d = gql(url, key, mut, {"s": sid, "i": inputs}, timeout=600)
    return sid, [m["id"] for m in d["createMemories"]], None


def table(o) -> str:
    f = lambda x: "—" if x is None else f"{x:.2f}" if x < 10 else f"{x:.0f}"
    lines = [
        f"### {o['memories']:,} memories over {o['spaces']} space(s) "
        f"({'spaceIds' if o['spaces'] == 1 else 'no spaceIds'})",
        "",
        f"ingest {o['ingest_per_s']:.0f} memories/s · first search {o['first_search_ms']:.0f} ms · "
        f"server RSS {o['rss_mb']:.0f} MB (peak {o['peak_rss_mb']:.0f} MB)",
        "",
        "| engine | mode | p50 ms (c1) | p99 ms (c1) | req/s c1 | req/s c8 | p50 ms (c8) | recall@10 | bad | source hit missed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in o["rows"]:
        c1, c8 = r["c1"], r["c8"]
        lines.append(
            f"| memspace (HTTP) | {r['mode']} | {f(c1['p50_ms'])} | {f(c1['p99_ms'])} | {f(c1['rps'])} | "
            f"{f(c8['rps'])} | {f(c8['p50_ms'])} | {f(r['recall'])} | {c1['bad'] + c8['bad']} | "
            f"{c1['missed'] + c8['missed']}/{c1['n'] + c8['n']} |")
    for p in o["peers"]:
        lines.append(f"| {p['engine']} | SEMANTIC | {f(p['p50_ms'])} | {f(p['p99_ms'])} | — | {f(p['rps'])} | — | "
                     f"{f(p['recall'])} | — | — |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
