"""Question-answer data: jsonl rows {"question": ..., "answers": [...]} or SQuAD-format JSON.

    examples = read_qa(Path("squad-dev-v1.1-part-a.json"))     # QAExample rows (ragline.qa)

SQuAD-format files also yield their paragraphs (`paragraphs_of`), to index as the corpus.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragline.errors import ConfigError
from ragline.qa import QAExample


def _bad(path: Path, why: str) -> ConfigError:
    return ConfigError(f"{path}: {why}; expected jsonl rows "
                       '{"question": "...", "answers": ["..."]} or SQuAD-format JSON')


def read_text_file(path: Path, what: str) -> str:
    """The text of an evaluation data file (BOM dropped); a missing or unreadable file is a
    ConfigError naming `what` it should have been."""
    try:
        return path.read_text("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {what} {path}: {e}") from None


def read_qa(path: Path) -> list[QAExample]:
    text = read_text_file(path, "QA data")
    stripped = text.lstrip()
    if stripped.startswith("{") and '"data"' in stripped[:2000]:
        try:
            return _squad(json.loads(text), path)
        except json.JSONDecodeError as e:
            raise _bad(path, f"invalid JSON ({e})") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise _bad(path, f"line {n} is not JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get("question"), str):
            raise _bad(path, f"line {n} has no 'question' string")
        answers = row.get("answers", row.get("answer"))
        if isinstance(answers, str):
            answers = [answers]
        if (not isinstance(answers, list) or not answers
                or not all(isinstance(a, str) and a.strip() for a in answers)):
            raise _bad(path, f"line {n} needs 'answers': a non-empty list of strings")
        out.append(QAExample(str(row.get("id", n)), row["question"].strip(),
                             tuple(a.strip() for a in answers), str(row.get("group", ""))))
    if not out:
        raise _bad(path, "no questions")
    return out


def _squad(data: Any, path: Path) -> list[QAExample]:
    out = []
    try:
        for article in data["data"]:
            for para in article["paragraphs"]:
                for qa in para["qas"]:
                    answers = tuple(dict.fromkeys(a["text"].strip() for a in qa["answers"]
                                                  if a["text"].strip()))
                    if answers:
                        out.append(QAExample(str(qa["id"]), qa["question"].strip(), answers,
                                             article.get("title", ""), para["context"]))
    except (KeyError, TypeError) as e:
        raise _bad(path, f"SQuAD structure broken near {e!s}") from None
    if not out:
        raise _bad(path, "no questions with answers")
    return out


def paragraphs_of(path: Path) -> list[dict[str, str]]:
    """The paragraphs of a SQuAD-format file as corpus rows {"id", "title", "text"}."""
    data = json.loads(path.read_text("utf-8-sig"))
    rows = []
    for article in data["data"]:
        for i, para in enumerate(article["paragraphs"]):
            rows.append({"id": f"{article.get('title', '')}#{i}", "title": article.get("title", ""),
                         "text": para["context"]})
    return rows


def write_paragraphs_jsonl(squad: Path, dest: Path) -> Path:
    """Write the paragraphs of a SQuAD-format file as a jsonl corpus `ragline index` reads."""
    dest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in paragraphs_of(squad)),
                    "utf-8")
    return dest
