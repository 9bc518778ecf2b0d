"""Retrieval-augmented translation: the k best matches of a translation memory go before the
segment as worked examples, so the generator follows the memory's terminology and style; a
100 % match is returned as it is, without generating.

An instruct model gets the task as its system turn and each match as a user turn (its source)
answered by an assistant turn (its target), the closest last, then the segment; a base model
gets the same as lines of "English: …" / "Chinese: …". k = 0 is plain machine translation.

    translator = Translator(TranslationMemory.open("tm"), concat_generator(Config()))
    t = translator.translate("Open the file", k=3)
    t.translation, t.matches, t.exact
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from ragline.errors import ConfigError
from ragline.generate.prompted import PromptGenerator
from ragline.tm.formats import normalize_lang, same_lang
from ragline.tm.memory import Match, TranslationMemory

MAX_MATCHES = 20  # examples in one prompt

LANGUAGE_NAMES = {
    "en": "English", "zh": "Chinese", "zh-cn": "Simplified Chinese", "zh-hans": "Simplified "
    "Chinese", "zh-tw": "Traditional Chinese", "zh-hant": "Traditional Chinese", "de": "German",
    "fr": "French", "es": "Spanish", "it": "Italian", "pt": "Portuguese", "pt-br": "Brazilian "
    "Portuguese", "nl": "Dutch", "ru": "Russian", "uk": "Ukrainian", "pl": "Polish", "cs":
    "Czech", "sv": "Swedish", "da": "Danish", "fi": "Finnish", "nb": "Norwegian", "tr": "Turkish",
    "ja": "Japanese", "ko": "Korean", "ar": "Arabic", "he": "Hebrew", "hi": "Hindi", "vi":
    "Vietnamese", "th": "Thai", "id": "Indonesian",
}


def language_name(code: str) -> str:
    code = normalize_lang(code)
    return LANGUAGE_NAMES.get(code) or LANGUAGE_NAMES.get(code.split("-")[0]) or code


@dataclass(frozen=True)
class Translation:
    """A segment, its translation, the matches it was conditioned on (best first), and
    whether the translation is a 100 % match's target."""

    source: str
    translation: str
    matches: tuple[Match, ...]
    exact: bool = False
    timings: dict[str, float] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "translation": self.translation,
                "matches": [m.to_dict() for m in self.matches], "exact": self.exact,
                "timings": dict(self.timings)}


def check_k_matches(k: int) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= MAX_MATCHES:
        raise ConfigError(f"k must be an integer from 0 (no retrieval) to {MAX_MATCHES}, "
                          f"got {k!r}")
    return k


class Translator:
    """Translates from the memory's source language into its target language with a
    prompted generator (the concat model: llama.cpp, or an OpenAI-compatible server)."""

    def __init__(self, memory: TranslationMemory, generator: PromptGenerator,
                 max_tokens: int = 512) -> None:
        self.memory = memory
        self.generator = generator
        self.max_tokens = max_tokens
        self.source_name = language_name(memory.source)
        self.target_name = language_name(memory.target)

    def check_target(self, to: str | None) -> None:
        """`--to` must name the memory's target language (or be left out)."""
        if to is not None and not same_lang(self.memory.target, to):
            raise ConfigError(f"{self.memory.index.path} translates {self.memory.source} to "
                              f"{self.memory.target}, not to {to}")

    def translate(self, text: str, k: int = 3) -> Translation:
        check_k_matches(k)
        t0 = time.perf_counter()
        matches = self.memory.matches(text, k) if k else []
        timings = {"retrieve_s": time.perf_counter() - t0}
        exact = next((m for m in matches if m.score == 1.0), None)
        if exact is not None:  # the memory's own translation, as a translator would take it
            timings["total_s"] = time.perf_counter() - t0
            return Translation(text, exact.target, tuple(matches), True, timings)
        out = self._generate(text, matches)
        timings["total_s"] = time.perf_counter() - t0
        return Translation(text, out, tuple(matches), False, timings)

    def translate_many(self, texts: Sequence[str], k: int = 3,
                       progress: bool = False) -> list[Translation]:
        check_k_matches(k)
        return [self.translate(t, k) for t in tqdm(texts, desc="translating", unit="segment",
                                                   disable=not progress, dynamic_ncols=True)]

    # ------------------------------------------------------------ the prompt

    def prompt(self, text: str, matches: Sequence[Match]) -> str:
        """The whole prompt: the task, the matches as examples (the closest last, next to
        the segment), then the segment."""
        src, tgt = self.source_name, self.target_name
        examples = list(reversed(matches))
        chat = self.generator.chat_template()
        if chat is not None:
            system = (f"You translate {src} into {tgt}. Reply with the {tgt} translation alone. "
                      "Keep placeholders such as %s, %d and {0}, markup and line breaks as they "
                      "are.")
            if examples:
                system += (" The user's earlier texts were translated by the project's "
                           "translators: reuse their wording and terms where the text is the "
                           "same.")
            turns = [("system", system)]
            for m in examples:
                turns += [("user", m.source), ("assistant", m.target)]
            return chat([*turns, ("user", text.strip())])
        lines = [f"Translate {src} into {tgt}, following the terminology of the examples.", ""]
        for m in examples:
            lines += [f"{src}: {m.source}", f"{tgt}: {m.target}", ""]
        lines += [f"{src}: {text.strip()}", f"{tgt}:"]
        return "\n".join(lines)

    def _generate(self, text: str, matches: Sequence[Match]) -> str:
        gen = self.generator
        gen.load()
        # room for the translation: about twice the source's tokens, within what is asked
        budget = min(self.max_tokens, 2 * gen.count_tokens(text) + 32)
        prompt = self.prompt(text, matches)
        while matches and gen.count_tokens(prompt) + budget > gen.n_ctx:
            matches = matches[:-1]  # the least close examples give way first
            prompt = self.prompt(text, matches)
        chat = gen.chat_template() is not None
        stop = () if chat else (f"\n{self.source_name}:", "\n\n")
        out = "".join(gen.stream(prompt, max_tokens=budget, stop=stop, temperature=0.0))
        return out.strip()
