"""Retrieval-augmented translation against no retrieval: chrF and BLEU (sacrebleu) of
translations with k = 0, 1, 3, 5 matches from a translation memory, by fuzzy-match band, for
English→Chinese and English→German, with seconds per segment.

The data is built here, at run time, from the localisation catalogs Debian installs
(/usr/share/locale/<lang>/LC_MESSAGES/*.mo; their licences differ, so none is committed):

- in domain: git's catalog, split by message (a hash of the English text) into a memory (90 %)
  and a test part; test messages are put in bands by their best fuzzy match in the memory
  (≥ 90 %, 70–90 %, < 70 %) and --per-band of each band are translated;
- out of domain: --ood messages of another catalog (coreutils), against the same git memory.

The memory is imported with `ragline tm import`'s code (MiniLM, BM25 + dense candidates, fuzzy
ranking); the generator is the default concat model (Qwen2.5 0.5B Instruct on llama.cpp).
Single-line messages of 3–120 characters are used, so that a run takes minutes, not hours.

    .venv/bin/python bench/translate.py                      # the documentation's table
    .venv/bin/python bench/translate.py --langs zh_CN --per-band 10 --ood 10 --ks 0,3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import table  # noqa: E402

LOCALE = Path("/usr/share/locale")
BANDS = (("≥90", 0.9, 1.01), ("70–90", 0.7, 0.9), ("<70", 0.0, 0.7))
TOKENIZE = {"zh": "zh", "de": "13a"}


def catalog(lang: str, name: str) -> list[tuple[str, str]]:
    from ragline.tm.formats import read_pairs

    path = LOCALE / lang / "LC_MESSAGES" / f"{name}.mo"
    if not path.is_file():
        sys.exit(f"{path} is missing: apt-get install the package that carries it")
    pairs, _, _ = read_pairs(path, path.read_bytes(), "en", lang)
    return [(p.source, p.target) for p in pairs if 3 <= len(p.source) <= 120
            and "\n" not in p.source and "\n" not in p.target]


def in_test(source: str) -> bool:
    return hashlib.sha256(source.encode()).digest()[0] < 26  # about 10 %


def spread_pick(items: list, n: int) -> list:
    if len(items) <= n:
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--langs", default="zh_CN,de")
    ap.add_argument("--memory", default="git", help="catalog the memory and test come from")
    ap.add_argument("--ood-catalog", default="coreutils")
    ap.add_argument("--per-band", type=int, default=20)
    ap.add_argument("--ood", type=int, default=20)
    ap.add_argument("--ks", default="0,1,3,5")
    ap.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = ap.parse_args()

    import sacrebleu

    from ragline.config import Config, IndexConfig
    from ragline.generate.prompted import concat_generator
    from ragline.tm.memory import TranslationMemory
    from ragline.tm.translate import Translator

    ks = [int(k) for k in args.ks.split(",")]
    generator = concat_generator(Config())
    rows, records = [], []
    for lang in args.langs.split(","):
        pairs = catalog(lang, args.memory)
        memory = [p for p in pairs if not in_test(p[0])]
        memory_sources = {s for s, _ in memory}
        test = [p for p in pairs if in_test(p[0])]  # split by the English: none is in memory
        with tempfile.TemporaryDirectory(prefix="ragline-tm-") as tmp:
            tsv = Path(tmp) / f"memory.{lang}.tsv"
            tsv.write_text("".join(f"{s}\t{t}\n" for s, t in memory), encoding="utf-8")
            t0 = time.perf_counter()
            tm = TranslationMemory.open_or_create(Path(tmp) / "tm", "en", lang, [tsv],
                                                  IndexConfig())
            tm.add([tsv])
            build_s = time.perf_counter() - t0
            translator = Translator(tm, generator)
            best = {s: (tm.matches(s, 1) or [None])[0] for s, _ in test}
            chosen: dict[str, list[tuple[str, str]]] = {}
            for band, lo, hi in BANDS:
                inside = [p for p in test if best[p[0]] and lo <= best[p[0]].score < hi]
                chosen[band] = spread_pick(inside, args.per_band)
            ood = [p for p in catalog(lang, args.ood_catalog) if p[0] not in memory_sources]
            chosen[f"out of domain ({args.ood_catalog})"] = spread_pick(ood, args.ood)
            print(f"{lang}: memory {len(memory):,} pairs (built in {build_s:.0f} s), test "
                  f"{len(test):,}; " + ", ".join(f"{b} {len(v)}" for b, v in chosen.items()),
                  flush=True)
            for band, segs in chosen.items():
                if not segs:
                    continue
                refs = [t for _, t in segs]
                for k in ks:
                    t0 = time.perf_counter()
                    out = translator.translate_many([s for s, _ in segs], k, progress=True)
                    secs = (time.perf_counter() - t0) / len(segs)
                    hyps = [t.translation for t in out]
                    tok = TOKENIZE[lang.split("_")[0]]
                    chrf = sacrebleu.corpus_chrf(hyps, [refs]).score
                    bleu = sacrebleu.corpus_bleu(hyps, [refs], tokenize=tok).score
                    exact = sum(t.exact for t in out)
                    rows.append([f"en→{lang}", band, len(segs), k, f"{chrf:.1f}", f"{bleu:.1f}",
                                 exact, f"{secs:.2f}"])
                    records.append({"pair": f"en-{lang}", "band": band, "n": len(segs), "k": k,
                                    "chrf": chrf, "bleu": bleu, "exact": exact,
                                    "s_per_segment": secs,
                                    "examples": [t.to_dict() for t in out[:3]]})
                    print(rows[-1], flush=True)
            tm.close()
    table("Translation with k matches from the memory (k = 0: no retrieval)",
          ["pair", "fuzzy band", "segments", "k", "chrF", "BLEU", "exact", "s/segment"], rows)
    if args.out:
        args.out.write_text(json.dumps(records, ensure_ascii=False, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
