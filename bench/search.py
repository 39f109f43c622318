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
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import WORDS, gql, rss_mb  # noqa: E402

SEARCH = (
    "query($q: String!, $m: SearchMode!, $s: [ID!]) { searchMemories(input: "
    "{query: $q, mode: $m, spaceIds: $s, limit: 10}) { score memory { id } } }"
)


def zipf_words(rng: random.Random, n: int) -> list[str]:
    weights = [1.0 / (r + 1) ** 1.07 for r in range(len(WORDS))]
    return rng.choices(WORDS, weights=weights, k=n)


class Client:
    """One keep-alive HTTP connection per thread and replica; requests go round-robin over the
    replicas (each thread starts at a different one, so concurrent load is split evenly)."""

    def __init__(self, urls: list[str], key: str):
        self.targets = []
        for url in urls:
            u = urllib.parse.urlparse(url)
            self.targets.append((u.hostname, u.port, u.path))
        self.key = key
        self.local = threading.local()
        self.starts = iter(range(1 << 40))
        self.lock = threading.Lock()

    def _conn(self):
        loc = self.local
        if not hasattr(loc, "conns"):
            with self.lock:
                loc.turn = next(self.starts)
            loc.conns = {}
        loc.turn += 1
        i = loc.turn % len(self.targets)
        conn = loc.conns.get(i)
        if conn is None:
            host, port, _ = self.targets[i]
            conn = loc.conns[i] = http.client.HTTPConnection(host, port, timeout=120)
        return i, conn

    def request(self, path_suffix: str, body: str, headers: dict) -> tuple[int, dict, bytes]:
        i, conn = self._conn()
        path = self.targets[i][2] + path_suffix
        try:
            conn.request("POST", path, body, headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (http.client.HTTPException, OSError):
            self.local.conns.pop(i, None)
            raise
        return resp.status, dict(resp.getheaders()), raw

    def post(self, query: str, variables: dict) -> tuple[int, dict]:
        body = json.dumps({"query": query, "variables": variables})
        headers = {"content-type": "application/json", "authorization": f"Bearer {self.key}"}
        status, _, raw = self.request("", body, headers)
        return status, json.loads(raw or b"{}")


class McpClient:
    """MCP over Streamable HTTP (JSON responses), one session per thread, as an agent's MCP SDK
    would hold it: initialize + notifications/initialized once, then tools/call."""

    VERSION = "2025-06-18"

    def __init__(self, mcp_url: str, key: str):
        u = urllib.parse.urlparse(mcp_url)
        self.host, self.port, self.path, self.key = u.hostname, u.port, u.path, key
        self.local = threading.local()

    def _headers(self, session=None):
        h = {"content-type": "application/json", "accept": "application/json, text/event-stream",
             "authorization": f"Bearer {self.key}", "mcp-protocol-version": self.VERSION}
        if session:
            h["mcp-session-id"] = session
        return h

    def _send(self, conn, body, session):
        conn.request("POST", self.path, json.dumps(body), self._headers(session))
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, resp.getheader("mcp-session-id"), raw

    def _session(self):
        loc = self.local
        if getattr(loc, "conn", None) is None:
            loc.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            status, sid, raw = self._send(loc.conn, {
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": self.VERSION, "capabilities": {},
                           "clientInfo": {"name": "bench-search", "version": "1"}}}, None)
            if status != 200 or not sid:
                raise RuntimeError(f"MCP initialize: HTTP {status} {raw[:300]!r}")
            loc.sid = sid
            status, _, _ = self._send(loc.conn, {"jsonrpc": "2.0",
                                                 "method": "notifications/initialized"}, sid)
            if status not in (200, 202):
                raise RuntimeError(f"MCP initialized: HTTP {status}")
            loc.next_id = 1
        return loc

    def call(self, tool: str, arguments: dict) -> tuple[int, dict]:
        loc = self._session()
        loc.next_id += 1
        try:
            status, _, raw = self._send(loc.conn, {
                "jsonrpc": "2.0", "id": loc.next_id, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments}}, loc.sid)
        except (http.client.HTTPException, OSError):
            loc.conn = None
            raise
        return status, self.parse(raw)

    @staticmethod
    def parse(raw: bytes) -> dict:
        """A JSON body, or an SSE stream whose last `data:` event holds the JSON-RPC answer."""
        text = raw.decode()
        if text.lstrip().startswith("{"):
            return json.loads(text)
        events = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        events = [e for e in events if e]
        return json.loads(events[-1]) if events else {}


