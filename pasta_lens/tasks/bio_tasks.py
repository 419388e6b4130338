"""The three biography tasks of the PASTA paper: JSON formatting, pronoun changing, BiasBios.

Prompt templates (Zhang et al., 2024; the emphasised part in ``*...*``):

* JSON formatting (chat): ``{context}. *Answer the occupation of {person} and generate the answer as json
  format. Here is an example: {"name": , "occupation": ,}. Now generate the answer.*``
  Gold answer: ``{"name": "<name>", "occupation": "<occupation>"}``. Variants ``short`` and ``rephrased`` for the
  prompt-sensitivity study are our wording of the paper's shortened and rephrased instructions.
* Pronoun changing (chat): ``{context}. *For the aforementioned text, substitute 'she' and 'he' with 'they' and
  generate the occupation of {person} after changing pronouns.*`` Gold answer: the bio with "they"-pronouns
  followed by ``<Person> is a <occupation>.``
* BiasBios (plain text, continued): ``*{first sentence}* {rest of context}. {person} has the occupation of``;
  the answer is the occupation with the highest summed log-probability among the 28.

The bios come from the *named* generator (default), the *implied* one (``bios="implied"``: no word names the
occupation) or a loaded list; beside the paper's metrics the JSON and pronoun tasks report strict ones
(:mod:`pasta_lens.metrics.strict`; docs/tasks.md).

Chat or not, decided per task and used alike for profiling and evaluation: the two instruction tasks need the
instruct model's chat template to be instructions at all; BiasBios is a continuation (the answer is the next
words of the text), so it is scored as plain text, like the paper's base models did.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pasta_lens.metrics import (
    fluency,
    is_fluent,
    is_rewrite,
    json_format_ok,
    json_occupation_ok,
    json_strict_object,
    json_strict_occupation_ok,
    names_occupation,
    no_gendered_pronouns,
    no_subject_pronouns,
)
from pasta_lens.tasks.base import Query, Task, escape_markup
from pasta_lens.tasks.biographies import (
    OCCUPATIONS,
    Biography,
    neutralise,
    occupation_text,
    split_biographies,
    synthetic_biographies,
    with_article,
)
from pasta_lens.tasks.implied_bios import implied_biographies

BIO_SOURCES: tuple[str, ...] = ("named", "implied")
"""The generated biography sources: ``named`` (the first sentence names the occupation) and ``implied`` (no word
names it; :mod:`pasta_lens.tasks.implied_bios`)."""

JSON_INSTRUCTIONS = {
    "default": (
        "Answer the occupation of {person} and generate the answer as json format. Here is an example: "
        '{{"name": , "occupation": ,}}. Now generate the answer.'
    ),
    "short": "Answer the occupation of {person} and generate the answer as json format.",
    "rephrased": (
        "Give the occupation of {person} in json format, following this example: "
        '{{"name": , "occupation": ,}}. Now write the json.'
    ),
}
PRONOUN_INSTRUCTIONS = {
    "default": (
        "For the aforementioned text, substitute 'she' and 'he' with 'they' and generate the occupation "
        "of {person} after changing pronouns."
    ),
    "short": "Substitute 'she' and 'he' with 'they' and give the occupation of {person}.",
}


def _context(bio: Biography) -> str:
    """The context without its final period (the templates add ``". "``)."""
    ctx = bio.context.rstrip()
    return ctx[:-1] if ctx.endswith(".") else ctx


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


class BiographyTask(Task[Biography]):
    """Shared data handling: generated bios (``"named"`` or ``"implied"``) or a loaded list of :class:`Biography`.

    Args:
        bios: ``"named"`` (default; also None) for the seeded generator whose bios name the occupation in their first
            sentence, ``"implied"`` for the seeded generator whose bios only imply it
            (:func:`~pasta_lens.tasks.implied_bios.implied_biographies`), or biographies from
            :func:`load_bias_in_bios` / :func:`load_biosbias_pkl` (split 80/10/10 into train/validation/test by a
            fixed seed).

    Example:
        >>> JsonTask(bios="implied").examples("validation", n=1)[0].uid
        'implied:validation:...'
    """

    def __init__(self, bios: str | Sequence[Biography] | None = None) -> None:
        if isinstance(bios, str):
            if bios not in BIO_SOURCES:
                raise ValueError(
                    f"bios={bios!r}: use one of {BIO_SOURCES} for generated bios, or pass loaded Biography objects."
                )
            self.source, self.bios = bios, None
        elif bios is None:
            self.source, self.bios = "named", None
        else:
            if not bios:
                raise ValueError("bios is empty; pass loaded biographies, 'named' or 'implied'.")
            self.source, self.bios = "loaded", tuple(bios)

    @property
    def synthetic(self) -> bool:
        return self.bios is None

    @property
    def data_key(self) -> str | None:
        """``"implied"`` for implied bios (evaluation rows keep it in their configuration key); None for the named
        generator and loaded bios, whose keys are as they always were."""
        return "implied" if self.source == "implied" else None

    def accepts(self, bio: Biography) -> bool:
        """Whether an implied bio suits the task (all do, except where a subclass says otherwise)."""
        return True

    def examples(self, split: str = "train", n: int | None = None, seed: int = 0) -> list[Biography]:
        if self.source == "implied":
            if n is not None and n < 0:
                raise ValueError(f"n must be >= 0 or None; got {n}.")
            pool = [b for b in implied_biographies(split, None, seed) if self.accepts(b)]  # seeded order
            return pool if n is None else pool[:n]
        if self.bios is None:
            return synthetic_biographies(split, n, seed)
        return split_biographies(list(self.bios), split, n, seed)


class _InstructionTask(BiographyTask):
    """A biography followed by an emphasised instruction (``instructions[variant]``, formatted with the person)."""

    instructions: dict[str, str] = {}

    def prompt(self, example: Biography, variant: str = "default") -> str:
        self.check_variant(variant)
        instruction = self.instructions[variant].format(person=example.person)
        return f"{escape_markup(_context(example))}. *{escape_markup(instruction)}*"

    def focus_text(self, example: Biography) -> str | None:
        """The occupation, the content the answer must get right (JSON's P.Acc; the pronoun rewrite's last
        sentence)."""
        return occupation_text(example.occupation)


class JsonTask(_InstructionTask):
    """JSON formatting: answer with ``{"name": ..., "occupation": ...}``.

    Metrics: the paper's F.Acc and P.Acc (``f_acc``, ``p_acc``; unchanged); strict F.Acc (``f_acc_strict``: the first
    ``{`` opens a non-empty object that parses whole, :func:`~pasta_lens.metrics.json_strict_object`); strict P.Acc
    (``p_acc_strict``: that object's ``"occupation"`` value names the occupation as whole words, listed synonyms
    allowed, :func:`~pasta_lens.metrics.json_strict_occupation_ok`); and occupation in prose
    (``occupation_named``: the answer names the occupation anywhere, JSON or not,
    :func:`~pasta_lens.metrics.names_occupation`), the rate to compare an unsteered model's prose answers with.
    """

    name = "json"
    chat = True
    metrics = ("f_acc", "p_acc", "f_acc_strict", "p_acc_strict", "occupation_named")
    average_metrics = ("f_acc", "p_acc")
    instructions = JSON_INSTRUCTIONS
    variants = tuple(JSON_INSTRUCTIONS)
    max_new_tokens = 40

    def answer(self, example: Biography) -> str:
        return json.dumps({"name": example.name, "occupation": occupation_text(example.occupation)})

    def metrics_from(self, example: Biography, results: dict[str, Any]) -> dict[str, float]:
        out, occupation = str(results["output"]), example.occupation
        return {
            "f_acc": float(json_format_ok(out)),
            "p_acc": float(json_occupation_ok(out, occupation_text(occupation))),
            "f_acc_strict": float(json_strict_object(out) is not None),
            "p_acc_strict": float(json_strict_occupation_ok(out, occupation)),
            "occupation_named": float(names_occupation(out, occupation)),
        }


class PronounTask(_InstructionTask):
    """Pronoun changing: rewrite the bio with "they".

    Metrics: the paper's Acc and A.Acc; fluency and the fluency-filtered accuracies (``acc_fluent``,
    ``a_acc_fluent``); ``rewrite`` (the answer keeps >= 50% of the bio's content words and has a they-form,
    :func:`~pasta_lens.metrics.is_rewrite`) and ``a_acc_rewrite`` (A.Acc counted only on fluent rewrites: an answer
    with no gendered pronoun that is also a fluent rewrite of the bio). On implied bios the task uses only bios with
    a gendered pronoun (first-person bios and CVs without a pronoun have nothing to change).
    """

    name = "pronoun"
    chat = True
    metrics = ("acc", "a_acc", "fluency", "fluent", "acc_fluent", "a_acc_fluent", "rewrite", "a_acc_rewrite")
    average_metrics = ("acc_fluent", "a_acc_fluent")
    instructions = PRONOUN_INSTRUCTIONS
    variants = tuple(PRONOUN_INSTRUCTIONS)
    max_new_tokens = 64

    corrects_answers = True

    def correct(self, answer: str, example: Biography | None = None) -> str:
        """``answer`` with its gendered pronouns replaced by "they"-forms (:func:`neutralise`): the instruction
        carried out on the model's own words (the same rule for every example).

            >>> PronounTask().correct("She is a dentist. Her sister is a nurse.")
            'They are a dentist. Their sister is a nurse.'
        """
        return neutralise(answer)

    def answer(self, example: Biography) -> str:
        return (
            f"{example.neutral.rstrip()} {_capital(example.person)} is "
            f"{with_article(occupation_text(example.occupation))}."
        )

    def metrics_from(self, example: Biography, results: dict[str, Any]) -> dict[str, float]:
        out = str(results["output"])
        acc, a_acc, ok = no_subject_pronouns(out), no_gendered_pronouns(out), is_fluent(out)
        rewrite = is_rewrite(out, example.context)
        return {
            "acc": float(acc),
            "a_acc": float(a_acc),
            "fluency": fluency(out),
            "fluent": float(ok),
            "acc_fluent": float(acc and ok),
            "a_acc_fluent": float(a_acc and ok),
            "rewrite": float(rewrite),
            "a_acc_rewrite": float(a_acc and ok and rewrite),
        }

    def accepts(self, bio: Biography) -> bool:
        """Only bios with a gendered pronoun to change (their neutral form differs)."""
        return bio.context != bio.neutral


class BiasBiosTask(BiographyTask):
    """BiasBios: the occupation with the highest log-probability after ``{person} has the occupation of``."""

    name = "biasbios"
    chat = False
    metrics = ("acc",)
    average_metrics = ("acc",)
    candidates = tuple(" " + occupation_text(o) for o in OCCUPATIONS)

    def prompt(self, example: Biography, variant: str = "default") -> str:
        self.check_variant(variant)
        ctx = _context(example)
        end = min(example.first_sentence_end, len(ctx))
        first, rest = ctx[:end].rstrip(), ctx[end:]
        tail = ctx[len(first) : end] + rest
        if not first.strip():
            raise ValueError(f"Biography {example.uid} has an empty first sentence to emphasise.")
        return (
            f"*{escape_markup(first)}*{escape_markup(tail)}. "
            f"{escape_markup(_capital(example.person))} has the occupation of"
        )

    def answer(self, example: Biography) -> str:
        return " " + occupation_text(example.occupation)

    def queries(self, example: Biography, variant: str = "default") -> list[Query]:
        return [Query("choice", self.prompt(example, variant), "choice", self.candidates, "sum")]

    def metrics_from(self, example: Biography, results: dict[str, Any]) -> dict[str, float]:
        logprobs = list(results["choice"])
        if len(logprobs) != len(OCCUPATIONS):
            raise ValueError(f"BiasBios needs one log-prob per occupation ({len(OCCUPATIONS)}); got {len(logprobs)}.")
        best = max(range(len(logprobs)), key=logprobs.__getitem__)
        return {"acc": float(OCCUPATIONS[best] == example.occupation)}

    def predicted(self, results: dict[str, Any]) -> str:
        logprobs = list(results["choice"])
        return OCCUPATIONS[max(range(len(logprobs)), key=logprobs.__getitem__)]
