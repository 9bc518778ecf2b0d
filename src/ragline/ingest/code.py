"""Source code and notebooks. Code is cut along its definitions (functions, classes,
methods: tree-sitter's grammars, the `code` extra) rather than every 100 words: each passage
is titled by its symbol and placed by its lines. A notebook is its markdown and code cells
(outputs left out), each placed at "cell N".

    [doc] = load_code(Blob("tool.py", data=b"def main():\\n    return 1\\n"))
    doc.meta["sections"]   # [[0, 26, "tool.py · main", ""]]: passages say "lines 1–2"
"""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Any

from ragline.errors import UnreadableFileError
from ragline.ingest.blob import Blob, decode_text, require_text
from ragline.text import count_words
from ragline.types import Document

log = logging.getLogger(__name__)

# suffix → (grammar package, its language function)
GRAMMARS: dict[str, tuple[str, str]] = {
    ".py": ("tree_sitter_python", "language"), ".pyi": ("tree_sitter_python", "language"),
    ".js": ("tree_sitter_javascript", "language"), ".mjs": ("tree_sitter_javascript", "language"),
    ".cjs": ("tree_sitter_javascript", "language"), ".jsx": ("tree_sitter_javascript", "language"),
    ".ts": ("tree_sitter_typescript", "language_typescript"),
    ".tsx": ("tree_sitter_typescript", "language_tsx"),
    ".go": ("tree_sitter_go", "language"), ".rs": ("tree_sitter_rust", "language"),
    ".java": ("tree_sitter_java", "language"),
    ".c": ("tree_sitter_c", "language"), ".h": ("tree_sitter_c", "language"),
    ".cpp": ("tree_sitter_cpp", "language"), ".cc": ("tree_sitter_cpp", "language"),
    ".cxx": ("tree_sitter_cpp", "language"), ".hpp": ("tree_sitter_cpp", "language"),
    ".hh": ("tree_sitter_cpp", "language"),
    ".rb": ("tree_sitter_ruby", "language"), ".php": ("tree_sitter_php", "language_php"),
    ".sh": ("tree_sitter_bash", "language"), ".bash": ("tree_sitter_bash", "language"),
}
# read as code without a grammar: placed by lines, cut like text
OTHER_CODE = (".sql", ".kt", ".kts", ".swift", ".scala", ".cs", ".lua", ".r", ".pl", ".zsh",
              ".ps1", ".css", ".scss", ".vue", ".dart", ".m", ".jl", ".hs", ".ex", ".exs")

# node types that define something: a section of their own
_DEFINES = ("function", "class", "method", "struct", "impl", "trait", "interface", "enum",
            "module", "namespace", "type_declaration", "decorated_definition", "union",
            "template_declaration", "type_alias", "singleton")
_NAMES = ("identifier", "type_identifier", "field_identifier", "property_identifier",
          "constant", "name", "word")
# a definition larger than this many words is cut into its members (a class into methods)
SPLIT_WORDS = 200

_PARSERS: dict[str, Any] = {}


def _parser(suffix: str) -> Any | None:
    """tree-sitter's parser for a suffix, or None without the `code` extra."""
    if suffix not in _PARSERS:
        package, function = GRAMMARS[suffix]
        try:
            import tree_sitter

            grammar = importlib.import_module(package)
            _PARSERS[suffix] = tree_sitter.Parser(
                tree_sitter.Language(getattr(grammar, function)()))
        except (ImportError, AttributeError, ValueError):
            log.info("%s: no tree-sitter grammar (pip install 'ragline[code]'): code is "
                     "cut like text", suffix)
            _PARSERS[suffix] = None
    return _PARSERS[suffix]


def load_code(blob: Blob) -> list[Document]:
    text = require_text(decode_text(blob.read(), blob.name), blob.name, "file is empty")
    filename = Path(blob.name).name
    meta: dict[str, Any] = {"lines": True, "code": True}
    parser = _parser(blob.suffix) if blob.suffix in GRAMMARS else None
    if parser is not None:
        tree = parser.parse(text.encode("utf-8"))
        starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
        sections: list[list[Any]] = []
        for node, symbol in _definitions(tree.root_node, text, starts):
            a = starts[node[0]]
            b = starts[node[1] + 1] - 1 if node[1] + 1 < len(starts) else len(text)
            sections.append([a, b, f"{filename} · {symbol}" if symbol else "", ""])
        meta["sections"] = sections
    return [Document.from_text(text, source=blob.name, title=filename, meta=meta)]