def seed(urls, key, spaces: int, memories: int, rng, conc=4, batch=1000):
    """Writes the corpus; createMemories calls go round-robin over the replicas."""
    url = urls[0]
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

    def one(numbered):
        n, (sid, chunk) = numbered
        d = gql(urls[n % len(urls)], key, mut, {"s": sid, "i": [{"content": c} for c in chunk]}, timeout=600)
        return [(m["id"], sid, c) for m, c in zip(d["createMemories"], chunk)]

    with cf.ThreadPoolExecutor(conc) as ex:
        for rows in ex.map(one, enumerate(jobs)):
            for mid, sid, c in rows:
                created[mid] = (sid, c)
    rate = len(created) / (time.time() - t0)
    return ids, created, rate


def vectors(db: str, np, space_ids: list[str] | None = None):
    """(memory ids, matrix) of the chunk vectors (one chunk per short memory), read from the
    server's database: a SQLite file path or a postgres:// URL."""
    wanted = set(space_ids) if space_ids else None
    ids, rows = [], []
    if db.startswith("postgres"):
        import psycopg

        con = psycopg.connect(db)
        cur = con.cursor(name="chunks")  # server-side cursor: 1M rows do not all sit in libpq
        cur.itersize = 20_000
        cur.execute("SELECT memory_id::text, embedding, space_id::text FROM chunks")
        source = cur
    else:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        source = con.execute("SELECT memory_id, embedding, space_id FROM chunks")
    as_text = lambda x: str(uuid.UUID(bytes=x)) if isinstance(x, bytes) and len(x) == 16 else (
        x.decode() if isinstance(x, bytes) else str(x))
    for mid, blob, sid in source:
        mid, sid = as_text(mid), as_text(sid)
        if wanted is not None and sid not in wanted:
            continue
        ids.append(mid)
        rows.append(np.frombuffer(bytes(blob), dtype="<f4"))
    con.close()
    return ids, np.vstack(rows).astype("float32")


