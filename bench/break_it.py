"""Try to break ragline as a hostile user would, and print what happened.

    .venv/bin/python bench/break_it.py                  # all three parts (about 15 min on 2 cores)
    .venv/bin/python bench/break_it.py --only kills --kills-per-phase 5

1. CLI: every bad input of tests/mutants.py (mutated files of each type, odd names and kinds,
   damaged index parts, bad queries) through a real `ragline` process each. Counted: runs,
   tracebacks, exit statuses outside the documented set, runs whose error is not one line, and
   indexed passages lost.
2. HTTP: a real server (uvicorn on loopback) gets malformed requests and mutated uploads.
   Counted: requests, 500s, files left in uploads/ without a document, passages lost.
3. Kills: SIGKILL of `ragline index` at random calls of each phase of a write, of `serve` in
   the middle of an upload, of `train` in the middle of a checkpoint. After each: does the index
   open, is anything committed lost, is any file half in, does a temporary file survive the next
   open, and does running the command again finish with exactly one copy of everything.

4. Round two (`--only memory`): translation memories (crafted MO tables, files that name
   other files, malformed PO lines, entities hidden past 64 KB or in UTF-16, language codes
   that are paths, headerless tables), `translate` and `write` arguments, damaged sharded
   indexes, and hostile bodies to /v1/translate and /v1/write. Counted: runs, tracebacks,
   errors not one line, HTTP 5xx or non-JSON answers, and pairs or documents lost.

The hash encoder and a scripted generator keep it about the index, not the models.
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import table  # noqa: E402

THREE = {"france.txt": "Paris is the capital of France. The Eiffel Tower stands in Paris.",
         "germany.txt": "Berlin is the capital of Germany. The Brandenburg Gate stands in Berlin.",
         "china.txt": "北京是中国的首都。故宫位于北京市中心。"}
CHECKS = {"capital of France Paris": "france.txt", "Brandenburg Gate Berlin": "germany.txt",
          "故宫 北京": "china.txt"}


def make_index(root: Path, name: str = "idx") -> Path:
    from ragline import RAG

    docs = root / f"{name}-docs"
    docs.mkdir()
    for n, t in THREE.items():
        (docs / n).write_text(t)
    RAG.build(root / name, paths=[docs], encoder="hash").close()
    return root / name


def lost(index: Path) -> int:
    """How many of the three original documents the index no longer finds (3 if it won't open)."""
    from ragline import RAG
    from ragline.errors import RaglineError

    try:
        with RAG.open(index) as rag:
            return sum(not rag.search(q, k=1, mode="bm25")[0].passage.source.endswith(n)
                       for q, n in CHECKS.items())
    except RaglineError:
        return 3


# ---------------------------------------------------------------- 1. CLI


def ragline(*argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "ragline.cli", "-q", *argv],
                          capture_output=True, timeout=300)


def run_problems(proc: subprocess.CompletedProcess[bytes]) -> list[str]:
    """What is wrong with how a `ragline` run ended: a traceback, an exit status outside
    0/1/2, an error that is not one `error:` line."""
    err = proc.stderr.decode("utf-8", "replace")
    problems = []
    if "Traceback" in err or "unexpected" in err:
        problems.append("traceback")
    if proc.returncode not in (0, 1, 2):
        problems.append(f"exit {proc.returncode}")
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    if proc.returncode and len(errors) != 1:
        problems.append("error not one line")
    return problems


