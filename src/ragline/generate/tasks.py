"""What the generator is asked to do with the retrieved passages: answer a question, write a
text, or write a question for a given answer (the RAG paper's Jeopardy question generation).

A task is its prompts, in English and Chinese, in three shapes: a base model's document
(all passages numbered, then the request and a cue), an instruct model's chat turns (the task
as the system turn, worked turns, then the passages with the request), and the RAG models'
one-passage-at-a-time form of each. The request's language picks the prompts.

    TASKS["text"].frame("en", chat=None)("[1] …passages…")     # a whole base-model prompt
    task = task_named("question")                                  # ConfigError if unknown
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ragline.errors import ConfigError
from ragline.text import has_cjk

# [(role, content), …] → the model's chat template applied, ready to complete
ChatTemplate = Callable[[list[tuple[str, str]]], str]
Shots = tuple[tuple[str, str], ...]

# a base model goes on to invent the next question or passage; these end its output there
_BASE_STOP = ("\n\n", "Question:", "\nAnswer:", "\n[", "问题\uff1a", "回答\uff1a", "问题:", "回答:",
              "\n回答", "Request:", "要求\uff1a")


def lang_of(text: str) -> str:
    return "zh" if has_cjk(text) else "en"


@dataclass(frozen=True)
class Task:
    """`base`: a base model's prompt, with {passages} and {request}. `system`, `user` (with
    {passages} and {request}) and `shots` (worked (user, assistant) turns): an instruct
    model's. `one_passage` (with {passage} and {request}), `one_shots` and `cue` (what
    precedes the output after a base model's one-passage prompt): the RAG models'.
    `max_tokens`: the output's length (None: the answer settings, [generation] max_tokens
    and [model] max_new_tokens)."""

    name: str
    base: Mapping[str, str]
    system: Mapping[str, str]
    user: Mapping[str, str]
    shots: Mapping[str, Shots]
    one_passage: Mapping[str, str]
    one_shots: Mapping[str, Shots]
    cue: Mapping[str, str]
    not_found: Mapping[str, str]
    max_tokens: int | None = None
    multiline: bool = False            # the RAG models' output may hold line breaks
    stop: tuple[str, ...] = _BASE_STOP
    # an instruct model ends its turn itself; a blank line starts what nobody asked for
    chat_stop: tuple[str, ...] = ("\n\n",)

    def frame(self, request: str, chat: ChatTemplate | None,
              instructions: str = "") -> Callable[[str], str]:
        """passages → the whole prompt, in the request's language and the model's format.
        `instructions` (a conversation's system messages) follow the task's own."""
        r, lang = request.strip(), lang_of(request)
        extra = f"\n\n{instructions.strip()}" if instructions.strip() else ""
        if chat is None:
            return lambda body: (instructions.strip() + "\n\n" if extra else "") + \
                self.base[lang].format(passages=body, request=r)
        turns = self._turns(self.system[lang] + extra, self.shots[lang])
        return lambda body: chat([*turns, ("user", self.user[lang].format(passages=body,
                                                                           request=r))])

    def passage_turns(self, request: str) -> tuple[list[tuple[str, str]], str]:
        """An instruct model in the RAG models: (the turns before the user's, the user turn
        with a {passage} slot). The turns before the passage are the same for every passage
        and request, so llama.cpp reads them once (ragline.model.llama_lm)."""
        lang = lang_of(request)
        user = self.one_passage[lang].replace("{request}", request.strip())
        return self._turns(self.system[lang], self.one_shots[lang]), user

    def passage_parts(self, request: str) -> tuple[str, str]:
        """A base model in the RAG models: (text after the passage, prefix of the output)."""
        lang = lang_of(request)
        tail = "\n\n" + self.one_passage[lang].split("{passage}\n\n", 1)[1]
        return tail.format(request=request.strip()) + self.cue[lang], " " if lang == "en" else ""

    def not_found_message(self, request: str) -> str:
        return self.not_found[lang_of(request)]

    @staticmethod
    def _turns(system: str, shots: Shots) -> list[tuple[str, str]]:
        turns = [("system", system)]
        for asked, answered in shots:
            turns += [("user", asked), ("assistant", answered)]
        return turns


_NOT_FOUND = {"en": "I could not find the answer in the indexed documents.",
              "zh": "在已索引的文档中找不到答案。"}
_NOTHING_ON_IT = {"en": "The indexed documents say nothing about this.",
                  "zh": "已索引的文档中没有关于这方面的内容。"}

_EIFFEL = {"en": ("[1]\nThe tower was designed by the engineering firm of Gustave Eiffel and "
                  "completed in March 1889 for the World's Fair.\n\n[2]\nIt is 330 metres tall."),
           "zh": "[1]\n这座塔由古斯塔夫·埃菲尔的公司设计，于1889年3月为世界博览会建成。\n\n[2]\n塔高330米。"}
_EIFFEL_ONE = {"en": ("The tower was designed by the engineering firm of Gustave Eiffel and "
                      "completed in March 1889 for the World's Fair. It is 330 metres tall."),
               "zh": "这座塔由古斯塔夫·埃菲尔的公司设计，于1889年3月为世界博览会建成。塔高330米。"}
_RIVER = {"en": "The river rises in the Alps and flows 1,230 km to the North Sea.",
          "zh": "这条河发源于阿尔卑斯山，流经1230公里注入北海。"}


# Questions: the answer is the span itself; a sentence around it adds words the passages may
# not back, and costs time.
ANSWER = Task(
    name="answer",
    base={"en": ("Answer the question using only the numbered passages. Quote the passage's "
                 "words when you can, cite the passage number like [1], and keep the answer "
                 "short. If the passages do not contain the answer, reply \"I don't know.\""
                 "\n\n{passages}\n\nQuestion: {request}\nAnswer:"),
          "zh": ("请只根据下面编号的段落回答问题，尽量使用段落原文，并用[1]这样的编号注明出处，回答要简短。"
                 "如果段落中没有答案，请回答“不知道”。\n\n{passages}\n\n问题：{request}\n回答：")},
    system={"en": ("You answer questions from the passages the user gives. Reply with the answer "
                   "alone: the shortest phrase from the passages that answers the question (a "
                   "name, a number, a date, a few words). If the passages do not contain the "
                   "answer, reply exactly: I don't know."),
            "zh": ("你根据用户给出的段落回答问题。只写出答案本身：段落中能回答问题的最短原文"
                   "（一个名字、数字、日期或几个词）。如果段落中没有答案，只回答：不知道。")},
    user={"en": "{passages}\n\nQuestion: {request}", "zh": "{passages}\n\n问题：{request}"},
    shots={"en": ((_EIFFEL["en"] + "\n\nQuestion: Whose firm designed the tower?",
                   "Gustave Eiffel"),
                  ("[1]\n" + _RIVER["en"] + "\n\nQuestion: Who was the first person to swim "
                   "the river?", "I don't know.")),
           "zh": ((_EIFFEL["zh"] + "\n\n问题：这座塔是哪一年建成的？", "1889年"),
                  ("[1]\n" + _RIVER["zh"] + "\n\n问题：第一个游过这条河的人是谁？", "不知道。"))},
    one_passage={"en": "{passage}\n\nQuestion: {request}", "zh": "{passage}\n\n问题：{request}"},
    one_shots={"en": ((_EIFFEL_ONE["en"] + "\n\nQuestion: Whose firm designed the tower?",
                       "Gustave Eiffel"),
                      (_RIVER["en"] + "\n\nQuestion: Who was the first person to swim the "
                       "river?", "I don't know.")),
               "zh": ((_EIFFEL_ONE["zh"] + "\n\n问题：这座塔是哪一年建成的？", "1889年"),
                      (_RIVER["zh"] + "\n\n问题：第一个游过这条河的人是谁？", "不知道。"))},
    cue={"en": "\nAnswer:", "zh": "\n回答："},
    not_found=_NOT_FOUND,
)

# Texts: every sentence one fact of the passages, in their words, with its passage's number,
# so that each can be traced (and one no passage backs can be left out). The model is not
# asked to refuse: Qwen2.5 0.5B then refused 3 of 5 example instructions its passages covered.
# ragline refuses on the evidence instead: no passage close to the request (the relevance
# gate), or no sentence that a passage supports (ragline.generate.citations.SentenceGate).
TEXT = Task(
    name="text",
    base={"en": ("Write a short text for the request using only the numbered passages: three "
                 "to five sentences, each stating one thing the passages say, in their words "
                 "where you can, and ending with its passage number like [1]."
                 "\n\n{passages}\n\nRequest: {request}\nText:"),
          "zh": ("请只根据下面编号的段落，按要求写一段短文：三到五句话，每句陈述段落中的一件事，"
                 "尽量使用段落原文，句末用[1]这样的编号注明出处。"
                 "\n\n{passages}\n\n要求：{request}\n短文：")},
    system={"en": ("You write short texts from the passages the user gives. Write three to five "
                   "sentences. Each sentence states one thing the passages say, in the passages' "
                   "own words where possible, and ends with the number of its passage, like [2]. "
                   "Add nothing the passages do not say."),
            "zh": ("你根据用户给出的段落写短文。写三到五句话，每句陈述段落中的一件事，尽量使用段落原文，"
                   "句末用[2]这样的编号注明出处。不要添加段落中没有的内容。")},
    user={"en": "{passages}\n\nRequest: {request}", "zh": "{passages}\n\n要求：{request}"},
    # no worked turns: Qwen2.5 0.5B copied a worked refusal to requests its passages covered,
    # and the worked Eiffel Tower text into one about the Great Wall
    shots={"en": (), "zh": ()},
    one_passage={"en": "{passage}\n\nRequest: {request}", "zh": "{passage}\n\n要求：{request}"},
    one_shots={"en": ((_EIFFEL_ONE["en"] + "\n\nRequest: Describe the tower.",
                       "The tower was designed by the engineering firm of Gustave Eiffel. It "
                       "was completed in March 1889 for the World's Fair. It is 330 metres "
                       "tall."),),
               "zh": ((_EIFFEL_ONE["zh"] + "\n\n要求：介绍这座塔。",
                       "这座塔由古斯塔夫·埃菲尔的公司设计。它于1889年3月为世界博览会建成。塔高330米。"),)},
    cue={"en": "\nText:", "zh": "\n短文："},
    not_found=_NOTHING_ON_IT,
    max_tokens=200,
    multiline=True,
    # paragraphs may follow each other; max_tokens ends the text
    stop=tuple(s for s in _BASE_STOP if s != "\n\n"),
    chat_stop=(),
)

# Questions for a given answer (Jeopardy question generation, Lewis et al. 2020 §4.3): the
# request is the answer; the question must be one the passages answer with it.
QUESTION = Task(
    name="question",
    base={"en": ("Write one question that the numbered passages answer with the given answer. "
                 "Reply with the question only.\n\n{passages}\n\nAnswer: {request}\nQuestion:"),
          "zh": "请根据下面编号的段落写一个问题，使其答案正是给出的答案。只写问题。"
                "\n\n{passages}\n\n答案：{request}\n问题："},
    system={"en": ("You write quiz questions from the passages the user gives. The user names an "
                   "answer; reply with one question, answered by the passages, whose answer is "
                   "exactly that. Reply with the question alone."),
            "zh": ("你根据用户给出的段落出题。用户给出一个答案；写一个段落能回答、答案正是它的问题。"
                   "只写问题。")},
    user={"en": "{passages}\n\nAnswer: {request}", "zh": "{passages}\n\n答案：{request}"},
    shots={"en": ((_EIFFEL["en"] + "\n\nAnswer: Gustave Eiffel",
                   "Whose engineering firm designed the tower?"),),
           "zh": ((_EIFFEL["zh"] + "\n\n答案：1889年", "这座塔是哪一年建成的？"),)},
    one_passage={"en": "{passage}\n\nAnswer: {request}", "zh": "{passage}\n\n答案：{request}"},
    one_shots={"en": ((_EIFFEL_ONE["en"] + "\n\nAnswer: Gustave Eiffel",
                       "Whose engineering firm designed the tower?"),),
               "zh": ((_EIFFEL_ONE["zh"] + "\n\n答案：1889年", "这座塔是哪一年建成的？"),)},
    cue={"en": "\nQuestion:", "zh": "\n问题："},
    not_found={"en": "No indexed passage holds this answer.",
               "zh": "已索引的段落中没有这个答案。"},
    max_tokens=48,
    stop=(*_BASE_STOP, "\n"),
    chat_stop=("\n",),
)

TASKS: dict[str, Task] = {t.name: t for t in (ANSWER, TEXT, QUESTION)}
WRITE_TASKS = ("text", "question")  # what `ragline write --task` offers


def task_named(name: str) -> Task:
    task = TASKS.get(name)
    if task is None:
        raise ConfigError(f"unknown task '{name}'; choose one of {', '.join(TASKS)}")
    return task