def pgvector_peer(dsn: str, mat, qmat, exact_top, ids, seconds: float, np):
    """pgvector 0.8 HNSW (m=16, ef_construction=64, ef_search=64, vector_ip_ops) in its own
    table of a PostgreSQL with the extension: one SQL query per search from 1 and 8 clients."""
    import psycopg
    from pgvector.psycopg import register_vector

    con = psycopg.connect(dsn, autocommit=True)
    con.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(con)
    con.execute("DROP TABLE IF EXISTS bench_peer")
    con.execute(f"CREATE TABLE bench_peer (id int PRIMARY KEY, v vector({mat.shape[1]}))")
    t0 = time.time()
    with con.cursor().copy("COPY bench_peer (id, v) FROM STDIN WITH (FORMAT BINARY)") as cp:
        cp.set_types(["int4", "vector"])
        for i, row in enumerate(mat):
            cp.write_row((i, row))
    con.execute("SET maintenance_work_mem = '4GB'")
    con.execute("CREATE INDEX ON bench_peer USING hnsw (v vector_ip_ops) "
                "WITH (m = 16, ef_construction = 64)")
    build_s = time.time() - t0
    sql = "SELECT id FROM bench_peer ORDER BY v <#> %s LIMIT 10"

    def connect():
        c = psycopg.connect(dsn, autocommit=True)
        register_vector(c)
        c.execute("SET hnsw.ef_search = 64")
        return c

    c1 = connect()
    lat, rec = [], []
    deadline = time.time() + seconds
    i = 0
    while time.time() < deadline:
        q = qmat[i % len(qmat)]
        t = time.perf_counter()
        got = [r[0] for r in c1.execute(sql, (q,)).fetchall()]
        lat.append(time.perf_counter() - t)
        if i < len(qmat):
            rec.append(len({ids[j] for j in got} & exact_top[i]) / 10)
        i += 1
    conns = [connect() for _ in range(8)]

    def loop(c):
        n = 0
        end = time.time() + min(seconds, 10)
        while time.time() < end:
            c.execute(sql, (qmat[n % len(qmat)],)).fetchall()
            n += 1
        return n

    t0 = time.time()
    with cf.ThreadPoolExecutor(8) as ex:
        total = sum(ex.map(loop, conns))
    rps = total / (time.time() - t0)
    for c in conns + [c1]:
        c.close()
    size = con.execute("SELECT pg_relation_size(indexrelid) FROM pg_index "
                       "WHERE indrelid = 'bench_peer'::regclass AND NOT indisprimary").fetchone()[0]
    con.execute("DROP TABLE bench_peer")
    con.close()
    return {"engine": "pgvector 0.8 HNSW m16 efc64 ef_search64 (SQL)", "p50_ms": pct(lat, 50) * 1e3,
            "p99_ms": pct(lat, 99) * 1e3, "rps": rps, "recall": statistics.mean(rec),
            "build_s": build_s, "index_mb": size / 2**20}


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def graphql_search(client, mode, space_ids):
    def one(text):
        status, doc = client.post(SEARCH, {"q": text, "m": mode, "s": space_ids})
        if status != 200 or doc.get("errors") or not doc.get("data"):
            return None
        return [h["memory"]["id"] for h in doc["data"]["searchMemories"]]
    return one


def mcp_search(mcp, mode, space_ids):
    def one(text):
        args = {"query": text, "mode": mode.lower(), "limit": 10}
        if space_ids:
            args["space_ids"] = space_ids
        status, doc = mcp.call("search_memories", args)
        res = doc.get("result") or {}
        if status != 200 or "error" in doc or res.get("isError"):
            return None
        return [h["memory"]["id"] for h in res["structuredContent"]["hits"]]
    return one