def cli_part(root: Path, per_kind: int) -> None:
    from mutants import INDEX_DAMAGE, file_mutants, odd_paths

    stats: Counter[str] = Counter()
    bad_runs: list[str] = []

    def judge(what: str, proc: subprocess.CompletedProcess[bytes], index: Path,
              may_lose: bool = False) -> None:
        stats["runs"] += 1
        problems = run_problems(proc)
        if not may_lose and lost(index):
            problems.append("lost passages")
        for p in problems:
            stats[p] += 1
        if problems:
            bad_runs.append(f"{what}: {', '.join(problems)}: "
                            f"{proc.stderr.decode('utf-8', 'replace').strip()[-300:]}")
        stats[f"exit {proc.returncode}"] += 1

    index = make_index(root, "cli")
    files = root / "mutants"
    files.mkdir()
    mutants = file_mutants(seed=7, per_kind=per_kind)
    t0 = time.perf_counter()
    for m in mutants:
        judge(m.how, ragline("index", str(m.write(files)), "--index", str(index)), index)
    odd = root / "odd"
    odd.mkdir()
    for what, path in odd_paths(odd).items():
        judge(what, ragline("index", str(path), "--index", str(index)), index)
        judge(f"rm {what}", ragline("rm", str(index), str(path)), index)
    judge("odd folder", ragline("index", str(odd), "--index", str(index)), index)
    for q in ("caf\udcff river", "x" * 5000, "   ", "\x01", "🦜" * 100, "a\u202eb", "%s%n{}"):
        judge(f"search {q[:10]!r}", ragline("search", str(index), q), index)
        judge(f"ask {q[:10]!r}", ragline("ask", str(index), q, "--llm", "/nonexistent.gguf"),
              index)
    for argv in (["search", str(index), "q", "-k", "1000000000"], ["search", str(index), "q", "-k",
                 "x"], ["search", str(index), "q", "--mode", "nope"], ["rm", str(index), "nothing"],
                 ["reindex", str(index), "--nprobe", "0"], ["info", str(root / "nowhere")],
                 ["index", str(root / "nowhere"), "--index", str(index)],
                 ["eval", "retrieval", str(index), "--queries", str(root / "q.jsonl")]):
        judge(" ".join(argv[:1] + argv[2:]), ragline(*argv), index)
    for damage in INDEX_DAMAGE:
        idx = root / f"dmg-{stats['runs']}"
        shutil.copytree(index, idx)
        damage.apply(idx)
        new = root / "new.txt"
        new.write_text("Madrid is the capital of Spain.")
        for argv in (["search", str(idx), "Paris"], ["info", str(idx)],
                     ["index", str(new), "--index", str(idx)]):
            judge(f"{damage.name}: {argv[0]}", ragline(*argv), idx, may_lose=not damage.repairable)
        if damage.repairable and lost(idx):
            stats["lost passages"] += 1
            bad_runs.append(f"{damage.name}: not repaired")
    seconds = time.perf_counter() - t0
    table(f"CLI: bad inputs, one `ragline` process each ({seconds:.0f} s)", ["", "count"],
          [[k, v] for k, v in sorted(stats.items())]
          + [[k, stats[k]] for k in ("traceback", "error not one line", "lost passages")
             if k not in stats])
    for line in bad_runs[:20]:
        print("  -", line)


# ---------------------------------------------------------------- 2. HTTP


def http_part(root: Path, per_kind: int) -> None:
    import json

    import httpx

    from ragline import RAG
    from ragline.server import create_app

    from conftest import ScriptedGenerator
    from mutants import file_mutants
    from serving import live_server
    from test_server_abuse import BAD_REQUESTS

    index = make_index(root, "http")
    statuses: Counter[int] = Counter()
    fives: list[str] = []
    rag = RAG.open(index, generator=ScriptedGenerator("Paris is the capital [1]."))
    with live_server(create_app(rag)) as url, httpx.Client(base_url=url, timeout=120) as c:
        def send(what: str, method: str, path: str, **kw: object) -> None:
            if "json" in kw:
                kw = {"content": json.dumps(kw["json"]).encode(),
                      "headers": {"content-type": "application/json"}}
            try:
                r = c.request(method, path, **kw)  # type: ignore[arg-type]
            except httpx.LocalProtocolError:  # too malformed for httpx itself to send
                return
            statuses[r.status_code] += 1
            if r.status_code >= 500:
                fives.append(f"{what}: {r.status_code} {r.text[:200]}")

        for method, path, kw in BAD_REQUESTS:
            send(f"{method} {path}", method, path, **kw)
        for m in file_mutants(seed=11, per_kind=per_kind):
            send(f"upload {m.how}", "POST", "/v1/documents", files={"file": (m.name, m.data)})
        rng = random.Random(3)
        for i in range(40):  # random junk in every field of ask
            body = {"question": "".join(chr(rng.randrange(1, 0x10FFFF)) for _ in range(rng.randrange(0, 50))),
                    "k": rng.choice([None, -5, 0, 3, 10**6, "x", 2.5]),
                    "mode": rng.choice([None, "dense", "bm25", "hybrid", "weighted", "x"]),
                    "model": rng.choice([None, "concat", "rag-x", 5])}
            send(f"ask junk {i}", "POST", "/v1/ask", json=body)
        uploads = index / "uploads"
        known = {d["source"] for d in c.get("/v1/documents").json()["documents"]}
        orphans = [f for f in uploads.iterdir() if f"uploads/{f.name}" not in known]
    rag.close()
    total = sum(statuses.values())
    table(f"HTTP: {total} hostile requests to a live server",
          ["status", "count"], [[s, n] for s, n in sorted(statuses.items())]
          + [["5xx", sum(n for s, n in statuses.items() if s >= 500)],
             ["files in uploads/ without a document", len(orphans)],
             ["original documents lost", lost(index)]])
    for line in fives[:20]:
        print("  -", line)


