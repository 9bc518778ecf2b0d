"""Follow-up questions. A question asked after earlier turns ("How tall is it?") is rewritten
into one that stands alone ("How tall is the Eiffel Tower?") before anything is searched
for, by the answer model with a short prompt in the question's language: it names what the
question's pronoun refers to, and that takes the pronoun's place; a follow-up without one
("And Berlin?") is rewritten whole. A question that already stands alone is left as it is
without asking the model (`stands_alone`).

    turns = turns_from([{"role": "user", "content": "When was the Eiffel Tower completed?"},
                        {"role": "assistant", "content": "1889 [1]"}])
    rewrite = Rewriter(generator).rewrite("How tall is it?", turns)
    rewrite.question        # "How tall is the Eiffel Tower?"; rewrite.rewritten: a model call

Only the last turns go into the prompt, cut to a token budget: a conversation of 200 turns
costs what one of six does. Assistant turns lose their citation markers.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ragline.errors import ConfigError
from ragline.generate.prompted import PromptGenerator
from ragline.generate.tasks import lang_of
from ragline.text import CJK_RE
from ragline.types import Turn

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
# OpenAI's names for the same roles; tool turns carry nothing a question refers to
_ROLE_ALIASES = {"developer": "system"}
_SKIPPED_ROLES = ("tool", "function")
MAX_TURNS = 1000              # a longer history is refused, not cut: the client sent too much
MAX_TURN_CHARS = 100_000
# what the rewrite reads of the conversation: the instructions and the last CONTEXT_TURNS
# turns, within CONTEXT_TOKENS tokens, each turn cut to ANSWER_CHARS characters
CONTEXT_TURNS = 6
CONTEXT_TOKENS = 320
ANSWER_CHARS = 300


def turns_from(raw: Iterable[Mapping[str, Any]], what: str = "history") -> list[Turn]:
    """Turns from JSON-like messages ({"role", "content"}), checked: a role of system, user
    or assistant ("developer" is a system turn; tool turns are left out), text content (a
    string or OpenAI's list of text parts). A bad message is a ConfigError naming it."""
    turns: list[Turn] = []
    for n, m in enumerate(raw, 1):
        if not isinstance(m, Mapping):
            raise ConfigError(f"{what} turn {n} is not an object with a role and a content")
        role = m.get("role")
        role = _ROLE_ALIASES.get(role, role) if isinstance(role, str) else role
        if role in _SKIPPED_ROLES:
            continue
        if role not in ROLES:
            raise ConfigError(f"{what} turn {n}: role must be one of {', '.join(ROLES)}, "
                              f"got {str(role)[:40]!r}")
        turns.append(Turn(role, _text(m.get("content"), f"{what} turn {n}")))
        if len(turns) > MAX_TURNS:
            raise ConfigError(f"{what} has more than {MAX_TURNS} turns; send the last ones")
    return turns


def _text(content: object, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, list):  # OpenAI's content parts
        if any(not isinstance(p, Mapping) or p.get("type") != "text" for p in content):
            raise ConfigError(f"{where}: only text content is supported")
        content = "\n".join(str(p.get("text", "")) for p in content)
    if not isinstance(content, str):
        raise ConfigError(f"{where}: content must be text")
    if len(content) > MAX_TURN_CHARS:
        raise ConfigError(f"{where} has {len(content):,} characters; at most "
                          f"{MAX_TURN_CHARS:,} are allowed")
    return content


_MARKERS = re.compile(r"\s*\[\d+(?:,\s*\d+)*\]")


def plain(text: str) -> str:
    """An answer as context: its citation markers and the note ragline adds to a refused
    draft dropped, its whitespace folded."""
    text = text.split("\n\n→ ", 1)[0]
    return " ".join(_MARKERS.sub("", text).split())


# --------------------------------------------------------------- does it need the turns?

# Words that point back at something said before (English personal and demonstrative
# pronouns, and the words that open an elliptical follow-up: "And Apple?", "What about
# 1990?"). A closed class of the language, not a list fitted to any data set; "that" and
# "there" are left out because they mostly open a relative clause or an existential.
_EN_BACK = frozenset("it its itself they them their theirs themselves he him his himself "
                     "she her hers herself this these those former latter".split())
_EN_OPENERS = ("and ", "also ", "or ", "but ", "so ", "what about", "how about", "then ")
# Chinese: third-person pronouns, demonstratives, 该/此/其 as determiners, and a question
# that ends in 呢 or opens with 那/还有/另外 (the elliptical follow-up: "苹果呢？")
_ZH_BACK = re.compile(r"[它他她其此该]|这|那")
_ZH_OPENERS = ("那", "还有", "另外", "而")
_EN_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def stands_alone(question: str) -> bool:
    """Whether a question can be searched for as it is: it points back at nothing (no
    pronoun or demonstrative, no elliptical opening) and has at least three words. A
    question that passes is asked without a rewrite, saving a model call."""
    q = question.strip()
    if CJK_RE.search(q):
        core = q.rstrip("？?！!。. ")
        return (_ZH_BACK.search(core) is None and not core.endswith("呢")
                and not core.startswith(_ZH_OPENERS) and len(CJK_RE.findall(core)) >= 4)
    lower = q.lower()
    words = _EN_WORD.findall(lower)
    return (len(words) >= 3 and not _EN_BACK.intersection(words)
            and not lower.startswith(_EN_OPENERS))


# --------------------------------------------------------------- the rewrite
#
# Qwen2.5 0.5B, asked to rewrite a follow-up whole, mostly copies it: on 80 conversations of
# bench/followup.py's tuning half (40 English, 40 Chinese), 2 of 80 rewrites named the subject
# with a chat prompt, 30 with worked examples in a completion prompt. Asked only what the
# pronoun refers to, a short span of the conversation like the answers it reads, it named the
# subject in 63 of 80, and ragline puts that span in the pronoun's place. A follow-up with no
# pronoun to resolve ("And Berlin?", "这座塔呢？") is rewritten whole.

# the pronouns whose referent is asked for (a possessive gets "'s" after it)
_EN_PRONOUN = re.compile(r"\b(it|its|itself|they|them|their|theirs|themselves|he|him|his|"
                         r"himself|she|her|hers|herself)\b", re.IGNORECASE)
_EN_POSSESSIVE = {"its", "their", "theirs", "his", "hers"}
# 其他, 其中, 尤其 and their kind are words of their own, not the pronoun
_ZH_PRONOUN = re.compile(r"(?<!其)[它他她]们?|(?<![尤极与])其(?![他它中实次余])")
# a referent longer than this is no name of a thing: the resolution failed
MAX_REFERENT = {"en": 10, "zh": 20}  # words, characters

_SPEAKERS = {"en": {"user": "User", "assistant": "Assistant", "system": "Instructions"},
             "zh": {"user": "用户", "assistant": "助手", "system": "说明"}}
_FOLLOWUP = {"en": "Follow-up question: {question}", "zh": "追问：{question}"}
_MEANS = {"en": 'In the follow-up question, "{word}" means:', "zh": "追问中的“{word}”指的是："}
_STANDALONE = {"en": "The follow-up question on its own:", "zh": "不看对话也能理解的追问："}
# worked examples: (earlier question, its answer, follow-up, pronoun, what it means, the
# follow-up on its own); none of them is about anything in the measured data
_SHOTS = {
    "en": (("Who wrote the novel Dracula?", "Bram Stoker", "When was it published?", "it",
            "the novel Dracula", "When was the novel Dracula published?"),
           ("Where did Marie Curie study?", "in Paris", "What did she discover?", "she",
            "Marie Curie", "What did Marie Curie discover?"),
           ("Which company makes the Model T?", "Ford", "Where were its factories?", "its",
            "the Model T", "Where were the Model T's factories?"),
           ("Which company makes the Model T?", "Ford", "And the Beetle?", "", "",
            "Which company makes the Beetle?")),
    "zh": (("小说《德古拉》是谁写的？", "布拉姆·斯托克", "它是哪一年出版的？", "它", "小说《德古拉》",
            "小说《德古拉》是哪一年出版的？"),
           ("居里夫人在哪里读书？", "巴黎", "她发现了什么？", "她", "居里夫人", "居里夫人发现了什么？"),
           ("T型车是哪家公司生产的？", "福特", "它的工厂在哪里？", "它", "T型车", "T型车的工厂在哪里？"),
           ("T型车是哪家公司生产的？", "福特", "甲壳虫呢？", "", "", "甲壳虫是哪家公司生产的？")),
}
_HEADER = {"en": "Each follow-up question below refers to the conversation before it.",
           "zh": "下面每个追问都承接前面的对话。"}
_LABEL = re.compile(r"^\s*(standalone question|rewritten question|question|完整的问题|问题|"
                    r"改写后的问题|改写)\s*[:：]\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Rewrite:
    """`question`: what is searched for and answered; `rewritten`: whether the model was
    asked (False: it stood alone, or there was nothing before it); `seconds`: the model's
    time."""

    asked: str
    question: str
    rewritten: bool
    seconds: float = 0.0


def context(turns: Sequence[Turn], lang: str, count: Callable[[str], int],
            budget: int = CONTEXT_TOKENS, last: int = CONTEXT_TURNS) -> str:
    """The conversation as the rewrite reads it: the instructions (system turns) first, then
    the last `last` user and assistant turns, the newest kept first, all within `budget`
    tokens (a turn that does not fit ends it); answers without their markers, every turn
    cut to ANSWER_CHARS characters."""
    speakers = _SPEAKERS[lang]

    def line(role: str, text: str) -> str:
        text = " ".join(text.split())
        sep = "：" if lang == "zh" else ": "
        return f"{speakers[role]}{sep}{text[:ANSWER_CHARS] + '…' if len(text) > ANSWER_CHARS else text}"

    system = " ".join(t.content for t in turns if t.role == "system" and t.content.strip())
    head = [line("system", system)] if system else []
    used = sum(count(h) for h in head)
    talk = [t for t in turns if t.role != "system"][-last:]
    lines: list[str] = []
    for t in reversed(talk):
        text = line(t.role, plain(t.content) if t.role == "assistant" else t.content)
        cost = count(text)
        if lines and used + cost > budget:
            break
        lines.append(text)
        used += cost
    return "\n".join(head + lines[::-1])


def pronoun(question: str) -> re.Match[str] | None:
    """The first pronoun of the question whose referent the conversation gives, if any."""
    return (_ZH_PRONOUN if CJK_RE.search(question) else _EN_PRONOUN).search(question)


def rewrite_prompt(question: str, turns: Sequence[Turn], count: Callable[[str], int],
                   word: str = "") -> str:
    """The model's prompt, a completion in the question's language with worked examples:
    what `word` (a pronoun of the question) means, or, with no `word`, the whole follow-up
    on its own."""
    lang = lang_of(question)
    sep = "" if lang == "zh" else " "
    speakers = _SPEAKERS[lang]
    colon = "：" if lang == "zh" else ": "

    def block(talk: str, follow: str) -> str:
        ask = _MEANS[lang].format(word=word) if word else _STANDALONE[lang]
        return f"{talk}\n{_FOLLOWUP[lang].format(question=follow)}\n{ask}"

    worked = []
    for q, a, follow, w, means, whole in _SHOTS[lang]:
        if bool(w) != bool(word):
            continue
        talk = f"{speakers['user']}{colon}{q}\n{speakers['assistant']}{colon}{a}"
        ask = _MEANS[lang].format(word=w) if w else _STANDALONE[lang]
        worked.append(f"{talk}\n{_FOLLOWUP[lang].format(question=follow)}\n{ask}{sep}"
                      f"{means if w else whole}")
    body = context(turns, lang, count)
    return "\n\n".join([_HEADER[lang], *worked, block(body, " ".join(question.split()))])


class Rewriter:
    """Follow-ups made standalone by `generator` (the answer model's backend)."""

    def __init__(self, generator: PromptGenerator, max_tokens: int = 64) -> None:
        self.generator = generator
        self.max_tokens = max_tokens

    def rewrite(self, question: str, turns: Sequence[Turn]) -> Rewrite:
        """The question to search for. With no earlier user or assistant turn, or a question
        that stands alone, the question itself (no model call). A pronoun's referent takes
        its place; a follow-up without one is rewritten whole. What the model botched (empty,
        far too long, an answer rather than a question) falls back to the question as
        asked."""
        earlier = [t for t in turns if t.role in ("user", "assistant") and t.content.strip()]
        if not earlier or stands_alone(question):
            return Rewrite(question, question, False)
        t0 = time.perf_counter()
        self.generator.load()
        turns = [t for t in turns if t.content.strip()]
        m = pronoun(question)
        if m is not None:
            found = self._resolve(question, turns, m)
        else:
            out = self._complete(rewrite_prompt(question, turns, self.generator.count_tokens))
            found = _clean(out, question)
        seconds = time.perf_counter() - t0
        if found is None:
            log.info("the rewrite of %r failed; searching for it as asked", question)
            return Rewrite(question, question, True, seconds)
        return Rewrite(question, found, True, seconds)

    def _complete(self, prompt: str) -> str:
        return "".join(self.generator.stream(prompt, max_tokens=self.max_tokens, stop=("\n",),
                                             temperature=0.0))

    def _resolve(self, question: str, turns: Sequence[Turn], m: re.Match[str]) -> str | None:
        """The question with the pronoun `m` replaced by what the model says it means."""
        lang = lang_of(question)
        out = self._complete(rewrite_prompt(question, turns, self.generator.count_tokens,
                                            m.group(0)))
        referent = out.strip().strip("\"'“”「」").rstrip("。.?？").strip()
        size = len(referent) if lang == "zh" else len(referent.split())
        if not referent or size > MAX_REFERENT[lang] or referent.lower() == m.group(0).lower():
            return None
        word = m.group(0).lower()
        if lang == "zh":
            referent += "的" if word == "其" else ""
        elif word in _EN_POSSESSIVE:
            referent += "'" if referent.endswith("s") else "'s"
        out = question[:m.start()] + referent + question[m.end():]
        return out[0].upper() + out[1:] if m.start() == 0 else out


def _clean(out: str, question: str) -> str | None:
    """The model's question, or None when it wrote none worth searching for."""
    line = next((ln for ln in out.strip().splitlines() if ln.strip()), "")
    line = _LABEL.sub("", line).strip().strip("\"'“”「」").strip()
    if not line or len(line) > 3 * len(question) + 200:
        return None
    asks = question.rstrip().endswith(("?", "？"))
    if asks and not line.endswith(("?", "？")):  # it answered instead
        return None
    return line
