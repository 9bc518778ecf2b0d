"""`ragline tm import · translate`: translation memories and retrieval-augmented translation."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ragline.cli import render
from ragline.cli.indexing import index_report
from ragline.cli.options import add_generator, add_json
from ragline.config import Config
from ragline.errors import ConfigError


def register(sub: Any) -> None:
    s = sub.add_parser("tm", help="translation memories: import TMX, TSV/CSV, PO and MO files")
    tm = s.add_subparsers(dest="tm_command", required=True, metavar="ACTION")
    i = tm.add_parser("import", help="add bilingual files to a translation memory (created if "
                                     "new); re-importing an unchanged file does nothing")
    i.add_argument("tm", type=Path, metavar="TM_DIR")
    i.add_argument("paths", nargs="+", type=Path, metavar="FILE",
                   help=".tmx .tsv .csv .po .mo files, or folders holding them")
    i.add_argument("--from", dest="source", metavar="LANG",
                   help="source language, where a file does not say it (PO/MO: en)")
    i.add_argument("--to", dest="target", metavar="LANG",
                   help="target language, where a file does not say it or holds several")
    i.add_argument("--encoder", help="encoder of a new memory (default: minilm for English "
                                     "sources, use-multilingual for others)")
    i.set_defaults(run=cmd_import)

    s = sub.add_parser("translate", help="translate with the closest matches of a translation "
                                         "memory as examples")
    s.add_argument("tm", type=Path, metavar="TM_DIR")
    s.add_argument("text", nargs="?", help="the text to translate (or --file)")
    s.add_argument("--file", type=Path, metavar="F",
                   help="translate F, one segment a line (-: standard input)")
    s.add_argument("--to", metavar="LANG", help="the target language (default: the memory's; "
                                                "another is an error)")
    s.add_argument("-k", type=int, default=3, metavar="N",
                   help="matches to condition on (default 3; 0: no retrieval, plain machine "
                        "translation)")
    add_json(s, "print a list with one object per segment: source, translation, matches")
    add_generator(s)
    s.set_defaults(run=cmd_translate)


def cmd_import(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.tm.memory import TranslationMemory

    with TranslationMemory.open_or_create(args.tm, args.source, args.target, args.paths,
                                          cfg.index, args.encoder) as tm:
        report = tm.add(args.paths, progress=not args.quiet)
        render.out(f"{args.tm} translates {tm.source} → {tm.target}")
        return index_report(report, args.tm, tm.index.counts(), pairs=True)


def cmd_translate(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.generate.prompted import concat_generator
    from ragline.tm.memory import TranslationMemory
    from ragline.tm.translate import Translator, check_k_matches

    check_k_matches(args.k)
    if args.text is None and args.file is None:
        raise ConfigError("give the text to translate, or --file F (one segment a line)")
    if args.text is not None and args.file is not None:
        raise ConfigError("give the text to translate or --file F, not both")
    segments = [args.text] if args.file is None else _segments(args.file)
    with TranslationMemory.open(args.tm) as tm:
        translator = Translator(tm, concat_generator(cfg))
        translator.check_target(args.to)
        out = translator.translate_many(segments, args.k,
                                        progress=args.file is not None and not args.quiet,
                                        what="non-empty line")
    if args.json:
        render.out(json.dumps([t.to_dict() for t in out], ensure_ascii=False, indent=2))
        return 0
    if args.file is not None:  # a file in, its translation out, a line a segment
        for t in out:
            render.out(" ".join(t.translation.split("\n")))
        return 0
    t = out[0]
    render.out(t.translation)
    if t.matches:
        render.out("\n100 % match: the memory's translation" if t.exact else
                   f"\nMatches ({len(t.matches)}):")
        for m in t.matches:
            render.out(f"  {m.score:6.1%}  {m.source}")
            render.out(f"          → {m.target}")
    return 0


def _segments(path: Path) -> list[str]:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read it as UTF-8 text ({e})") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ConfigError(f"{path} holds no text to translate")
    return lines