def _definitions(root: Any, text: str, starts: list[int],
                 prefix: str = "") -> list[tuple[tuple[int, int], str]]:
    """(first row, last row) and symbol of each top-level definition, comments just above
    it included; a large one is cut into its members."""
    out: list[tuple[tuple[int, int], str]] = []
    comment_from: int | None = None
    for node in root.named_children:
        if "comment" in node.type:
            if comment_from is None:
                comment_from = node.start_point[0]
            continue
        first = node.start_point[0] if comment_from is None else comment_from
        comment_from = None
        if not any(k in node.type for k in _DEFINES):
            continue
        name = _name(node)
        symbol = f"{prefix}{name}" if name else prefix.rstrip(".")
        last = node.end_point[0]
        body = node.child_by_field_name("body") or _inner_body(node)
        words = count_words(text[starts[first]:starts[min(last + 1, len(starts) - 1)]])
        members = (_definitions(body, text, starts, f"{symbol}.") if body is not None
                   and words > SPLIT_WORDS else [])
        if members:
            head_end = members[0][0][0] - 1
            if head_end >= first:
                out.append(((first, head_end), symbol))
            out += members
        else:
            out.append(((first, last), symbol))
    return out


def _inner_body(node: Any) -> Any | None:
    """The body of a definition wrapped in another node (a decorated Python function, an
    exported JavaScript class)."""
    for child in node.named_children:
        body = child.child_by_field_name("body")
        if body is not None:
            return body
    return None


def _name(node: Any, depth: int = 0) -> str:
    """A definition's name: its `name` field, else the first identifier within a few levels
    (a C function's declarator, an exported or decorated definition's inner one)."""
    named = node.child_by_field_name("name")
    if named is not None and named.text:
        return str(named.text.decode("utf-8", "replace"))
    for field in ("definition", "declaration"):  # decorated, exported: what they wrap
        inner = node.child_by_field_name(field)
        if inner is not None:
            return _name(inner, depth + 1)
    if depth >= 4:
        return ""
    for child in node.named_children:
        if child.type in _NAMES and child.text:
            return str(child.text.decode("utf-8", "replace"))
    for child in node.named_children:
        if "parameter" in child.type or "body" in child.type or child.type.endswith("block"):
            continue
        found = _name(child, depth + 1)
        if found:
            return found
    return ""


# ---------------------------------------------------------------- notebooks


def load_notebook(blob: Blob) -> list[Document]:
    """A Jupyter notebook: markdown and code cells in order (no outputs), each at "cell N"
    and titled by the markdown heading above it."""
    try:
        nb = json.loads(decode_text(blob.read(), blob.name))
    except (ValueError, RecursionError) as e:
        raise UnreadableFileError(f"{blob.name}: malformed notebook JSON "
                                  f"({str(e)[:120]})") from None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise UnreadableFileError(f"{blob.name}: not a Jupyter notebook (no 'cells' list)")
    parts: list[str] = []
    sections: list[list[Any]] = []
    pos, heading = 0, ""
    for n, cell in enumerate(cells, 1):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("markdown", "code"):
            continue
        source = cell.get("source", "")
        source = "".join(str(s) for s in source) if isinstance(source, list) else str(source)
        source = source.strip()
        if not source:
            continue
        if cell["cell_type"] == "markdown":
            for line in source.split("\n"):
                if line.lstrip().startswith("#"):
                    heading = line.lstrip("# ").strip()
                    break
        sections.append([pos, pos + len(source), heading, f"cell {n}"])
        parts.append(source)
        pos += len(source) + 2
    body = require_text("\n\n".join(parts), blob.name, "the notebook has no cells with text")
    title = next((s[2] for s in sections if s[2]), "")
    return [Document.from_text(body, source=blob.name, title=title,
                               meta={"sections": sections})]
