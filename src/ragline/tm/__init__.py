"""Translation memories and retrieval-augmented translation (see ragline.tm.translate)."""

from ragline.tm.formats import Pair, read_pairs
from ragline.tm.memory import Match, TranslationMemory, fuzzy_score
from ragline.tm.translate import Translation, Translator

__all__ = ["Match", "Pair", "Translation", "TranslationMemory", "Translator", "fuzzy_score",
           "read_pairs"]