# ---------------------------------------------------------------- 4. round two


def memory_part(root: Path, per_kind: int) -> None:
    """Issue 26's surfaces: translation memories, `translate`, `write`, sharded indexes and
    the HTTP routes that came with them. Every CLI run in its own process; a memory and a
    sharded index that must keep what they hold whatever is thrown at them."""
    import json

    import httpx

    from ragline import RAG
    from ragline.server import create_app
    from ragline.tm import TranslationMemory

    from conftest import ScriptedGenerator
    from mutants import good_memory_files, memory_mutants
    from serving import live_server

    stats: Counter[str] = Counter()
    bad: list[str] = []
    good = root / "tm-good"
    good.mkdir()
    for name, data in good_memory_files().items():
        (good / name).write_bytes(data)
    tm = root / "tm"
    ragline("tm", "import", str(tm), str(good), "--encoder", "hash")
    with TranslationMemory.open(tm) as m:
        pairs = m.index.counts()["documents"]
    index = make_index(root, "r2")
    sharded = root / "s4"
    ragline("index", str(root / "r2-docs"), "--index", str(sharded), "--shards", "4",
            "--encoder", "hash")

    def still_there() -> bool:
        try:
            with TranslationMemory.open(tm) as m:
                ok = m.index.counts()["documents"] >= pairs
            with RAG.open(sharded) as rag:
                return ok and rag.index.counts()["documents"] == 3
        except Exception:  # noqa: BLE001 - anything here is a loss
            return False

    def judge(what: str, proc: subprocess.CompletedProcess[bytes]) -> None:
        stats["CLI runs"] += 1
        problems = run_problems(proc)
        for p in problems:
            stats[p] += 1
        if problems:
            bad.append(f"{what}: {', '.join(problems)}: "
                       f"{proc.stderr.decode('utf-8', 'replace').strip()[-300:]}")

    t0 = time.perf_counter()
    files = root / "tm-bad"
    files.mkdir()
    for m in memory_mutants(seed=13, per_kind=per_kind):
        judge(f"tm import {m.how}", ragline("tm", "import", str(tm), str(m.write(files))))
    for flag in ("", " ", "../x", "x" * 50_000, "en\n", "zh_CN_", "12", "-"):
        judge(f"--from {flag[:8]!r}", ragline("tm", "import", str(root / "new-tm"),
                                               str(good / "good.tsv"), f"--from={flag}",
                                               "--to", "de", "--encoder", "hash"))
    for argv in (["tm", "import", str(root / "new2"), str(root / "missing.tmx"), "--from", "en",
                  "--to", "de"], ["translate", str(tm)], ["translate", str(tm), "x", "--file",
                  str(good / "good.tsv")], ["translate", str(tm), "word " * 20_000, "-k", "0"],
                 ["translate", str(tm), "Save", "-k", "-1"], ["translate", str(tm), "Save",
                  "--to", "../x"], ["translate", str(index), "Save"],
                 ["translate", str(root / "nowhere"), "Save"],
                 ["write", str(index), "t " * 1500, "--task", "question", "--answer", "a " * 1500],
                 ["write", str(index), "x", "--task", "nope"]):
        judge(" ".join(argv[:1]) + f" {len(argv)} args", ragline(*argv))
    for damage in ("trim", "reverse", "duplicate", "drop manifest", "copy over 8", "copy over 2"):
        d = root / f"sd-{damage.replace(' ', '-')}"
        shutil.copytree(sharded, d)
        m = json.loads((d / "manifest.json").read_text())
        shards = None
        if damage == "trim":
            m["shards"] = m["shards"][:3]
        elif damage == "reverse":
            m["shards"] = m["shards"][::-1]
        elif damage == "duplicate":
            m["shards"][1] = m["shards"][0]
        else:
            shards = "8" if damage.endswith("8") else ("2" if damage.endswith("2") else None)
        if damage in ("trim", "reverse", "duplicate"):
            (d / "manifest.json").write_text(json.dumps(m))
        else:
            (d / "manifest.json").unlink()
        for argv in (["search", str(d), "Paris"], ["info", str(d)], ["rm", str(d), "x"],
                     ["index", str(root / "r2-docs"), "--index", str(d), "--encoder", "hash",
                      *(["--shards", shards] if shards else [])]):
            judge(f"{damage}: {argv[0]}", ragline(*argv))
    cli_s = time.perf_counter() - t0

    statuses: Counter[int] = Counter()
    fives: list[str] = []
    rng = random.Random(5)
    rag = RAG.open(index, generator=ScriptedGenerator("Paris is the capital [1]."))
    memory = TranslationMemory.open(tm)
    with live_server(create_app(rag, memory=memory)) as url, \
            httpx.Client(base_url=url, timeout=120) as c:
        def send(what: str, path: str, body: object = None, raw: bytes | None = None) -> None:
            content = raw if raw is not None else json.dumps(body).encode()
            r = c.post(path, content=content, headers={"content-type": "application/json"})
            statuses[r.status_code] += 1
            if r.status_code >= 500 or not r.headers.get("content-type", "").startswith(
                    "application/json"):
                fives.append(f"{what}: {r.status_code} {r.text[:200]}")

        junk = [True, "3", 2.0, None, -1, 99, 10**30, [], {}, "x"]
        for k in junk:
            send(f"translate k={k!r}", "/v1/translate", {"text": "Save", "k": k})
            send(f"write k={k!r}", "/v1/write", {"instruction": "Paris", "k": k})
            send(f"write max_tokens={k!r}", "/v1/write", {"instruction": "Paris",
                                                            "max_tokens": k})
        for text in ("", " ", "word " * 20_000, "中" * 3990, ["Save"] * 101, [], [1, 2],
                     [["nested"]], {"a": 1}, None, "caf\udcff", "\x00"):
            send(f"translate text {str(text)[:10]!r}", "/v1/translate", {"text": text, "k": 0})
            send(f"translate text {str(text)[:10]!r} k3", "/v1/translate", {"text": text})
        for to in ("../x", "", "x" * 100_000, "zh", 5):
            send(f"translate to {str(to)[:8]!r}", "/v1/translate", {"text": "Save", "to": to})
        for task in ("question", "text", "nope", 3):
            send(f"write task {task!r}", "/v1/write", {"instruction": "t " * 1500, "task": task,
                                                        "answer": "a " * 1500})
        for size in (9 << 20, 34 << 20):
            send(f"body {size >> 20} MB", "/v1/translate",
                 raw=b'{"text": "' + b"a" * size + b'"}')
        for i in range(40):
            body = {"text": "".join(chr(rng.randrange(1, 0x10FFFF)) for _ in range(
                rng.randrange(0, 40))), "k": rng.choice(junk), "to": rng.choice(
                [None, "de", "zh", "", "../x"])}
            send(f"translate junk {i}", "/v1/translate", body)
        send("not json", "/v1/translate", raw=b"{not json")
        send("truncated json", "/v1/translate", raw=b'{"text": "Sa')
    memory.close()
    rag.close()
    table(f"Round two: {stats['CLI runs']} CLI runs ({cli_s:.0f} s), "
          f"{sum(statuses.values())} HTTP requests",
          ["", "count"], [[k, v] for k, v in sorted(stats.items())]
          + [[k, 0] for k in ("traceback", "error not one line") if k not in stats]
          + [[f"HTTP {s}", n] for s, n in sorted(statuses.items())]
          + [["HTTP 5xx or not JSON", len(fives)], ["data lost", 0 if still_there() else 1]])
    for line in (bad + fives)[:20]:
        print("  -", line)


