"""General instruction following: a request and one or two emphasised, programmatically checkable instructions.

    Write a short email inviting your team to a picnic on Saturday. *Do not use any commas in your answer.*

The prompts are made here from :data:`~pasta_lens.tasks.requests.REQUESTS` (60 requests: stories, emails, passage
summaries, questions on a context, descriptions, advice) and :data:`~pasta_lens.tasks.instruction_catalog.TYPES`
(21 instruction types); about a third of the prompts carry two instructions. Splits are **by instruction type**
(train 8 types, validation 6, test 7; disjoint), so test measures instructions that no profile saw; each split is a
fixed seeded list (train 400, validation 240, test 350 prompts).

Metrics of one answer (IFEval's definitions; loose = the checker accepts the answer or one of its variants without
its first/last line or markdown ``*``, :func:`~pasta_lens.metrics.loose_variants`):

* ``prompt_strict`` / ``prompt_loose``: every instruction of the prompt is followed (prompt-level accuracy);
* ``inst_strict`` / ``inst_loose``: the fraction of its instructions followed (instruction-level accuracy, as a
  mean over prompts: each prompt weighs the same);
* ``attempt``: the answer is a real attempt at the request, fluent (:func:`~pasta_lens.metrics.is_fluent`) and on
  topic (it uses one of the request's topic words), so that "ok", a loop or an empty answer does not count;
* ``prompt_loose_attempt``: both (the headline: an instruction followed by an answer that is no answer measures
  nothing, and "no commas" or "fewer than 15 words" are followed by "ok");
* ``fluency``: ROME's n-gram entropy.

Each row also keeps ``type:<id>`` = 1/0 per instruction (loose), read by :func:`type_accuracy`.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pasta_lens.metrics import fluency, is_fluent, loose_variants
from pasta_lens.tasks.base import Task, TaskExample, check_split, escape_markup
from pasta_lens.tasks.instruction_catalog import BY_ID, SPLIT_TYPES, InstructionType
from pasta_lens.tasks.requests import REQUESTS

SPLIT_SIZES = {"train": 400, "validation": 240, "test": 350}
PAIR_RATE = 0.35
REWRITE_ORDER = (
    "start_phrase",
    "end_phrase",
    "no_comma",
    "lowercase",
    "uppercase",
    "quotation",
    "square_brackets",
    "json_format",
)
"""The order in which rewrites are applied: phrases, then commas and case, then the wrappers."""


@dataclass(frozen=True)
class InstructionExample(TaskExample):
    """One prompt: a request and its instructions.

    Attributes:
        request: the request text.
        words: the request's topic words (the on-topic check).
        types: the instruction type ids (one or two).
        texts: the instruction texts as shown (emphasised).
        params_json: the instructions' arguments, a JSON list of dicts (one per type).
        before: whether the instructions come before the request.
    """

    request: str = ""
    words: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    texts: tuple[str, ...] = ()
    params_json: str = "[]"
    before: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.types or len(self.types) != len(self.texts) or any(t not in BY_ID for t in self.types):
            raise ValueError(
                f"Instruction example {self.uid}: types {self.types} must be known instruction types, one text each."
            )
        if len(json.loads(self.params_json)) != len(self.types):
            raise ValueError(f"Instruction example {self.uid}: one parameter dict per instruction type.")

    @property
    def params(self) -> list[dict[str, Any]]:
        return json.loads(self.params_json)


def _instruction(kind: InstructionType, rng: random.Random, request: Any) -> tuple[str, dict[str, Any]]:
    params = kind.params(rng, request)
    return rng.choice(kind.wordings).format(**params), params


def make_example(rng: random.Random, uid: str, first: str, pool: Sequence[str]) -> InstructionExample:
    """One seeded prompt whose first instruction is of type ``first`` (and maybe a second from ``pool``)."""
    kinds = [BY_ID[first]]
    if rng.random() < PAIR_RATE:
        partners = [BY_ID[t] for t in pool if not BY_ID[t].conflicts(kinds[0])]
        if partners:
            kinds.append(rng.choice(partners))
    requests = [r for r in REQUESTS if not (any(k.needs_short_request for k in kinds) and r.has_passage)]
    request = rng.choice(requests)
    made = [_instruction(k, rng, request) for k in kinds]
    return InstructionExample(
        uid=uid,
        source="generated",
        request=request.text,
        words=request.words,
        types=tuple(k.id for k in kinds),
        texts=tuple(t for t, _ in made),
        params_json=json.dumps([p for _, p in made]),
        before=rng.random() < 0.25,
    )


def instruction_examples(split: str = "train", n: int | None = None, seed: int = 0) -> list[InstructionExample]:
    """The prompts of ``split`` (instruction types of that split only), ``n`` of them chosen and ordered by ``seed``.

    Example:
        >>> ex = instruction_examples("test", n=1)[0]
        >>> ex.types   # e.g. ('postscript',): a type that no train or validation prompt carries
    """
    from pasta_lens.tasks.base import seeded_sample

    check_split(split)
    return seeded_sample(_all_examples(split), n, seed, f"instructions-{split}")


@functools.lru_cache(maxsize=3)
def _all_examples(split: str) -> tuple[InstructionExample, ...]:
    rng = random.Random(f"instructions:{split}")
    types = SPLIT_TYPES[split]
    return tuple(
        make_example(rng, f"instructions:{split}:{i}", types[i % len(types)], types) for i in range(SPLIT_SIZES[split])
    )


def on_topic(answer: str, words: Sequence[str]) -> bool:
    """Whether the answer uses one of the topic words (as the start of a word: "dogs" counts for "dog")."""
    low = answer.lower()
    return any(re.search(r"(?<![a-z])" + re.escape(w), low) for w in words)


def type_accuracy(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Loose accuracy per instruction type from evaluation rows of this task (their ``type:<id>`` metrics).

    Example:
        >>> type_accuracy(res.rows)   # e.g. {'postscript': 0.35, 'title': 0.1, ...}
    """
    seen: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.get("metrics", {}).items():
            if key.startswith("type:"):
                seen.setdefault(key[5:], []).append(float(value))
    return {k: sum(v) / len(v) for k, v in sorted(seen.items())}