def run_case(search, queries, conc, seconds):
    """Runs queries round-robin for `seconds` at `conc`; returns stats and per-query hit ids.
    A response is bad unless it is HTTP 200 without errors; `missed` counts searches whose
    source memory (the one the query was made from) is not among the hits."""
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
            try:
                hits = search(text)
            except (OSError, http.client.HTTPException, ValueError):
                hits = None
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)
                if hits is None:
                    bad += 1
                    continue
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
    ap.add_argument("--url", required=True, action="append", help="GraphQL URL; once per replica")
    ap.add_argument("--key", required=True)
    ap.add_argument("--db", required=True, help="the server's SQLite file or postgres:// URL")
    ap.add_argument("--pid", type=int, required=True, action="append", help="once per replica")
    ap.add_argument("--backend", default="SQLite")
    ap.add_argument("--memories", type=int, default=100_000)
    ap.add_argument("--spaces", type=int, default=1)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--peer-pgvector", default="", help="postgres:// URL with pgvector for the peer")
    ap.add_argument("--peer-pgvector-max", type=int, default=200_000)
    ap.add_argument("--label", default="")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    import numpy as np

    rng = random.Random(20)
    log = lambda *m: print(f"[search.py {time.strftime('%H:%M:%S')}]", *m, file=sys.stderr, flush=True)
    log(f"seeding {a.memories} memories over {a.spaces} space(s) through {len(a.url)} replica(s)")
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
    qspace, qcreated, _ = seed_queries(a.url[0], a.key, [q for q, _ in queries])
    ids, mat = vectors(a.db, np, space_ids)
    qids, qmat_all = vectors(a.db, np, [qspace])
    order = {mid: i for i, mid in enumerate(qids)}
    qmat = np.vstack([qmat_all[order[m]] for m in qcreated])
    gql(a.url[0], a.key, "mutation($id: ID!) { deleteSpace(id: $id) { id } }", {"id": qspace})
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
    rss_before = [rss_mb(p) for p in a.pid]
    t0 = time.perf_counter()
    status, doc = client.post(SEARCH, {"q": queries[0][0], "m": "SEMANTIC", "s": scope})
    first = time.perf_counter() - t0
    assert status == 200 and not doc.get("errors"), doc
    log(f"first search {first * 1e3:.0f} ms")

    # Read-your-write across replicas: a memory written on replica A is found by a SEMANTIC
    # search on replica B right after A's response.
    fresh = None
    if len(a.url) > 1:
        text = "freshness probe " + " ".join(zipf_words(rng, 14))
        d = gql(a.url[0], a.key, "mutation($s: ID!, $c: String!) { createMemory(input: "
                "{spaceId: $s, content: $c}) { id } }", {"s": space_ids[0], "c": text})
        t0 = time.perf_counter()
        d2 = gql(a.url[1], a.key, SEARCH, {"q": text, "m": "SEMANTIC", "s": [space_ids[0]]})
        fresh = {"found": d["createMemory"]["id"] in
                 [h["memory"]["id"] for h in d2["searchMemories"]],
                 "ms": (time.perf_counter() - t0) * 1e3}
        log("write on A, search on B:", fresh)

    def recall_of(res):
        if not res:
            return None
        return statistics.mean(len(set(res[i]) & exact_top[i]) / 10 for i in res)

    for mode in ("SEMANTIC", "KEYWORD", "HYBRID"):
        search = graphql_search(client, mode, scope)
        c1, res = run_case(search, queries, 1, a.seconds)
        c8, _ = run_case(search, queries, 8, a.seconds)
        recall = recall_of(res) if mode == "SEMANTIC" else None
        rows.append({"engine": "memspace (GraphQL)", "mode": mode, "c1": c1, "c8": c8,
                     "recall": recall})
        log(mode, json.dumps(rows[-1]))

    # The MCP transport on the same search: search_memories through an MCP session, and the
    # two transports interleaved query by query so both see the same machine load.
    mcp = McpClient(a.url[0].rsplit("/graphql", 1)[0] + "/mcp", a.key)
    msearch = mcp_search(mcp, "SEMANTIC", scope)
    gsearch = graphql_search(Client(a.url[:1], a.key), "SEMANTIC", scope)
    c1, res = run_case(msearch, queries, 1, a.seconds)
    c8, _ = run_case(msearch, queries, 8, a.seconds)
    rows.append({"engine": "memspace (MCP)", "mode": "SEMANTIC", "c1": c1, "c8": c8,
                 "recall": recall_of(res)})
    log("MCP", json.dumps(rows[-1]))
    pair = {"graphql": [], "mcp": [], "bad": 0}
    deadline = time.time() + a.seconds
    i = 0
    while time.time() < deadline:
        text = queries[i % len(queries)][0]
        for name, fn in (("graphql", gsearch), ("mcp", msearch)) if i % 2 else (
                ("mcp", msearch), ("graphql", gsearch)):
            t0 = time.perf_counter()
            ok = fn(text) is not None
            pair[name].append(time.perf_counter() - t0)
            pair["bad"] += 0 if ok else 1
        i += 1
    paired = {k: {"p50_ms": pct(v, 50) * 1e3, "p99_ms": pct(v, 99) * 1e3, "n": len(v)}
              for k, v in pair.items() if k != "bad"}
    paired["bad"] = pair["bad"]
    log("MCP vs GraphQL interleaved:", json.dumps(paired))
    rss = [rss_mb(p) for p in a.pid]

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
    del hnsw
    peers = [
        {"engine": f"faiss {faiss.__version__} HNSW32 ef64 (in-process)", "p50_ms": pct(f_lat, 50) * 1e3,
         "p99_ms": pct(f_lat, 99) * 1e3, "rps": f_rps, "recall": statistics.mean(f_recall),
         "build_s": build_s},
        {"engine": "numpy exact scan (in-process, 1 query)", "p50_ms": pct(t_exact, 50) * 1e3,
         "p99_ms": pct(t_exact, 99) * 1e3, "rps": None, "recall": 1.0},
    ]
    if a.peer_pgvector and len(ids) <= a.peer_pgvector_max:
        log("pgvector peer: loading and indexing", len(ids), "vectors")
        peers.append(pgvector_peer(a.peer_pgvector, mat, qmat, exact_top, ids, a.seconds, np))
        log("pgvector peer", json.dumps(peers[-1]))
    out = {
        "label": a.label, "backend": a.backend, "memories": a.memories, "spaces": a.spaces,
        "replicas": len(a.url), "ingest_per_s": ingest_rate, "first_search_ms": first * 1e3,
        "rss_mb": [r[0] for r in rss], "peak_rss_mb": [r[1] for r in rss],
        "rss_before_search_mb": [r[0] for r in rss_before], "rows": rows, "peers": peers,
        "mcp_vs_graphql": paired, "fresh": fresh,
        "load_avg": os.getloadavg(),
    }
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"search-{a.label or a.memories}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(table(out))
    bad = sum(r["c1"]["bad"] + r["c8"]["bad"] for r in rows) + paired["bad"]
    if fresh is not None and not fresh["found"]:
        bad += 1
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
    mb = lambda xs: " / ".join(f"{x:.0f}" for x in xs)
    reps = f", {o['replicas']} replicas" if o["replicas"] > 1 else ""
    lines = [
        f"### {o['backend']}: {o['memories']:,} memories over {o['spaces']} space(s) "
        f"({'spaceIds' if o['spaces'] == 1 else 'no spaceIds'}{reps})",
        "",
        f"ingest {o['ingest_per_s']:.0f} memories/s · first search {o['first_search_ms']:.0f} ms · "
        f"server RSS {mb(o['rss_mb'])} MB (peak {mb(o['peak_rss_mb'])} MB; before searching "
        f"{mb(o['rss_before_search_mb'])} MB) · load average at end "
        f"{' '.join(f'{x:.2f}' for x in o['load_avg'])}",
        "",
        "| engine | mode | p50 ms (c1) | p99 ms (c1) | req/s c1 | req/s c8 | p50 ms (c8) | recall@10 | bad | source hit missed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in o["rows"]:
        c1, c8 = r["c1"], r["c8"]
        lines.append(
            f"| {r['engine']} | {r['mode']} | {f(c1['p50_ms'])} | {f(c1['p99_ms'])} | {f(c1['rps'])} | "
            f"{f(c8['rps'])} | {f(c8['p50_ms'])} | {f(r['recall'])} | {c1['bad'] + c8['bad']} | "
            f"{c1['missed'] + c8['missed']}/{c1['n'] + c8['n']} |")
    for p in o["peers"]:
        extra = f" (build {p['build_s']:.0f} s)" if p.get("build_s") else ""
        lines.append(f"| {p['engine']}{extra} | SEMANTIC | {f(p['p50_ms'])} | {f(p['p99_ms'])} | — | "
                     f"{f(p['rps'])} | — | {f(p['recall'])} | — | — |")
    m = o["mcp_vs_graphql"]
    lines += [
        "",
        f"MCP `search_memories` vs GraphQL `searchMemories`, SEMANTIC, interleaved query by query "
        f"({m['mcp']['n']} each): p50 {m['mcp']['p50_ms']:.2f} vs {m['graphql']['p50_ms']:.2f} ms "
        f"(MCP adds {m['mcp']['p50_ms'] - m['graphql']['p50_ms']:+.2f} ms), p99 "
        f"{m['mcp']['p99_ms']:.2f} vs {m['graphql']['p99_ms']:.2f} ms, bad {m['bad']}",
    ]
    if o.get("fresh"):
        fr = o["fresh"]
        lines.append(f"write on replica A, SEMANTIC search on replica B right after: "
                     f"{'found' if fr['found'] else 'NOT FOUND'} ({fr['ms']:.1f} ms)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
