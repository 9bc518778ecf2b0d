"""File types: OCR accuracy and speed on rendered pages, ingestion rate per type on a mixed
folder, peak memory on a large CSV and a 500-page PDF, and `ragline index /usr/share/doc`.

    .venv/bin/python bench/formats.py [--only ocr,mixed,memory,sharedoc] [--big-mb 200]

OCR pages are rendered here from known sentences (DejaVu Sans, Liberation Serif, WenQuanYi
Micro Hei; 24 and 32 px; 0° and 2° turned; with and without speckle noise); the character
error rate is the Levenshtein distance over the truth's length, spaces ignored.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rapidfuzz.distance import Levenshtein

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from docgen import (  # noqa: E402
    make_eml,
    make_epub,
    make_page_image,
    make_pdf,
    make_pptx,
    make_xlsx,
)

EN = ["The lighthouse keeper logged every passing ship.",
      "Storms in the winter of 1893 kept him awake for eleven nights.",
      "Oil for the lamp arrived by boat each month from the mainland."]
ZH = ["长城大部分是明朝修建的。", "灯塔看守人记录了每一艘经过的船。",
      "一八九三年冬天的暴风雨持续了十一个夜晚。"]
FONTS = {"DejaVu Sans": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
         "Liberation Serif": "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf",
         "WenQuanYi": "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"}
RAGLINE = str(ROOT / ".venv" / "bin" / "ragline")


def cer(got: str, truth: str) -> float:
    a, b = "".join(got.split()), "".join(truth.split())
    return Levenshtein.distance(a, b) / max(1, len(b))


def bench_ocr() -> None:
    import numpy as np

    from ragline.ingest.ocr import ocr_array

    print("| language | font | size | turned | noise | CER | s/page |")
    print("|---|---|---|---|---|---|---|")
    for lang, lines, fonts in [("English", EN, ["DejaVu Sans", "Liberation Serif"]),
                               ("Chinese", ZH, ["WenQuanYi"])]:
        for font in fonts:
            for size in (24, 32):
                for angle, noise in ((0.0, 0.0), (2.0, 0.0), (0.0, 0.02)):
                    img = make_page_image(lines, FONTS[font], size, angle, noise)
                    t = time.perf_counter()
                    text = ocr_array(np.asarray(img.convert("RGB")))  # type: ignore[attr-defined]
                    dt = time.perf_counter() - t
                    print(f"| {lang} | {font} | {size} | {angle:g}° | {noise:g} | "
                          f"{cer(text, ' '.join(lines)):.3f} | {dt:.2f} |", flush=True)


def _run(args: list[str]) -> tuple[float, float, str]:
    """Seconds, peak MB and output of a ragline command."""
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", RAGLINE, "-q", *args],
                       capture_output=True, text=True)
    dt = time.perf_counter() - t
    peak = int(p.stderr.strip().split("\n")[-1]) / 1024
    return dt, peak, p.stdout + p.stderr


def bench_mixed(tmp: Path) -> None:
    folder = tmp / "mixed"
    folder.mkdir()
    code = (ROOT / "src/ragline/ingest/pipeline.py").read_bytes()
    for i in range(20):
        (folder / f"n{i}.md").write_text(f"# Note {i}\n\n" + " ".join(EN * 20))
        (folder / f"t{i}.py").write_bytes(code)
        (folder / f"s{i}.pptx").write_bytes(make_pptx([(f"S{j}", EN[j % 3], "note")
                                                       for j in range(10)]))
        (folder / f"b{i}.xlsx").write_bytes(make_xlsx({"S": [["a", "b", "c"]] + [
            [f"r{j}", j, j * 2] for j in range(500)]}))
        (folder / f"m{i}.eml").write_bytes(make_eml(f"Mail {i}", " ".join(EN * 10)))
        (folder / f"e{i}.epub").write_bytes(make_epub("Book", [(f"C{j}", " ".join(EN * 5))
                                                                for j in range(5)]))
        (folder / f"p{i}.pdf").write_bytes(make_pdf([" ".join(EN * 5)] * 5))
    print("| type | files | s | files/s | passages | passages/s |")
    print("|---|---|---|---|---|---|")
    for suffix in (".md", ".py", ".pptx", ".xlsx", ".eml", ".epub", ".pdf"):
        one = tmp / f"only{suffix}"
        one.mkdir()
        for f in folder.glob(f"*{suffix}"):
            (one / f.name).symlink_to(f)
        dt, _, out = _run(["index", str(one), "--index", str(tmp / f"i{suffix}"),
                           "--encoder", "minilm"])
        n = json.loads(subprocess.run([RAGLINE, "info", str(tmp / f"i{suffix}"), "--json"],
                                      capture_output=True, text=True).stdout)["counts"]
        print(f"| {suffix} | 20 | {dt:.1f} | {20 / dt:.1f} | {n['passages']} | "
              f"{n['passages'] / dt:.0f} |", flush=True)


def bench_memory(tmp: Path, big_mb: int) -> None:
    big = tmp / "big.csv"
    with big.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ship", "port", "year", "tons", "cargo"])
        i = 0
        while f.tell() < big_mb * 2**20:
            w.writerows([f"ship {i + j}", "Brest", 1850 + (i + j) % 70, (i + j) % 997,
                         "oil and rope"] for j in range(10000))
            i += 10000
    pdf = tmp / "long.pdf"
    pdf.write_bytes(make_pdf([f"Page {n}. " + " ".join(EN * 6) for n in range(500)]))
    print("| file | size | s | peak memory |")
    print("|---|---|---|---|")
    for f in (big, pdf):
        dt, peak, out = _run(["index", str(f), "--index", str(tmp / f"m-{f.stem}"),
                              "--encoder", "hash"])
        print(f"| {f.name} | {f.stat().st_size / 2**20:.0f} MB | {dt:.0f} | {peak:.0f} MB |",
              flush=True)


def bench_sharedoc(tmp: Path) -> None:
    dt, peak, out = _run(["index", "/usr/share/doc", "--index", str(tmp / "sd"),
                          "--encoder", "hash"])
    print(f"/usr/share/doc: {dt:.0f} s, peak {peak:.0f} MB")
    print("\n".join(line for line in out.split("\n") if not line.startswith("  ")))
    reasons: dict[str, int] = {}
    for line in out.split("\n"):
        if line.startswith("  ") and ": " in line:
            why = line.rsplit(": ", 1)[-1]
            key = why.split(" (")[0][:70]
            reasons[key] = reasons.get(key, 0) + 1
    for why, n in sorted(reasons.items(), key=lambda x: -x[1])[:12]:
        print(f"  {n:5d}  {why}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="ocr,mixed,memory,sharedoc")
    ap.add_argument("--big-mb", type=int, default=200)
    args = ap.parse_args()
    parts = args.only.split(",")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "ocr" in parts:
            bench_ocr()
        if "mixed" in parts:
            bench_mixed(tmp)
        if "memory" in parts:
            bench_memory(tmp, args.big_mb)
        if "sharedoc" in parts:
            bench_sharedoc(tmp)


if __name__ == "__main__":
    main()
