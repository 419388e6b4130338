"""The verifiable instruction types of the instruction-following task, each with its split, wording and checker.

21 language-free types. Each type belongs to exactly one split (:data:`SPLIT_TYPES`), so the test split measures
instruction types no profile was trained or selected on:

========== =====================================================================================================
train      lowercase, no_comma, start_phrase, end_phrase, quotation, json_format, include_keywords, max_words
validation uppercase, forbidden_words, bullet_count, min_words, placeholders, square_brackets
test       postscript, title, keyword_frequency, sentence_count, no_digits, sections, repeat_request
========== =====================================================================================================

A type has two or three wordings (chosen per prompt), arguments drawn per prompt (a phrase, a number, keywords from
the request's topic words), its checker (an IFEval id from ``if-verifiable``, or a checker of
:mod:`pasta_lens.metrics.instructions`), the parts of an answer it *claims* (two instructions of one prompt never
claim the same part: no "start with X" beside "wrap it in quotes"), the *opening* every correct answer starts with
where there is one (a profiling target), and, where the instruction can be carried out on any answer, its
*rewrite* (lower-casing, removing commas, adding the phrase, wrapping), applied by ``InstructionTask.correct``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pasta_lens.metrics import all_lower, all_upper, ifeval_check, no_digits, sentence_count, starts_with, wrapped_in
from pasta_lens.tasks.requests import Request

START_PHRASES = ("Here is my answer:", "Simply put", "To begin with", "Good question.", "Dear reader")
END_PHRASES = (
    "Is there anything else I can help with?",
    "That is all.",
    "Thank you for reading.",
    "Let me know if you have questions.",
)


@dataclass(frozen=True)
class InstructionType:
    """One kind of verifiable instruction (see the module docstring)."""

    id: str
    split: str
    wordings: tuple[str, ...]
    params: Callable[[random.Random, Request], dict[str, Any]]
    check: Callable[[str, dict[str, Any]], bool]
    claims: frozenset[str] = frozenset()
    opening: Callable[[dict[str, Any]], str] | None = None
    rewrite: Callable[[str, dict[str, Any]], str] | None = None
    needs_short_request: bool = False

    def __post_init__(self) -> None:
        if self.split not in ("train", "validation", "test"):
            raise ValueError(f"Instruction type {self.id!r}: split must be train, validation or test.")
        if not self.wordings:
            raise ValueError(f"Instruction type {self.id!r} needs at least one wording.")

    def conflicts(self, other: InstructionType) -> bool:
        """Whether the two cannot share a prompt (same type, or both claim a part of the answer)."""
        return self.id == other.id or "all" in self.claims | other.claims or bool(self.claims & other.claims)


def _lib(instruction_id: str, keys: tuple[str, ...] = ()) -> Callable[[str, dict[str, Any]], bool]:
    """A checker that runs IFEval's ``instruction_id`` with the prompt's arguments named in ``keys``."""
    return lambda text, p: ifeval_check(instruction_id, {k: p[k] for k in keys}, text)


def _none(rng: random.Random, request: Request) -> dict[str, Any]:
    return {}


def _two_words(rng: random.Random, request: Request) -> dict[str, Any]:
    return {"words": sorted(rng.sample(request.words, 2))}


def _remove_commas(text: str, p: dict[str, Any]) -> str:
    return re.sub(r"\s*,\s*", " ", text).strip()


TYPES: tuple[InstructionType, ...] = (
    # ------------------------------------------------------------------------------------------------- train
    InstructionType(
        "lowercase",
        "train",
        (
            "Write your whole answer in lowercase letters only, with no capital letters.",
            "Use only lowercase letters in your entire answer.",
            "Do not use any capital letters in your answer.",
        ),
        _none,
        lambda t, p: all_lower(t),
        frozenset({"case"}),
        rewrite=lambda t, p: t.lower(),
    ),
    InstructionType(
        "no_comma",
        "train",
        (
            "Do not use any commas in your answer.",
            "Write your answer without a single comma.",
            "Your answer must not contain any commas.",
        ),
        _none,
        _lib("punctuation:no_comma"),
        frozenset({"comma"}),
        rewrite=_remove_commas,
    ),
    InstructionType(
        "start_phrase",
        "train",
        (
            "Begin your answer with the exact words '{phrase}'.",
            "Your answer must start with '{phrase}'.",
            "Start your reply with the phrase '{phrase}'.",
        ),
        lambda rng, r: {"phrase": rng.choice(START_PHRASES)},
        lambda t, p: starts_with(t, p["phrase"]),
        frozenset({"start"}),
        opening=lambda p: p["phrase"],
        rewrite=lambda t, p: f"{p['phrase']} {t.strip()}",
    ),
    InstructionType(
        "end_phrase",
        "train",
        (
            "End your answer with the exact phrase '{end_phrase}', with nothing after it.",
            "Finish your reply with the words '{end_phrase}'.",
            "Your last words must be '{end_phrase}'.",
        ),
        lambda rng, r: {"end_phrase": rng.choice(END_PHRASES)},
        _lib("startend:end_checker", ("end_phrase",)),
        frozenset({"end"}),
        rewrite=lambda t, p: f"{t.strip()} {p['end_phrase']}",
    ),
    InstructionType(
        "quotation",
        "train",
        ("Wrap your entire answer in double quotation marks.", "Put your whole reply inside double quotes."),
        _none,
        _lib("startend:quotation"),
        frozenset({"start", "end"}),
        opening=lambda p: '"',
        rewrite=lambda t, p: f'"{t.strip()}"',
    ),
    InstructionType(
        "json_format",
        "train",
        (
            "Give your entire answer in JSON format.",
            "Format your whole reply as a JSON object.",
            "Your answer must be valid JSON and nothing else.",
        ),
        _none,
        _lib("detectable_format:json_format"),
        frozenset({"all"}),
        opening=lambda p: "{",
        rewrite=lambda t, p: json.dumps({"answer": t.strip()}),
    ),
    InstructionType(
        "include_keywords",
        "train",
        (
            "Include the words '{words[0]}' and '{words[1]}' in your answer.",
            "Make sure your answer uses the words '{words[0]}' and '{words[1]}'.",
        ),
        _two_words,
        lambda t, p: ifeval_check("keywords:existence", {"keywords": p["words"]}, t),
        frozenset({"keywords"}),
    ),
    InstructionType(
        "max_words",
        "train",
        ("Answer in fewer than {n} words.", "Keep your answer under {n} words."),
        lambda rng, r: {"n": rng.choice((15, 20, 25, 30))},
        lambda t, p: ifeval_check("length_constraints:number_words", {"relation": "less than", "num_words": p["n"]}, t),
        frozenset({"length"}),
    ),
    # -------------------------------------------------------------------------------------------- validation
    InstructionType(
        "uppercase",
        "validation",
        (
            "Write your whole answer in capital letters only.",
            "Use only CAPITAL letters in your entire answer.",
            "Your answer must be written entirely in uppercase letters.",
        ),
        _none,
        lambda t, p: all_upper(t),
        frozenset({"case"}),
        rewrite=lambda t, p: t.upper(),
    ),
    InstructionType(
        "forbidden_words",
        "validation",
        (
            "Do not use the words '{words[0]}' or '{words[1]}' anywhere in your answer.",
            "Avoid the words '{words[0]}' and '{words[1]}' completely.",
        ),
        _two_words,
        lambda t, p: ifeval_check("keywords:forbidden_words", {"forbidden_words": p["words"]}, t),
        frozenset({"keywords"}),
    ),
    InstructionType(
        "bullet_count",
        "validation",
        (
            "Answer with exactly {n} bullet points, each on its own line starting with '- '.",
            "Your answer must be a list of exactly {n} bullet points that start with '- '.",
        ),
        lambda rng, r: {"n": rng.choice((2, 3, 4))},
        lambda t, p: ifeval_check("detectable_format:number_bullet_lists", {"num_bullets": p["n"]}, t),
        frozenset({"structure"}),
    ),
    InstructionType(
        "min_words",
        "validation",
        ("Answer in at least {n} words.", "Write no fewer than {n} words."),
        lambda rng, r: {"n": rng.choice((40, 50))},
        lambda t, p: ifeval_check("length_constraints:number_words", {"relation": "at least", "num_words": p["n"]}, t),
        frozenset({"length"}),
    ),
    InstructionType(
        "placeholders",
        "validation",
        (
            "Include at least {n} placeholders in square brackets, such as [name].",
            "Your answer must contain at least {n} placeholders written in square brackets, like [address].",
        ),
        lambda rng, r: {"n": rng.choice((2, 3))},
        lambda t, p: ifeval_check("detectable_content:number_placeholders", {"num_placeholders": p["n"]}, t),
        frozenset({"brackets"}),
    ),
    InstructionType(
        "square_brackets",
        "validation",
        ("Put your entire answer inside square brackets.", "Wrap your whole reply in square brackets, [like this]."),
        _none,
        lambda t, p: wrapped_in(t, "[", "]"),
        frozenset({"start", "end", "brackets"}),
        opening=lambda p: "[",
        rewrite=lambda t, p: f"[{t.strip()}]",
    ),
    # -------------------------------------------------------------------------------------------------- test
    InstructionType(
        "postscript",
        "test",
        (
            "At the end of your answer, add a postscript starting with P.S.",
            "Finish with a postscript that begins with P.S.",
        ),
        lambda rng, r: {"marker": "P.S."},
        lambda t, p: ifeval_check("detectable_content:postscript", {"postscript_marker": p["marker"]}, t),
        frozenset({"end"}),
    ),
    InstructionType(
        "title",
        "test",
        (
            "Give your answer a title wrapped in double angular brackets, such as <<my title>>.",
            "Your answer must have a title in double angular brackets, like <<a title>>.",
        ),
        _none,
        _lib("detectable_format:title"),
        frozenset({"title"}),
        opening=lambda p: "<<",
    ),
    InstructionType(
        "keyword_frequency",
        "test",
        (
            "Use the word '{word}' at least {n} times.",
            "The word '{word}' must appear at least {n} times in your answer.",
        ),
        lambda rng, r: {"word": rng.choice(r.words), "n": rng.choice((2, 3))},
        lambda t, p: ifeval_check(
            "keywords:frequency", {"keyword": p["word"], "frequency": p["n"], "relation": "at least"}, t
        ),
        frozenset({"keywords"}),
    ),
    InstructionType(
        "sentence_count",
        "test",
        ("Answer in exactly {n} sentences.", "Write exactly {n} sentences."),
        lambda rng, r: {"n": rng.choice((2, 3))},
        lambda t, p: sentence_count(t) == p["n"],
        frozenset({"structure"}),
    ),
    InstructionType(
        "no_digits",
        "test",
        ("Do not use any digits: write every number out in words.", "Your answer must not contain a single digit."),
        _none,
        lambda t, p: no_digits(t),
        frozenset({"digits"}),
    ),
    InstructionType(
        "sections",
        "test",
        (
            "Divide your answer into {n} sections, and begin each with SECTION X, such as SECTION 1.",
            "Split your reply into {n} parts, each starting with SECTION and its number (SECTION 1, SECTION 2).",
        ),
        lambda rng, r: {"n": 2},
        lambda t, p: ifeval_check(
            "detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": p["n"]}, t
        ),
        frozenset({"structure", "digits"}),
        opening=lambda p: "SECTION 1",
    ),
    InstructionType(
        "repeat_request",
        "test",
        (
            "First repeat the request word for word without change, then give your answer.",
            "Before answering, copy the request exactly as it is written, then answer it.",
        ),
        lambda rng, r: {"request": r.text},
        lambda t, p: ifeval_check("combination:repeat_prompt", {"prompt_to_repeat": p["request"]}, t),
        frozenset({"start", "structure"}),
        opening=lambda p: p["request"],
        needs_short_request=True,
    ),
)
"""Every instruction type, grouped by split."""

BY_ID: dict[str, InstructionType] = {t.id: t for t in TYPES}
SPLIT_TYPES: dict[str, tuple[str, ...]] = {
    s: tuple(t.id for t in TYPES if t.split == s) for s in ("train", "validation", "test")
}
"""The instruction types of each split (disjoint)."""
