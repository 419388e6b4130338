"""Context QA: does the model still *read the document* while it follows an emphasised format instruction?

    Schedule for Tuesday: 9:15 client call in room 204; 11:30 design review in room 310; ... .

    Question: What time is the design review? *Answer in capital letters only.*

Documents come from :mod:`pasta_lens.tasks.documents` (schedules, recipes, product notes, sales reports) and from
the biography generators (named and implied bios); each question is answered in its document. The emphasised
instruction asks for a format (:data:`FORMATS`: capitals, lowercase, one word, JSON with a key, a prefix, no commas,
double quotes). Two metrics, kept apart:

* ``correct``: the gold answer is in the answer, normalised so that a correctly formatted answer counts
  ("THURSDAY", '{"answer": "Thursday"}', "Answer: thursday"; :func:`~pasta_lens.metrics.answer_found`), no
  distractor of the same kind from the document is (so a list of every time fails), the answer has at most
  :data:`MAX_WORDS` words and holds less than :data:`MAX_KEPT` of the document's content words (so a copy of the
  document fails);
* ``format``: the format instruction is followed;
* ``both``: the two together.

Steering that emphasises the instruction should raise ``format`` without lowering ``correct``: the content kept is
``correct(steered) / correct(unsteered)`` (:func:`pasta_lens.metrics.content_kept_ratios` on a summary).

Splits: each split is a fixed seeded list from its own random stream (train 600, validation 200, test 400), its bios
from the bio generators' own split (different people); no document is in two splits.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pasta_lens.metrics import (
    all_lower,
    all_upper,
    answer_found,
    content_kept,
    json_with_key,
    one_word,
    starts_with,
    word_tokens,
    wrapped_in,
)
from pasta_lens.tasks.base import Task, TaskExample, check_split, escape_markup, seeded_sample
from pasta_lens.tasks.biographies import synthetic_biographies
from pasta_lens.tasks.documents import GENERATORS, Question, bio_questions
from pasta_lens.tasks.implied_bios import implied_biographies

MAX_WORDS = 40
"""A correct answer has at most this many words."""
MAX_KEPT = 0.8
"""A correct answer holds less than this fraction of the document's content words (a copy of the document is no
answer, even of a document with no distractor; :func:`~pasta_lens.metrics.content_kept`)."""


@dataclass(frozen=True)
class Format:
    """A format instruction: its text, checker, how the gold answer looks in it, and which answers it suits."""

    id: str
    text: str
    check: Callable[[str], bool]
    apply: Callable[[str], str]
    suits: Callable[[str], bool] = lambda gold: True


FORMATS: dict[str, Format] = {
    f.id: f
    for f in (
        Format(
            "capitals", "Answer in capital letters only.", all_upper, str.upper, lambda g: any(c.isalpha() for c in g)
        ),
        Format(
            "lowercase",
            "Answer in lowercase letters only.",
            all_lower,
            str.lower,
            lambda g: any(c.isalpha() for c in g),
        ),
        Format("one_word", "Answer in one word.", one_word, lambda g: g, lambda g: " " not in g.strip()),
        Format(
            "json",
            'Answer in JSON with the key "answer".',
            lambda t: json_with_key(t, "answer"),
            lambda g: json.dumps({"answer": g}),
        ),
        Format(
            "prefix", "Start your answer with 'Answer:'.", lambda t: starts_with(t, "Answer:"), lambda g: f"Answer: {g}"
        ),
        Format(
            "no_commas",
            "Do not use any commas in your answer.",
            lambda t: bool(t.strip()) and "," not in t,
            lambda g: g,
            lambda g: "," not in g,
        ),
        Format(
            "quotes",
            "Wrap your answer in double quotation marks.",
            lambda t: wrapped_in(t, '"', '"'),
            lambda g: f'"{g}"',
        ),
    )
}

SPLIT_SIZES = {"train": 600, "validation": 200, "test": 400}
KINDS = ("bio", "schedule", "recipe", "product", "report")


@dataclass(frozen=True)
class ContextQAExample(TaskExample):
    """A document, a question answered in it, and an emphasised format instruction."""

    kind: str = ""
    document: str = ""
    question: str = ""
    answers: tuple[str, ...] = ()
    distractors: tuple[str, ...] = ()
    format_id: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.format_id not in FORMATS:
            raise ValueError(f"Unknown format {self.format_id!r}; use one of {tuple(FORMATS)}.")
        if not self.document.strip() or not self.question.strip() or not self.answers:
            raise ValueError(f"Context-QA example {self.uid} needs a document, a question and accepted answers.")

    @property
    def gold(self) -> str:
        return self.answers[0]


def _bio_pool(split: str) -> list:
    return synthetic_biographies(split, 300, seed=7) + implied_biographies(split, 300, seed=7)


def make_example(rng: random.Random, uid: str, kind: str, split: str) -> ContextQAExample:
    """One seeded example of document ``kind``."""
    questions: list[Question] = []
    while not questions:
        if kind == "bio":
            bio = rng.choice(_bio_pool(split))
            document, questions = bio.context, bio_questions(bio)
        else:
            document, questions = GENERATORS[kind](rng)
    q = rng.choice(questions)
    fmt = rng.choice([f for f in FORMATS.values() if f.suits(q.gold)])
    return ContextQAExample(
        uid=uid,
        source="synthetic",
        kind=kind,
        document=document,
        question=q.text,
        answers=q.answers,
        distractors=q.distractors,
        format_id=fmt.id,
    )


def context_qa_examples(split: str = "train", n: int | None = None, seed: int = 0) -> list[ContextQAExample]:
    """The examples of ``split``; ``seed`` chooses and orders ``n`` of them.

    Example:
        >>> ex = context_qa_examples("validation", n=1)[0]
        >>> ex.question, ex.gold, ex.format_id
    """
    check_split(split)
    return seeded_sample(_all_examples(split), n, seed, f"context-qa-{split}")


@functools.lru_cache(maxsize=3)
def _all_examples(split: str) -> tuple[ContextQAExample, ...]:
    """The split's fixed list; a document drawn again that an earlier split (train, then validation) holds is
    drawn anew, so no document is in two splits."""
    earlier = {"train": (), "validation": ("train",), "test": ("train", "validation")}[split]
    taken = {e.document for s in earlier for e in _all_examples(s)}
    rng, out = random.Random(f"context-qa:{split}"), []
    for i in range(SPLIT_SIZES[split]):
        example = make_example(rng, f"context_qa:{split}:{i}", KINDS[i % len(KINDS)], split)
        while example.document in taken:
            example = make_example(rng, f"context_qa:{split}:{i}", KINDS[i % len(KINDS)], split)
        out.append(example)
    return tuple(out)


def _n_words(text: str) -> int:
    return len([w for w in word_tokens(text) if w[0].isalnum()])


class ContextQATask(Task[ContextQAExample]):
    """Context QA with an emphasised format instruction; answer correctness and format followed, apart.

    Example:
        >>> task = get_task("context_qa")
        >>> ex = task.examples("validation", n=1)[0]
        >>> task.score(ex, task.answer(ex))
        {'correct': 1.0, 'format': 1.0, 'both': 1.0}
    """

    name = "context_qa"
    chat = True
    metrics = ("correct", "format", "both")
    average_metrics = ("correct", "format")
    max_new_tokens = 48

    def examples(self, split: str = "train", n: int | None = None, seed: int = 0) -> list[ContextQAExample]:
        return context_qa_examples(split, n, seed)

    def prompt(self, example: ContextQAExample, variant: str = "default") -> str:
        self.check_variant(variant)
        return (
            f"{escape_markup(example.document)}\n\nQuestion: {escape_markup(example.question)} "
            f"*{escape_markup(FORMATS[example.format_id].text)}*"
        )

    def answer(self, example: ContextQAExample) -> str:
        """The gold answer in the asked format (the profiling target)."""
        return FORMATS[example.format_id].apply(example.gold)

    def focus_text(self, example: ContextQAExample) -> str | None:
        """The gold value as it is written inside the formatted answer (the content the answer must get right)."""
        fmt = example.format_id
        return (
            example.gold.upper() if fmt == "capitals" else example.gold.lower() if fmt == "lowercase" else example.gold
        )

    def metrics_from(self, example: ContextQAExample, results: dict[str, Any]) -> dict[str, float]:
        out = str(results["output"])
        correct = (
            answer_found(out, example.answers, example.distractors)
            and _n_words(out) <= MAX_WORDS
            and content_kept(out, example.document) < MAX_KEPT
        )
        followed = FORMATS[example.format_id].check(out)
        return {"correct": float(correct), "format": float(followed), "both": float(correct and followed)}
