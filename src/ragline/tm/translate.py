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
from ragline.retrieve.searcher import check_query
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
        return self.translate_many([text], k)[0]

    def translate_many(self, texts: Sequence[str], k: int = 3, progress: bool = False,
                       what: str = "segment") -> list[Translation]:
        """Every segment is checked before anything is generated: it must be text, and one
        that the model will translate (no 100 % match) must fit its context with room for
        the translation, whatever k is (matches give way to the segment; the segment itself
        cannot). ConfigError names the first that does not (`what` i: "line" for a file). A
        100 % match is the memory's own translation and needs no model."""
        check_k_matches(k)
        names = (["the text to translate"] if len(texts) == 1
                 else [f"{what} {i}" for i in range(1, len(texts) + 1)])
        for text, name in zip(texts, names, strict=True):
            check_query(text, name)
        found = []
        for text in texts:
            t0 = time.perf_counter()
            matches = self.memory.matches(text, k) if k else []
            found.append((matches, time.perf_counter() - t0))
        generated = [i for i, (matches, _) in enumerate(found)
                     if not any(m.score == 1.0 for m in matches)]
        if generated:
            self._check_fits([(names[i], texts[i]) for i in generated])
        out = []
        for text, (matches, retrieve_s) in tqdm(list(zip(texts, found, strict=True)),
                                                desc="translating", unit="segment",
                                                disable=not progress, dynamic_ncols=True):
            t0 = time.perf_counter() - retrieve_s
            exact = next((m for m in matches if m.score == 1.0), None)
            if exact is not None:  # the memory's own translation, as a translator would take it
                translation, is_exact = exact.target, True
            else:
                translation, is_exact = self._generate(text, matches), False
            timings = {"retrieve_s": retrieve_s, "total_s": time.perf_counter() - t0}
            out.append(Translation(text, translation, tuple(matches), is_exact, timings))
        return out

    def _check_fits(self, named: Sequence[tuple[str, str]]) -> None:
        gen = self.generator
        gen.load()
        for name, text in named:
            need = gen.count_tokens(self.prompt(text, [])) + self._budget(text)
            if need > gen.n_ctx:
                raise ConfigError(f"{name} is too long to translate: with the instructions "
                                  f"and room for its translation it needs {need:,} tokens, and "
                                  f"the model reads {gen.n_ctx:,}; split it into shorter "
                                  "segments")

    def _budget(self, text: str) -> int:
        """Room for the translation: about twice the source's tokens, within what is asked."""
        return min(self.max_tokens, 2 * self.generator.count_tokens(text) + 32)

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
        budget = self._budget(text)
        prompt = self.prompt(text, matches)
        while matches and gen.count_tokens(prompt) + budget > gen.n_ctx:
            matches = matches[:-1]  # the least close examples give way first
            prompt = self.prompt(text, matches)
        chat = gen.chat_template() is not None
        stop = () if chat else (f"\n{self.source_name}:", "\n\n")
        out = "".join(gen.stream(prompt, max_tokens=budget, stop=stop, temperature=0.0))
        return out.strip()
