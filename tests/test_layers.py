"""The architecture holds: every module imports on its own, and none imports from a layer
above its own (types → text, errors, config → ingest, encode, index → retrieve, generate,
model → rag → eval, server, cli). Imports inside functions count too."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import ragline

SRC = Path(ragline.__file__).parent

# lowest first; a module may import from its own layer and those below
LAYERS: list[set[str]] = [
    {"types"},
    {"text", "errors", "config", "registry", "qa", "devices"},
    {"ingest", "encode", "index"},
    {"retrieve", "generate", "model"},
    {"rag", "answer", "scale", "tm"},
    {"eval", "server", "cli", "testing"},
]


def layer_of(module: str) -> int:
    """The layer of 'ragline.x.y' (by x)."""
    part = module.split(".")[1]
    for i, names in enumerate(LAYERS):
        if part in names:
            return i
    raise AssertionError(f"{module} is in no layer; add '{part}' to LAYERS")


def modules() -> list[str]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        if len(parts) > 1 and parts[-1] != "__main__":
            out.append(".".join(parts))
    return out


def imports_of(module: str) -> set[str]:
    """The ragline modules `module` imports, anywhere in its file."""
    rel = Path(*module.split("."))
    path = SRC.parent / rel.with_suffix(".py")
    if not path.exists():
        path = SRC.parent / rel / "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n.startswith("ragline.")}
    return found


def test_every_module_is_in_a_layer_and_imports_none_above_it() -> None:
    upward = []
    for module in modules():
        mine = layer_of(module)
        for target in imports_of(module):
            if layer_of(target) > mine:
                upward.append(f"{module} (layer {mine}) imports {target} (layer {layer_of(target)})")
    assert not upward, "\n".join(upward)


def test_every_module_imports_on_its_own() -> None:
    # one interpreter; before each module, every ragline module already imported is dropped,
    # so each import starts from nothing of ragline's (an import cycle fails here)
    code = ("import importlib, sys\n"
            f"for name in {modules()!r}:\n"
            "    for loaded in [m for m in sys.modules if m == 'ragline' or m.startswith('ragline.')]:\n"
            "        del sys.modules[loaded]\n"
            "    importlib.import_module(name)\n"
            "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_no_module_is_longer_than_about_400_lines() -> None:
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text("utf-8").splitlines())) > 420}
    assert not long, long
