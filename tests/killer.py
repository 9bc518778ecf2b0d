"""Kill a ragline process with SIGKILL at a chosen point: the n-th call of a function.

A phase of a write is named by a function every write calls in that phase; the child process
wraps that function so that its n-th call kills the process (before the call runs), then runs
the command. Counting calls instead of waiting makes every kill land where it was aimed, and
a random n puts it anywhere within the phase.

    rc = run_killed("embed", 3, ["-q", "index", "docs/", "--index", "idx"])   # -9 if reached

Shared by tests/test_kill.py (a fast subset) and bench/break_it.py (the full table).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# phase → the function whose n-th call is the kill point ("module:Class.attr" or "module:attr")
INDEX_PHASES: dict[str, str] = {
    "read": "ragline.ingest.files:Reading.__iter__",      # every file, once
    "chunk": "ragline.ingest.pipeline:chunk_document",
    "embed": "ragline.encode.hashing:HashEncoder.encode_passages",
    "commit": "ragline.index.store:Store.add_document",           # inside the transaction
    "index-update": "ragline.index.folder:IndexFolder.apply",
    "bm25-segment": "ragline.index.sparse:Segment.from_tokens",
    "dense-save": "ragline.index.dense:FaissIndex.save",
    "sparse-save": "ragline.index.sparse:Segment.save",
    "manifest": "ragline.index.manifest:atomic_write_bytes",
    "fsync": "os:fsync",
    "rename": "os:replace",
}

_CHILD = """
import importlib, os, signal, sys
target, nth = sys.argv[1], int(sys.argv[2])
SIG = signal.Signals[os.environ.get("RAGLINE_TEST_SIGNAL", "SIGKILL")]
if SIG == signal.SIGINT:  # a shell starts background jobs with SIGINT ignored; a terminal does not
    signal.signal(signal.SIGINT, signal.default_int_handler)
module, _, attr = target.partition(":")
owner = importlib.import_module(module)
*path, name = attr.split(".")
for part in path:
    owner = getattr(owner, part)
orig = getattr(owner, name)
calls = 0
if nth == 0:  # count the calls instead, and report them at exit
    import atexit
    atexit.register(lambda: print(f"CALLS={calls}", file=sys.stderr))
def killer(*args, **kwargs):
    global calls
    calls += 1
    if calls == nth:
        os.kill(os.getpid(), SIG)
    return orig(*args, **kwargs)
if isinstance(owner, type) and isinstance(owner.__dict__.get(name), staticmethod):
    killer = staticmethod(killer)
setattr(owner, name, killer)
{run}
"""

_RUN_CLI = """
from ragline.cli import main
sys.exit(main(sys.argv[3:]))
"""


def child_script(run: str = _RUN_CLI) -> str:
    return textwrap.dedent(_CHILD).replace("{run}", textwrap.dedent(run))


def _command(target: str, nth: int, argv: list[str], run: str) -> tuple[list[str], dict[str, str]]:
    target = INDEX_PHASES.get(target, target)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests"),
                                                       os.environ.get("PYTHONPATH", "")])}
    return [sys.executable, "-c", child_script(run), target, str(nth), *argv], env


def run_killed(target: str, nth: int, argv: list[str], cwd: Path | None = None,
               run: str = _RUN_CLI, timeout: float = 300) -> int:
    """Run `ragline ARGV` (or the code `run`, which sees sys.argv[3:] as its arguments) in a
    child process killed at the nth call of `target` (a phase name or "module:attr").
    Returns the exit status: -SIGKILL when the kill point was reached."""
    proc = signal_at(target, nth, argv, signal.SIGKILL, cwd, run, timeout)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"the child failed (rc {proc.returncode}): {proc.stderr[-2000:]}")
    return proc.returncode


def signal_at(target: str, nth: int, argv: list[str], sig: signal.Signals,
              cwd: Path | None = None, run: str = _RUN_CLI,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`run_killed` with any signal (SIGINT: the user's Ctrl-C, at a known point)."""
    cmd, env = _command(target, nth, argv, run)
    env["RAGLINE_TEST_SIGNAL"] = sig.name
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def count_calls(target: str, argv: list[str], run: str = _RUN_CLI, timeout: float = 300) -> int:
    """How many times a run of `argv` calls `target` (so a kill can be aimed inside it)."""
    cmd, env = _command(target, 0, argv, run)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or "CALLS=" not in proc.stderr:
        raise RuntimeError(f"the child failed (rc {proc.returncode}): {proc.stderr[-2000:]}")
    return int(proc.stderr.rsplit("CALLS=", 1)[1].split()[0])


def spawn_killed(target: str, nth: int, argv: list[str], run: str) -> subprocess.Popen[bytes]:
    """`run_killed` without waiting: for a server the test talks to."""
    cmd, env = _command(target, nth, argv, run)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


# a server over the index in argv[0] on port argv[1], answering with a scripted generator
RUN_SERVER = """
import uvicorn
from ragline import RAG
from ragline.server import create_app
from conftest import ScriptedGenerator
rag = RAG.open(sys.argv[3], generator=ScriptedGenerator("Paris [1]"))
uvicorn.run(create_app(rag), host="127.0.0.1", port=int(sys.argv[4]), log_level="error")
"""

# training with a tiny generator over the index in argv[0], to step argv[1], a checkpoint a step
RUN_TRAINING = """
from ragline import RAG
from ragline.qa import QAExample
from ragline.model.train import TrainConfig, Trainer, run_training
from toymodels import hf_tiny_lm
qa = [QAExample(str(i), q, (a,), group=str(i)) for i, (q, a) in enumerate([
    ("What is the capital of France?", "Paris"), ("What is the capital of Germany?", "Berlin")])]
cfg = TrainConfig(k=2, steps=int(sys.argv[4]), save_every=1, held_out=0.0)
with RAG.open(sys.argv[3]) as rag:
    lm = hf_tiny_lm(["Paris is the capital of France.", "Berlin Germany Question: Answer:"])
    trainer = Trainer(rag.searcher, lm, None, cfg)
    trained = rag.index.manifest.trained
    if trained:
        trainer.load_optimizer(rag.index.path / trained.path)
    with rag.index.folder.write_lock():
        run_training(trainer, qa, progress=False)
"""


def leftovers(index: Path) -> list[str]:
    """Temporary files and folders of interrupted writes still in the index folder."""
    found = [p.name for p in index.iterdir()
             if p.name.startswith(".") and p.name.endswith((".tmp", ".old"))]
    model = index / "model"
    if model.is_dir():
        found += [f"model/{p.name}" for p in model.iterdir() if p.name.startswith(".")]
    return found
