"""The `ragline` command: index your files, search them, ask, chat, write, serve and more.

Commands: index · search · ask · write · chat · serve · mcp · keys · score · train · eval · tm ·
translate · reindex · rm · info.

    ragline index docs/ --index my-index
    ragline ask my-index "What is the capital of France?"

Errors are one line on stderr; exit status 0 on success, 1 when the command failed,
2 for bad arguments or settings, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from ragline import __version__
from ragline.cli import asking, chatting, evaluating, indexing, serving, training, translating
from ragline.cli.options import Parser, settings
from ragline.errors import RaglineError

# each module adds its commands' parsers, in the order `ragline --help` lists them
COMMAND_MODULES = (indexing, asking, chatting, translating, serving, training, evaluating)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="ragline", description=(__doc__ or "").split("\n")[0],
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"ragline {__version__}")
    p.add_argument("--config", type=Path, help="TOML settings file (default: ./ragline.toml if present)")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return p


def _ragline_only(record: logging.LogRecord) -> bool:
    return record.name == "ragline" or record.name.startswith("ragline.")


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 still prints
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="ragline: %(message)s", stream=sys.stderr)
    # libraries' own notices (pypdf: "EOF marker not found") are not the user's business;
    # ragline reports what they mean (a file skipped, and why)
    for noisy in ("sentence_transformers", "transformers", "faiss", "bm25s", "numba", "jieba",
                  "httpx", "pypdf"):
        logging.getLogger(noisy).setLevel(logging.WARNING if args.verbose else logging.ERROR)
    if not args.verbose:  # olefile's "not an OLE2 structured storage file", Pillow's EXIF …
        for handler in logging.getLogger().handlers:
            handler.addFilter(_ragline_only)
        warnings.filterwarnings("ignore", module=r"PIL\.")
    if getattr(args, "quiet", False):  # Ray's own C++ core prints error lines at shutdown
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return int(args.run(args, settings(args)))
    except RaglineError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted; the index keeps everything committed before the interruption",
              file=sys.stderr)
        return 130
    except (MemoryError, RecursionError) as e:
        print(f"error: out of {'memory' if isinstance(e, MemoryError) else 'stack'}; the index "
              "keeps everything committed before it", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # the reader went away (`ragline search … | head`): stop quietly, as C tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as e:  # a bug: one line, the traceback with -v
        if args.verbose:
            raise
        print(f"error: unexpected {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
              " (a bug in ragline: run again with -v for the traceback, and report it)",
              file=sys.stderr)
        return 1


__all__ = ["build_parser", "main"]
