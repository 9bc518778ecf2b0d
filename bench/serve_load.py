"""Load test of `ragline serve` on loopback: concurrent clients for a fixed time, first of
search (with uploads going on beside it), then of ask. Prints requests/s, p50/p95 latency,
errors, shed requests (503 + Retry-After), lost uploads, and the server's memory.

    python bench/serve_load.py                                  # bundled docs, a fresh index
    python bench/serve_load.py --index COPY-OF-AN-INDEX --clients 16 --seconds 30

The server is a real `ragline serve` process (its memory is measured from outside). Uploads
go into the index, so point --index at a copy. 503s are the server shedding load as designed:
they are counted apart from errors, and a client that gets one waits Retry-After and goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
SCIFACT = REPO.parent / "shared" / "data" / "scifact" / "queries.jsonl"
QUESTIONS = ["When was the Eiffel Tower completed?", "Who designed the Eiffel Tower?",
             "How does photosynthesis work?", "What is the largest planet?",
             "Where did coffee come from?", "今天看到的长城大部分是哪个朝代修建的？",
             "How deep is the ocean?", "Who invented the telephone?"]


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    shed: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    last_done: float = 0.0  # when the last request answered (uploads may go on after it)
    rss_peak: int = 0

    def row(self) -> list[str]:
        lat = sorted(self.latencies)
        p = (lambda q: f"{lat[min(len(lat) - 1, int(q * len(lat)))] * 1000:.0f}") if lat else (
            lambda q: "–")
        return [self.name, str(len(lat)), f"{len(lat) / self.seconds:.1f}", p(0.5), p(0.95),
                str(len(self.errors)), str(self.shed), f"{self.rss_peak / 2**20:.0f}"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def questions(n: int) -> list[str]:
    if SCIFACT.is_file():
        with SCIFACT.open() as f:
            return [json.loads(line)["text"] for line in f][:n]
    return QUESTIONS


class MemoryWatch:
    """Peak RSS of a process (and its children), sampled every 0.1 s."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        procs = [self.proc, *self.proc.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs if p.is_running())

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> MemoryWatch:
        self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stop.clear()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def client_loop(base: str, phase: Phase, deadline: float, request: str,
                      qs: list[str], rng: random.Random) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=300) as c:
        while time.monotonic() < deadline:
            q = rng.choice(qs)
            t0 = time.perf_counter()
            try:
                if request == "search":
                    r = await c.get("/v1/search", params={"q": q, "k": 10})
                else:
                    r = await c.post("/v1/ask", json={"question": q})
            except httpx.HTTPError as e:
                phase.errors.append(f"{type(e).__name__}: {e}")
                continue
            if r.status_code == 200:
                phase.latencies.append(time.perf_counter() - t0)
                phase.last_done = time.perf_counter()
            elif r.status_code == 503 and "retry-after" in r.headers:
                phase.shed += 1
                await asyncio.sleep(min(float(r.headers["retry-after"]),
                                        max(0.0, deadline - time.monotonic())))
            else:
                phase.errors.append(f"{r.status_code}: {r.text[:200]}")


async def uploader(base: str, n: int, spacing: float, sent: list[str],
                   errors: list[str]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=300) as c:
        for i in range(n):
            name = f"load-{i:03d}.txt"
            text = (f"Load test note {i}. The quartz lantern number {i} glows over harbour "
                    f"{i} every night.")
            r = await c.post("/v1/documents", files={"file": (name, text.encode())})
            if r.status_code == 201:
                sent.append(name)
            else:
                errors.append(f"upload {name}: {r.status_code} {r.text[:200]}")
            await asyncio.sleep(spacing)


async def run_phase(base: str, name: str, request: str, clients: int, seconds: float,
                    qs: list[str], watch: MemoryWatch, uploads: int = 0,
                    sent: list[str] | None = None) -> Phase:
    phase = Phase(name)
    rng = random.Random(0)
    deadline = time.monotonic() + seconds
    t0 = time.perf_counter()
    with watch:
        tasks = [client_loop(base, phase, deadline, request, qs, random.Random(rng.random()))
                 for _ in range(clients)]
        if uploads and sent is not None:
            tasks.append(uploader(base, uploads, seconds / (uploads + 1), sent, phase.errors))
        await asyncio.gather(*tasks)
    phase.seconds = max(phase.last_done, t0 + 1e-9) - t0  # in-flight ones end past the deadline
    phase.rss_peak = watch.peak
    return phase


def table(rows: list[list[str]]) -> None:
    head = ["phase", "ok", "req/s", "p50 ms", "p95 ms", "errors", "503 shed", "peak RSS MB"]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, ["-" * w for w in widths], *rows]:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--index", type=Path, help="an index to serve (uploads are added to it)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--uploads", type=int, default=20, help="files uploaded during search")
    ap.add_argument("--skip-ask", action="store_true")
    ap.add_argument("--queue-size", type=int, default=32, help="the server's generation queue")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ragline-load-"))
    index = args.index
    if index is None:
        index = work / "idx"
        subprocess.run([sys.executable, "-m", "ragline.cli", "-q", "index",
                        str(REPO / "examples" / "docs"), "--index", str(index)], check=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RAGLINE_API_KEY": ""}
    server = subprocess.Popen([sys.executable, "-m", "ragline.cli", "serve", str(index),
                               "--port", str(port), "--queue-size", str(args.queue_size)],
                              env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.3)
        qs = questions(300)
        httpx.get(base + "/v1/search", params={"q": qs[0]}, timeout=60)  # warm the encoder
        watch = MemoryWatch(server.pid)
        rest = watch.rss()
        docs_before = httpx.get(base + "/health").json()["index"]["documents"]
        print(f"server pid {server.pid}, {docs_before} documents, RSS at rest "
              f"{rest / 2**20:.0f} MB; {args.clients} clients × {args.seconds:g} s per phase")

        sent: list[str] = []
        # one client first: the latency of a lone request, to compare the loaded ones with
        phases = [asyncio.run(run_phase(base, "search, 1 client", "search", 1,
                                        min(10.0, args.seconds), qs, watch)),
                  asyncio.run(run_phase(base, f"search, {args.clients} clients"
                                        + (" + uploads" if args.uploads else ""),
                                        "search", args.clients, args.seconds, qs, watch,
                                        args.uploads, sent))]
        listed = {d["name"] for d in httpx.get(base + "/v1/documents", timeout=60).json()[
            "documents"]}
        lost = [n for n in sent if n not in listed]
        unfound = []
        for name in sent:
            i = int(name[5:8])
            hits = httpx.get(base + "/v1/search", params={
                "q": f"quartz lantern number {i} harbour {i}", "k": 1, "mode": "bm25"},
                timeout=60).json()["passages"]
            if not hits or hits[0]["name"] != name:
                unfound.append(name)
        if not args.skip_ask:
            phases.append(asyncio.run(run_phase(base, f"ask, {args.clients} clients", "ask",
                                                args.clients, args.seconds, QUESTIONS, watch)))
        rest_after = watch.rss()
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)

    print()
    table([p.row() for p in phases])
    print(f"\nuploads: {len(sent)} of {args.uploads} accepted, {len(lost)} lost, "
          f"{len(unfound)} not found by search")
    print(f"RSS: {rest / 2**20:.0f} MB at rest, {rest_after / 2**20:.0f} MB after the load")
    for p in phases:
        for e in p.errors[:5]:
            print(f"  {p.name} error: {e}")
    return 1 if lost or unfound or any(p.errors for p in phases) else 0


if __name__ == "__main__":
    sys.exit(main())
