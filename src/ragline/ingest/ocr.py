"""OCR for images and for PDF pages without a text layer: RapidOCR (PP-OCRv4 detection and
recognition, English and Chinese, ONNX models inside its wheel: the `ocr` extra).

    text = ocr_array(numpy_rgb_image)      # lines in reading order

PP-OCRv4's recognizer often reads an English line without its spaces ("Thetowerstands38metres"),
which no word search can then find; such glued words are split again by word frequencies
(wordninja, English Wikipedia unigrams), only where a run of 12 or more letters is no word
of its own and splits into words that are (bench/formats.py measures the words it restores).
"""

from __future__ import annotations

import re
import threading
from functools import cache
from typing import Any

from ragline.errors import UnreadableFileError
from ragline.ingest.blob import Blob, require_text
from ragline.types import Document

NO_OCR = "no text layer: install ragline[ocr] to read scanned pages"
OCR_OFF = "no text layer, and OCR is off (--no-ocr)"

_engine: Any = None
_lock = threading.Lock()


def ocr_available() -> bool:
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _ocr() -> Any:
    global _engine
    with _lock:
        if _engine is None:
            from rapidocr_onnxruntime import RapidOCR

            _engine = RapidOCR()
        return _engine


def ocr_array(image: Any) -> str:
    """The text of an image (an RGB numpy array), line by line in reading order: boxes on
    the same line (their vertical centres within half a line's height) left to right."""
    result, _ = _ocr()(image)
    if not result:
        return ""
    boxes = []
    for box, text, _score in result:
        ys = [pt[1] for pt in box]
        xs = [pt[0] for pt in box]
        boxes.append(((min(ys) + max(ys)) / 2, max(ys) - min(ys), min(xs), text.strip()))
    boxes.sort()
    lines: list[list[tuple[float, str]]] = []
    last_y, last_h = -1e9, 0.0
    for y, h, x, text in boxes:
        if lines and abs(y - last_y) <= max(last_h, h) / 2:
            lines[-1].append((x, text))
        else:
            lines.append([(x, text)])
            last_y, last_h = y, h
    return "\n".join(respace(" ".join(t for _, t in sorted(line))) for line in lines)


MIN_GLUED = 12  # 8 would split 59 words in 10,000 of clean SQuAD text that 12 leaves (11)
_GLUED = re.compile(rf"[A-Za-z0-9]{{{MIN_GLUED},}}")
# a number glued to the word after it ("214vessels"); SQuAD's 125,000 words of clean text
# hold one number followed by three or more lower-case letters ("49ers"), none by four
_NUMBER_WORD = re.compile(r"\b([0-9]+)([a-z]{4,})\b")


@cache
def _splitter() -> Any:
    try:
        import wordninja
    except ImportError:  # an `ocr` extra installed before it held wordninja
        return None
    return wordninja.DEFAULT_LANGUAGE_MODEL


def respace(line: str) -> str:
    """An OCR'd line with its glued English words split again: a run of MIN_GLUED or more
    letters and digits that is no word of its own, and that splits into words that are; and
    a number glued to a word of four or more letters."""
    model = _splitter()
    if model is None:
        return line
    words = model._wordcost  # {word: cost}, lower-case
    line = _NUMBER_WORD.sub(lambda m: f"{m[1]} {m[2]}" if m[2] in words else m[0], line)
    if not _GLUED.search(line):
        return line

    def split(m: re.Match[str]) -> str:
        run = m.group(0)
        if run.lower() in words:
            return run
        parts = model.split(run)
        if len(parts) < 2 or not all(p.isdigit() or (p.lower() in words and (
                len(p) > 1 or p in "aAI")) for p in parts):
            return run
        return " ".join(parts)

    return _GLUED.sub(split, line)


def load_image(blob: Blob) -> list[Document]:
    """An image of text (a scan, a photo of a page) through OCR."""
    if not blob.options.ocr:
        raise UnreadableFileError(f"{blob.name}: {OCR_OFF}")
    if not ocr_available():
        raise UnreadableFileError(f"{blob.name}: {NO_OCR}")
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(blob.buffer()) as img:
            if img.width * img.height > 100_000_000:
                raise UnreadableFileError(f"{blob.name}: image of {img.width}×{img.height} "
                                          "pixels is too large to read")
            array = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except UnreadableFileError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise UnreadableFileError(f"{blob.name}: corrupt or unreadable image "
                                  f"({type(e).__name__})") from None
    text = require_text(ocr_array(array), blob.name, "OCR found no text in the image")
    return [Document.from_text(text, source=blob.name, meta={"ocr": True})]
