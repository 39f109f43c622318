#!/usr/bin/env python3
"""Abuse measurement driver of bench/abuse (Python 3.11, standard library only).

    abuse.py --url U --key K --pid PID [--smoke]

Measures against a running server (PID is its process, for RSS from /proc): (a) metrics growth
under unauthenticated requests with endless operation names, (b) another user's HTTP latency
while one WebSocket sends aliased searches, (c) what many aliased `limit: 100` searches get,
(d) how fast a revoked key's socket is closed. The WebSocket client (graphql-transport-ws) is a
minimal RFC 6455 one written here, so the script needs no package. Prints Markdown tables;
exits 1 when a case got an answer it must not (a 5xx, a search over the limits that ran, a
revoked key that still works).
"""
from __future__ import annotations

import argparse
import base64
import concurrent.futures as cf
import http.client
import json
import os
import random
import socket
import statistics
import struct
import sys
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import WORDS, gql, rss_mb  # noqa: E402

FAILURES: list[str] = []


def log(*m):
    print(f"[abuse.py {time.strftime('%H:%M:%S')}]", *m, file=sys.stderr, flush=True)


def fail(what: str):
    log("UNEXPECTED:", what)
    FAILURES.append(what)


def reset_peak(pid: int) -> bool:
    """Resets VmHWM to the current RSS (Linux: "5" to clear_refs); False when not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


class Http:
    """One keep-alive HTTP connection per thread."""

    def __init__(self, url: str, key: str | None):
        u = urllib.parse.urlparse(url)
        self.host, self.port, self.path, self.key = u.hostname, u.port, u.path, key
        self.local = threading.local()

    def post(self, body: dict, timeout=120) -> tuple[int, bytes]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        headers = {"content-type": "application/json"}
        if self.key:
            headers["authorization"] = f"Bearer {self.key}"
        try:
            conn.request("POST", self.path, json.dumps(body), headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (http.client.HTTPException, OSError):
            self.local.conn = None
            raise
        if resp.getheader("connection", "").lower() == "close":
            self.local.conn = None
        return resp.status, raw


class Ws:
    """A graphql-transport-ws client over a plain socket (RFC 6455, client frames masked)."""

    def __init__(self, url: str, timeout=120):
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET /graphql/ws HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
             "Upgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
             "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head[:200].decode(errors="replace"))

    def _frame(self, op: int, payload: bytes):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | op, 0x80 | n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x80 | op, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | op, 0x80 | 127, n)
        # XOR as one big integer: a byte loop is slow for messages of 100 KB.
        key = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
        self.sock.sendall(head + mask + masked)

    def send(self, message: dict):
        self._frame(0x1, json.dumps(message).encode())

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError("socket closed without a close frame")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        """("text", message) or ("close", code, reason); pings answered."""
        data = b""
        while True:
            b1, b2 = self._read(2)
            op, n = b1 & 0x0F, b2 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            mask = self._read(4) if b2 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(a ^ mask[i % 4] for i, a in enumerate(payload))
            if op == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return ("close", code, payload[2:].decode(errors="replace"))
            if op == 0x9:
                self._frame(0xA, payload)
                continue
            if op == 0xA:
                continue
            data += payload
            if not b1 & 0x80:
                continue
            message = json.loads(data)
            data = b""
            if message.get("type") == "ping":
                self.send({"type": "pong"})
                continue
            if message.get("type") == "pong":
                continue
            return ("text", message)

    def init(self, key: str):
        """Sends connection_init; returns ("ack",) or the close ("close", code, reason)."""
        self.send({"type": "connection_init", "payload": {"authorization": f"Bearer {key}"}})
        got = self.recv()
        if got[0] == "text" and got[1].get("type") == "connection_ack":
            return ("ack",)
        return got

    def operation(self, op_id: str, query: str, variables: dict | None = None):
        """Runs one query; returns (payload of its `next` or the `error` list, or a close)."""
        self.send({"id": op_id, "type": "subscribe",
                   "payload": {"query": query, "variables": variables or {}}})
        payload = None
        while True:
            got = self.recv()
            if got[0] == "close":
                return got
            m = got[1]
            if m.get("id") != op_id:
                continue
            if m["type"] == "next":
                payload = m["payload"]
            elif m["type"] == "error":
                payload = {"errors": m["payload"]}
            elif m["type"] == "complete":
                return ("done", payload)

    def close(self):
        try:
            self._frame(0x8, struct.pack("!H", 1000))
            self.sock.close()
        except OSError:
            pass


def codes_of(doc) -> list[str]:
    return [((e or {}).get("extensions") or {}).get("code", "?") for e in (doc or {}).get("errors") or []]


def aliased(n: int, limit: int, query_text: str) -> str:
    sel = "{ score chunk memory { id content tags } }"
    parts = " ".join(
        f'a{i}: searchMemories(input: {{query: "{query_text}", limit: {limit}}}) {sel}' for i in range(n))
    return "query Aliased { " + parts + " }"


def new_user_key(url: str, admin: str, name: str) -> tuple[str, str]:
    """(key, key id) of a new ordinary user."""
    d = gql(url, admin, "mutation($n: String!, $e: String!) { createUser(input: "
            "{name: $n, email: $e, isAdmin: false}) { id } }",
            {"n": name, "e": f"{name}-{random.randrange(1 << 40)}@example.com"})
    k = gql(url, admin, "mutation($u: ID!, $n: String!) { createApiKey(input: {userId: $u, "
            "name: $n}) { key apiKey { id } } }", {"u": d["createUser"]["id"], "n": name})
    return k["createApiKey"]["key"], k["createApiKey"]["apiKey"]["id"]


def metrics_bytes(url: str) -> int:
    base = url.rsplit("/graphql", 1)[0]
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as r:
        return len(r.read())


# ------------------------------------------------------------------------------------------
# (a) unauthenticated requests with endless operation names

def case_a(url: str, pid: int, n: int) -> list[str]:
    client = Http(url, None)
    rss0, _ = rss_mb(pid)
    m0 = metrics_bytes(url)
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    t0 = time.time()

    def one(i):
        status, _ = client.post({"query": f"query Op{i}x{random.randrange(1 << 30)} {{ viewer {{ __typename }} }}"})
        with lock:
            statuses[status] = statuses.get(status, 0) + 1

    with cf.ThreadPoolExecutor(4) as ex:
        list(ex.map(one, range(n)))
    wall = time.time() - t0
    rss1, _ = rss_mb(pid)
    m1 = metrics_bytes(url)
    if set(statuses) != {401}:
        fail(f"(a) unauthenticated requests got statuses {statuses}")
    return [
        "## (a) Unauthenticated requests, each with a new operation name",
        "",
        "| requests | statuses | req/s | RSS before MB | RSS after MB | /metrics before KB | /metrics after KB |",
        "|---:|---|---:|---:|---:|---:|---:|",
        f"| {n} | {statuses} | {n / wall:.0f} | {rss0:.1f} | {rss1:.1f} | {m0 / 1024:.1f} | {m1 / 1024:.1f} |",
        "",
    ]


# ------------------------------------------------------------------------------------------
# (b) another user's latency while one socket searches

def latency(client: Http, seconds: float) -> dict:
    lat, bad = [], 0
    q = {"query": "{ viewer { principal { __typename } } spaces(first: 10) { totalCount } }"}
    deadline = time.time() + seconds
    while time.time() < deadline:
        t = time.perf_counter()
        status, raw = client.post(q)
        lat.append(time.perf_counter() - t)
        if status != 200 or b'"errors"' in raw:
            bad += 1
    return {"n": len(lat), "p50": pct(lat, 50) * 1e3, "p99": pct(lat, 99) * 1e3,
            "max": max(lat) * 1e3 if lat else float("nan"), "bad": bad}


def socket_load(url: str, key: str, query: str, stop: threading.Event, out: dict):
    """Sends `query` on one socket, one after the other, until `stop`; counts the outcomes."""
    ws = Ws(url)
    if ws.init(key)[0] != "ack":
        out["error"] = "connection_init refused"
        return
    i = 0
    times = []
    while not stop.is_set():
        t = time.perf_counter()
        got = ws.operation(str(i), query)
        times.append(time.perf_counter() - t)
        if got[0] == "close":
            out["closed"] = got[1]
            return
        for c in codes_of(got[1]) or ["ok"]:
            out[c] = out.get(c, 0) + 1
        i += 1
    out["ops"] = i
    out["p50_ms"] = pct(times, 50) * 1e3
    ws.close()


def largest_allowed(url: str, key: str, word: str) -> int:
    """The most aliased `limit: 10` searches one operation may hold under the default limits."""
    best = 1
    for n in (200, 100, 60, 50, 40, 30, 20, 10, 5, 2, 1):
        status, raw = Http(url, key).post({"query": aliased(n, 10, word)})
        if status == 200 and "QUERY_TOO_COMPLEX" not in codes_of(json.loads(raw)):
            best = n
            break
    return best


def case_b(url: str, admin: str, other: str, word: str, seconds: float) -> list[str]:
    client = Http(url, other)
    rows = []
    base = latency(client, seconds)
    rows.append(("alone", "", base))
    allowed = largest_allowed(url, admin, word)
    for label, query in [
        ("1,000 aliased searches per operation (refused)", aliased(1000, 10, word)),
        (f"{allowed} aliased searches per operation (the most allowed)", aliased(allowed, 10, word)),
    ]:
        stop, out = threading.Event(), {}
        t = threading.Thread(target=socket_load, args=(url, admin, query, stop, out))
        t.start()
        time.sleep(0.3)
        stats = latency(client, seconds)
        stop.set()
        t.join(timeout=120)
        if "closed" in out or "error" in out:
            fail(f"(b) the loading socket: {out}")
        if "1,000" in label and out.get("ok"):
            fail("(b) 1,000 aliased searches ran on a socket")
        rows.append((label, ", ".join(f"{k}: {v:.0f}" if isinstance(v, float) else f"{k}: {v}"
                                      for k, v in out.items()), stats))
        if stats["bad"]:
            fail(f"(b) {stats['bad']} of the other user's requests failed under {label}")
    lines = [
        "## (b) Another user's simple query over HTTP while one WebSocket searches",
        "",
        "| load on the socket | socket outcomes | requests | p50 ms | p99 ms | max ms | failed |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, outcomes, s in rows:
        lines.append(f"| {label} | {outcomes} | {s['n']} | {s['p50']:.2f} | {s['p99']:.2f} | "
                     f"{s['max']:.2f} | {s['bad']} |")
    return lines + [""]


# ------------------------------------------------------------------------------------------
# (c) many aliased `limit: 100` searches

def case_c(url: str, admin: str, pid: int, word: str, counts: list[int]) -> list[str]:
    lines = [
        "## (c) `searchMemories(input: {limit: 100})` under many aliases",
        "",
        "| aliases | HTTP | outcome | time ms | response KB | peak RSS MB |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    peak_ok = reset_peak(pid)
    for n in counts:
        reset_peak(pid)
        t = time.perf_counter()
        status, raw = Http(url, admin).post({"query": aliased(n, 100, word)}, timeout=300)
        dt = time.perf_counter() - t
        _, hwm = rss_mb(pid)
        doc = json.loads(raw or b"{}")
        outcome = ", ".join(sorted(set(codes_of(doc)))) or "ok"
        if status >= 500 and outcome != "TIMEOUT":
            fail(f"(c) {n} aliases: HTTP {status}")
        lines.append(f"| {n} | {status} | {outcome} | {dt * 1e3:.0f} | {len(raw) / 1024:.0f} | "
                     f"{hwm:.1f} |")
    if not peak_ok:
        lines.append("")
        lines.append("(peak RSS is since the server started: /proc/PID/clear_refs was not writable)")
    return lines + [""]


# ------------------------------------------------------------------------------------------
# (d) a revoked key's socket

def case_d(url: str, admin: str, space: str, rounds: int) -> list[str]:
    closed_after, refused_after, codes = [], [], []
    for r in range(rounds):
        key, key_id = new_user_key(url, admin, f"revoked-{r}")
        ws = Ws(url)
        if ws.init(key)[0] != "ack":
            fail("(d) a fresh key was refused")
            continue
        # An open subscription, as a client that stays connected has (the user sees the space
        # through the organization's default access, or gets an error: either way the socket
        # stays open until the revocation).
        ws.send({"id": "sub", "type": "subscribe", "payload": {
            "query": "subscription($s: ID!) { memoryEvents(spaceId: $s) { kind } }",
            "variables": {"s": space}}})
        time.sleep(0.1)
        t0 = time.perf_counter()
        gql(url, admin, "mutation($id: ID!) { revokeApiKey(id: $id) }", {"id": key_id})
        code = None
        ws.sock.settimeout(30)
        try:
            while True:
                got = ws.recv()
                if got[0] == "close":
                    code = got[1]
                    break
        except (socket.timeout, EOFError, OSError):
            pass
        closed_after.append(time.perf_counter() - t0)
        codes.append(code)
        ws.sock.close()
        t1 = time.perf_counter()
        again = Ws(url).init(key)
        refused_after.append(time.perf_counter() - t1)
        if again[0] != "close" or again[1] != 4403:
            fail(f"(d) connection_init with a revoked key got {again}")
        if code != 4403:
            fail(f"(d) the revoked key's socket closed with {code}")
    return [
        "## (d) WebSocket after revokeApiKey",
        "",
        "| rounds | close codes | closed after (median / max ms) | new connection_init refused after (median / max ms) |",
        "|---:|---|---:|---:|",
        f"| {rounds} | {sorted(set(codes), key=str)} | {statistics.median(closed_after) * 1e3:.1f} / "
        f"{max(closed_after) * 1e3:.1f} | {statistics.median(refused_after) * 1e3:.1f} / "
        f"{max(refused_after) * 1e3:.1f} |",
        "",
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--bin", default="")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    size = dict(requests=500, memories=200, seconds=2.0, counts=[1, 10, 50, 200, 1000], rounds=3) \
        if a.smoke else \
        dict(requests=20_000, memories=5_000, seconds=15.0, counts=[1, 10, 50, 100, 200, 1000], rounds=20)
    rng = random.Random(17)

    log(f"seeding {size['memories']} memories")
    space = gql(a.url, a.key, "mutation { createSpace(input: {name: \"abuse\"}) { id } }")["createSpace"]["id"]
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 25))) for _ in range(size["memories"])]
    for b in range(0, len(texts), 1000):
        gql(a.url, a.key, "mutation($s: ID!, $i: [MemoryInput!]!) { createMemories(spaceId: $s, "
            "inputs: $i) { id } }", {"s": space, "i": [{"content": t} for t in texts[b:b + 1000]]},
            timeout=600)
    word = texts[0].split()[0]
    other, _ = new_user_key(a.url, a.key, "other-user")

    out = [f"# bench/abuse{' --smoke' if a.smoke else ''}", "",
           f"Server {a.bin or '(given)'}, SQLite; {size['memories']} memories in one space; "
           f"{time.strftime('%Y-%m-%d %H:%M')}.", ""]
    log("(a) unauthenticated requests")
    out += case_a(a.url, a.pid, size["requests"])
    log("(b) latency under a searching socket")
    out += case_b(a.url, a.key, other, word, size["seconds"])
    log("(c) aliased limit-100 searches")
    out += case_c(a.url, a.key, a.pid, word, size["counts"])
    log("(d) revoked key's socket")
    out += case_d(a.url, a.key, space, size["rounds"])
    rss, hwm = rss_mb(a.pid)
    out += [f"Server RSS at the end: {rss:.1f} MB (peak since the last reset {hwm:.1f} MB).", ""]
    if FAILURES:
        out += ["## Unexpected", ""] + [f"- {f}" for f in FAILURES] + [""]
    print("\n".join(out))
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