class InstructionTask(Task[InstructionExample]):
    """General instruction following over written requests; splits by instruction type (see the module docstring).

    Example:
        >>> task = get_task("instructions")
        >>> ex = task.examples("validation", n=1)[0]
        >>> task.score(ex, "SURE. HERE IS A SHORT ANSWER ABOUT THE SEA AND THE SKY.")["prompt_loose"]
    """

    name = "instructions"
    chat = True
    metrics = (
        "prompt_strict",
        "prompt_loose",
        "inst_strict",
        "inst_loose",
        "attempt",
        "prompt_loose_attempt",
        "fluency",
    )
    average_metrics = ("prompt_loose_attempt",)
    max_new_tokens = 96

    def examples(self, split: str = "train", n: int | None = None, seed: int = 0) -> list[InstructionExample]:
        return instruction_examples(split, n, seed)

    def prompt(self, example: InstructionExample, variant: str = "default") -> str:
        self.check_variant(variant)
        marked = " ".join(f"*{escape_markup(t)}*" for t in example.texts)
        request = escape_markup(example.request)
        return f"{marked}\n\n{request}" if example.before else f"{request}\n\n{marked}"

    def followed(self, example: InstructionExample, answer: str) -> list[tuple[bool, bool]]:
        """``(strict, loose)`` of each instruction of ``example`` on ``answer``."""
        variants = [v for v in loose_variants(answer) if v.strip()]
        out = []
        for type_id, params in zip(example.types, example.params):
            check = BY_ID[type_id].check
            strict = bool(answer.strip()) and check(answer, params)
            out.append((strict, strict or any(check(v, params) for v in variants)))
        return out

    def metrics_from(self, example: InstructionExample, results: dict[str, Any]) -> dict[str, float]:
        out = str(results["output"])
        done = self.followed(example, out)
        strict, loose = [s for s, _ in done], [lo for _, lo in done]
        attempt = is_fluent(out) and on_topic(out, example.words)
        metrics = {
            "prompt_strict": float(all(strict)),
            "prompt_loose": float(all(loose)),
            "inst_strict": sum(strict) / len(strict),
            "inst_loose": sum(loose) / len(loose),
            "attempt": float(attempt),
            "prompt_loose_attempt": float(all(loose) and attempt),
            "fluency": fluency(out),
        }
        metrics.update({f"type:{t}": float(lo) for t, lo in zip(example.types, loose)})
        return metrics

    # ----------------------------------------------------------------------------- profiling and own answers
    def opening(self, example: InstructionExample) -> str | None:
        """What every answer that follows ``example``'s instructions starts with, when its instructions fix one
        (a start phrase, ``"``, ``{``, ``[``, ``<<``, ``SECTION 1``, the repeated request); else None."""
        for type_id, params in zip(example.types, example.params):
            opening = BY_ID[type_id].opening
            if opening is not None:
                return opening(params)
        return None

    def answer(self, example: InstructionExample) -> str:
        """The gold *opening* of the answer (:meth:`opening`): the profiling target; the task has no full gold
        answers, so examples without an opening have none (and :meth:`profiling_examples` skips them)."""
        opening = self.opening(example)
        if opening is None:
            raise ValueError(
                f"{example.uid} ({', '.join(example.types)}) fixes no opening of the answer: it has no "
                "gold answer. Profile on examples with one (profiling_examples picks them)."
            )
        return opening

    def demos(self, n: int = 3, seed: int = 0) -> tuple[tuple[str, str], ...]:
        raise ValueError(
            "The instructions task has no full gold answers to show as demonstrations; evaluate it "
            "without the few-shot method."
        )

    def profiling_examples(
        self,
        model: Any,
        split: str = "train",
        n: int = 32,
        seed: int = 0,
        variant: str = "default",
        end_turn: bool = False,
    ) -> list:
        """``n`` profiling examples from the prompts of ``split`` whose instructions fix an opening (target: that
        opening; never the test split)."""
        if split == "test":
            raise ValueError(
                "Profiling on the test split would leak it into the reported results; use "
                "split='train' (or 'validation')."
            )
        chosen = [ex for ex in self.examples(split, None, seed) if self.opening(ex) is not None][:n]
        return [self.profiling_example(model, ex, variant, end_turn=False) for ex in chosen]

    def corrector(self, example: InstructionExample) -> Callable[[str], str] | None:
        """The rule that carries out every instruction of ``example`` on an answer, or None when one of them has no
        rewrite (keywords, lengths, counts, ...)."""
        if any(BY_ID[t].rewrite is None for t in example.types):
            return None
        return lambda answer: self.correct(answer, example)

    def correct(self, answer: str, example: TaskExample | None = None) -> str:
        """``answer`` with ``example``'s instructions carried out (phrases added, commas removed, case changed,
        wrapped in quotes / brackets / JSON), in :data:`REWRITE_ORDER`.

            >>> task.correct("Hi, all.", ex)   # ex: lowercase + no_comma
            'hi all.'
        """
        if not isinstance(example, InstructionExample):
            raise ValueError(
                "The instructions task corrects an answer for one example: pass example= (its rule "
                "depends on the example's instructions; task.corrector(example) gives it as a function)."
            )
        pairs = sorted(
            zip(example.types, example.params),
            key=lambda tp: REWRITE_ORDER.index(tp[0]) if tp[0] in REWRITE_ORDER else len(REWRITE_ORDER),
        )
        for type_id, params in pairs:
            rewrite = BY_ID[type_id].rewrite
            if rewrite is None:
                raise ValueError(
                    f"{example.uid}: the instruction {type_id!r} cannot be carried out by a rewrite; "
                    "use task.corrector(example), which is None for such examples."
                )
            answer = rewrite(answer, params)
        return answer
