"""Write the documentation's reference pages from the code, so that they cannot drift from it:

    .venv/bin/python scripts/docs_reference.py           # rewrite docs/reference/*.md
    .venv/bin/python scripts/docs_reference.py --check   # exit 1 if a page is out of date

- cli.md: `ragline --help` and every command's `--help`;
- config.md: every key of ragline.toml, its default and the comment above it in ragline.config;
- http.md: every route of `ragline serve`, from its OpenAPI schema;
- formats.md: the file types, from ragline.ingest.loaders.FORMATS.

tests/test_docs.py runs the check, so a change to an option, a setting, a route or a loader
that leaves its page behind fails the tests.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "reference"
MADE = "<!-- made by scripts/docs_reference.py from the code: edit the code, then run it -->\n\n"


def cli_page() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal's width: fix it
    from ragline.cli import build_parser

    parts = [f"# Command line\n\n{MADE}Every command's `--help`, as `ragline` prints it.\n"]

    def walk(parser: argparse.ArgumentParser, name: str, level: int) -> None:
        parts.append(f"{'#' * level} `{name}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(sub, f"{name} {sub_name}", min(level + 1, 4))

    walk(build_parser(), "ragline", 2)
    return "\n".join(parts)


def _comments(cls: type) -> dict[str, str]:
    """A dataclass field's comment: the comment lines right above it and the one after it."""
    source = Path(sys.modules[cls.__module__].__file__ or "").read_text().splitlines()
    tree = ast.parse("\n".join(source))
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    out: dict[str, str] = {}
    for stmt in node.body:
        if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name):
            continue
        above = []
        i = stmt.lineno - 2
        while i >= 0 and source[i].strip().startswith("#"):
            above.insert(0, source[i].strip().lstrip("#").strip())
            i -= 1
        line = source[stmt.end_lineno - 1 if stmt.end_lineno else stmt.lineno - 1]
        after = line.split("#", 1)[1].strip() if "#" in line else ""
        out[stmt.target.id] = " ".join(p for p in (*above, after) if p)
    return out


def _toml(value: Any) -> str:
    """A default as it is written in ragline.toml."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def config_page() -> str:
    from ragline.config import Config

    parts = [f"# Configuration\n\n{MADE}One TOML file feeds the command line, the library and the "
             "server: `--config FILE`, or `./ragline.toml` when it exists. An unknown key or a "
             "bad value is an error that names it. A guided example is in "
             "[Settings](../guides/settings.md).\n"]
    for section in dataclasses.fields(Config):
        cls: Any = section.default_factory  # type: ignore[misc]
        comments = _comments(cls)
        parts.append(f"## `[{section.name}]`\n\n| key | default | what it is |\n|---|---|---|")
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            shown = "unset" if default is None else f"`{_toml(default)}`".replace("|", "\\|")
            text = comments.get(f.name, "").replace("|", "\\|")
            parts.append(f"| `{f.name}` | {shown} | {text} |")
        parts.append("")
    return "\n".join(parts)


def http_page() -> str:
    from ragline import RAG
    from ragline.server import create_app

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "a.txt").write_text("A passage.\n")
        rag = RAG.build(Path(tmp) / "idx", paths=[Path(tmp) / "a.txt"], encoder="hash:64")
        try:
            schema = create_app(rag).openapi()
        finally:
            rag.close()
    parts = [f"# HTTP API\n\n{MADE}The routes of `ragline serve`, from its OpenAPI schema "
             "(also served at `/openapi.json`, with a browsable form at `/docs`). Every route "
             "but the page takes `Authorization: Bearer KEY` when the server has keys, and "
             "`?collection=NAME` when it serves several indexes; errors are JSON "
             "`{\"error\": {\"message\", \"type\"}}` with a 4xx status.\n",
             "| method | path | what it does |\n|---|---|---|"]
    for path, ops in sorted(schema["paths"].items()):
        for method, op in ops.items():
            doc = (op.get("description") or op.get("summary") or "").strip().split("\n\n")[0]
            doc = " ".join(doc.split()).replace("|", "\\|")
            parts.append(f"| {method.upper()} | `{path}` | {doc} |")
    parts.append("\n## Request bodies\n")
    for name, body in sorted(schema.get("components", {}).get("schemas", {}).items()):
        if name.startswith(("HTTPValidationError", "ValidationError")):
            continue
        props = body.get("properties", {})
        if not props:
            continue
        required = set(body.get("required", []))
        parts.append(f"### `{name}`\n\n| field | type | default |\n|---|---|---|")
        for field, spec in props.items():
            kind = spec.get("type") or " or ".join(
                str(s.get("type", s.get("$ref", "").rsplit("/", 1)[-1]))
                for s in spec.get("anyOf", [])) or spec.get("$ref", "").rsplit("/", 1)[-1]
            default = "required" if field in required else f"`{spec.get('default')!r}`"
            parts.append(f"| `{field}` | {kind} | {default} |")
        parts.append("")
    return "\n".join(parts)


def formats_page() -> str:
    from ragline.ingest.loaders import FORMATS

    rows = [f"| {f.name} | {' '.join(f'`{s}`' for s in f.suffixes)} | {f.library} | "
            f"{f'`ragline[{f.extra}]`' if f.extra else 'always'} |" for f in FORMATS]
    return (f"# File types\n\n{MADE}Every type ragline reads, one entry of "
            "`ragline.ingest.loaders.FORMATS` each; what the guide says about them is in "
            "[Indexing](../guides/indexing.md#file-types).\n\n"
            "| type | suffixes | read with | extra |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")


PAGES = {"cli.md": cli_page, "config.md": config_page, "http.md": http_page,
         "formats.md": formats_page}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--check", action="store_true", help="report stale pages, write nothing")
    args = ap.parse_args()
    stale = []
    for name, make in PAGES.items():
        text = make()
        path = OUT / name
        if path.is_file() and path.read_text() == text:
            continue
        stale.append(name)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run: python scripts/docs_reference.py",
              file=sys.stderr)
        return 1
    print(f"{'checked' if args.check else 'wrote'} {len(PAGES)} pages"
          + (f" ({', '.join(stale)} {'stale' if args.check else 'changed'})" if stale else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