# ---------------------------------------------------------------- 3. kills


def kill_part(root: Path, per_phase: int, seed: int) -> None:
    from ragline import RAG

    from killer import (
        INDEX_PHASES,
        RUN_SERVER,
        RUN_TRAINING,
        count_calls,
        leftovers,
        run_killed,
        spawn_killed,
    )
    from serving import free_port

    rng = random.Random(seed)
    base = make_index(root, "kill")
    new = root / "kill-new"
    new.mkdir()
    for i in range(8):
        (new / f"n{i}.txt").write_text(f"Harbour {i} shelters {i * 3} fishing boats. " * (6 + i))
    (new / "rows.jsonl").write_text("".join(
        f'{{"id": "row/{i}", "text": "Row {i} tells of lighthouse {i}."}}\n' for i in range(6)))
    cfg = root / "kill.toml"
    cfg.write_text("[index]\nbatch_passages = 2\n")

    def per_source(rag: RAG) -> Counter[str]:
        out: Counter[str] = Counter()
        for d in rag.documents():
            out[Path(d.source).name] += d.passages
        return out

    ref = root / "kill-ref"
    shutil.copytree(base, ref)
    with RAG.open(ref) as rag:  # what indexing the new files gives when nothing is killed
        rag.add([new])
        want = per_source(rag)

    rows = []

    def judge(idx: Path, finish: bool = True) -> dict[str, int]:
        r = {"opened": 0, "lost": 0, "half": 0, "leftovers": 0, "duplicates": 0, "finished": 0}
        try:
            with RAG.open(idx) as rag:
                r["opened"] = 1
                have = per_source(rag)
                r["lost"] = sum(have.get(n, 0) != want[n] for n in THREE)
                r["half"] = sum(n != want[name] for name, n in have.items())
            r["leftovers"] = len(leftovers(idx))
            if finish:
                with RAG.open(idx) as rag:
                    rag.add([new])
                    have = per_source(rag)
                    r["duplicates"] = sum(n > want[name] for name, n in have.items())
                    r["finished"] = int(have == want)
        except Exception as e:  # noqa: BLE001 - counted, not raised: this is the measurement
            print(f"  - {idx.name}: {type(e).__name__}: {e}")
        return r

    t0 = time.perf_counter()
    for phase in INDEX_PHASES:
        idx = root / f"k-{phase}"
        argv = ["-q", "--config", str(cfg), "index", str(new), "--index", str(idx)]
        shutil.copytree(base, idx)
        calls = count_calls(phase, argv)
        shutil.rmtree(idx)
        total: Counter[str] = Counter()
        kills = 0
        for _ in range(per_phase):
            shutil.copytree(base, idx)
            if run_killed(phase, rng.randint(1, calls), argv) == -signal.SIGKILL:
                kills += 1
                total.update(judge(idx))
            shutil.rmtree(idx)
        rows.append([f"index: {phase} ({calls} calls)", kills, total["opened"], total["lost"],
                     total["half"], total["duplicates"], total["leftovers"], total["finished"]])

    total = Counter()
    kills = 0
    for i in range(2):
        idx = root / f"k-serve-{i}"
        shutil.copytree(base, idx)
        port = free_port()
        proc = spawn_killed("commit", 1, [str(idx), str(port)], RUN_SERVER)
        import httpx

        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        try:
            httpx.post(f"http://127.0.0.1:{port}/v1/documents", timeout=30,
                       files={"file": ("spain.txt", f"Madrid is in Spain {i}.".encode())})
        except httpx.TransportError:
            pass
        kills += proc.wait(timeout=30) == -signal.SIGKILL
        total.update(judge(idx, finish=False))
        total["leftovers"] += sum(1 for _ in (idx / "uploads").iterdir())
    rows.append(["serve: mid-upload", kills, total["opened"], total["lost"], total["half"], 0,
                 total["leftovers"], "-"])

    total = Counter()
    kills = 0
    for target in ("ragline.model.train:_save_optimizer",
                   "ragline.index.folder:IndexFolder.save_manifest"):
        idx = root / f"k-train-{target.rsplit('.', 1)[-1]}"
        shutil.copytree(base, idx)
        kills += run_killed(target, 2, [str(idx), "3"], run=RUN_TRAINING) == -signal.SIGKILL
        total.update(judge(idx, finish=False))
        ok = run_killed(target, 10**6, [str(idx), "3"], run=RUN_TRAINING) == 0
        with RAG.open(idx) as rag:
            total["finished"] += ok and rag.index.manifest.trained.step == 3
    rows.append(["train: mid-checkpoint", kills, total["opened"], total["lost"], total["half"], 0,
                 total["leftovers"], total["finished"]])
    table(f"SIGKILL anywhere ({time.perf_counter() - t0:.0f} s)",
          ["where", "kills", "opened", "lost", "file half in", "duplicates after re-run",
           "temp files after open", "re-run finished"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=("cli", "http", "kills", "memory"))
    ap.add_argument("--per-kind", type=int, default=15, help="random mutants per file type")
    ap.add_argument("--kills-per-phase", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the parsers' notices about broken files
    with tempfile.TemporaryDirectory(prefix="ragline-break-") as tmp:
        root = Path(tmp)
        if args.only in (None, "cli"):
            cli_part(root, args.per_kind)
        if args.only in (None, "http"):
            http_part(root, args.per_kind)
        if args.only in (None, "kills"):
            kill_part(root, args.kills_per_phase, args.seed)
        if args.only in (None, "memory"):
            memory_part(root, max(1, args.per_kind // 2))


if __name__ == "__main__":
    main()
