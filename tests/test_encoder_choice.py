"""Which encoder a new index gets: the default, or the multilingual one for Chinese files."""

from __future__ import annotations

from pathlib import Path

from ragline.config import IndexConfig
from ragline.index.index import _default_encoder
from ragline.ingest.pipeline import cjk_share


def write(folder: Path, **files: str) -> Path:
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_the_share_of_chinese_is_read_from_the_first_files(tmp_path: Path) -> None:
    zh = write(tmp_path / "zh", **{"a.txt": "长城是中国古代的军事工程。", "b.md": "# 绿茶\n绿茶来自茶树。"})
    en = write(tmp_path / "en", **{"a.txt": "The Great Wall of China (长城) is long."})
    assert cjk_share([zh]) == 1.0 and cjk_share([en]) < 0.2
    assert cjk_share([tmp_path / "missing"]) == 0.0
    assert 0.4 < cjk_share([zh, en]) < 0.9


def test_mostly_chinese_files_get_the_multilingual_encoder_unless_one_was_chosen(
        tmp_path: Path) -> None:
    zh = write(tmp_path / "zh", **{"a.txt": "长城是中国古代的军事工程。"})
    en = write(tmp_path / "en", **{"a.txt": "The Great Wall is long."})
    assert _default_encoder(IndexConfig(), [zh]) == "use-multilingual"
    assert _default_encoder(IndexConfig(), [en]) == "minilm"
    assert _default_encoder(IndexConfig(), []) == "minilm"
    assert _default_encoder(IndexConfig(encoder="hash"), [zh]) == "hash"  # chosen: kept
    assert _default_encoder(IndexConfig(encoder_zh=""), [zh]) == "minilm"  # switched off
