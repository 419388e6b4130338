"""The biography example and its labels: one bio with one of the 28 BiasBios occupations and a gender.

The JSON, pronoun and BiasBios tasks all read a :class:`Biography`, whichever source made it: the named generator
(:mod:`pasta_lens.tasks.named_bios`), the implied one (:mod:`pasta_lens.tasks.implied_bios`) or a real BiasBios
export (:mod:`pasta_lens.tasks.real_bios`). :data:`OCCUPATIONS` are the 28 labels in ``LabHC/bias_in_bios``'s
order; :func:`occupation_text` and :func:`with_article` write one in prose.

Example:
    >>> with_article(occupation_text("interior_designer"))
    'an interior designer'
"""

from __future__ import annotations

from dataclasses import dataclass

from pasta_lens.tasks.base import TaskExample

OCCUPATIONS: tuple[str, ...] = (
    "accountant",
    "architect",
    "attorney",
    "chiropractor",
    "comedian",
    "composer",
    "dentist",
    "dietitian",
    "dj",
    "filmmaker",
    "interior_designer",
    "journalist",
    "model",
    "nurse",
    "painter",
    "paralegal",
    "pastor",
    "personal_trainer",
    "photographer",
    "physician",
    "poet",
    "professor",
    "psychologist",
    "rapper",
    "software_engineer",
    "surgeon",
    "teacher",
    "yoga_teacher",
)
"""The 28 BiasBios occupations; the position is ``LabHC/bias_in_bios``'s ``profession`` label."""


def occupation_text(occupation: str) -> str:
    """How an occupation is written in prose.

    ``"software_engineer"`` -> ``"software engineer"``, ``"dj"`` -> ``"DJ"``.
    """
    return "DJ" if occupation == "dj" else occupation.replace("_", " ")


def with_article(phrase: str) -> str:
    """``"nurse"`` -> ``"a nurse"``, ``"accountant"`` -> ``"an accountant"``."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


@dataclass(frozen=True)
class Biography(TaskExample):
    """One biography.

    Attributes:
        name: the person's name ("" when the source has none: ``LabHC/bias_in_bios``).
        occupation: one of :data:`OCCUPATIONS`.
        gender: ``"F"``, ``"M"`` or ``""`` (unknown).
        context: the biography text.
        first_sentence_end: ``context[:first_sentence_end]`` is its first sentence (emphasised in BiasBios).
        neutral: the biography with gender-neutral pronouns (exact for synthetic bios; a word-level
            substitution, see :func:`~pasta_lens.tasks.real_bios.neutralise`, for real ones).
        style: how an implied bio is written (``"third/long"``, ``"cv/short"``, ...; see
            :mod:`pasta_lens.tasks.implied_bios`); "" for named and real bios.
    """

    name: str = ""
    occupation: str = ""
    gender: str = ""
    context: str = ""
    first_sentence_end: int = 0
    neutral: str = ""
    style: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.occupation not in OCCUPATIONS:
            raise ValueError(
                f"Unknown occupation {self.occupation!r}; use one of the 28 BiasBios occupations {OCCUPATIONS}."
            )
        if self.gender not in ("F", "M", ""):
            raise ValueError(f"Biography.gender must be 'F', 'M' or ''; got {self.gender!r}.")
        if not self.context.strip():
            raise ValueError("Biography.context is empty; give the biography text.")
        if not 0 < self.first_sentence_end <= len(self.context):
            raise ValueError(
                f"first_sentence_end={self.first_sentence_end} is outside the context (length {len(self.context)})."
            )

    @property
    def person(self) -> str:
        """The name, or "this person" for anonymous bios."""
        return self.name or "this person"

    @property
    def first_sentence(self) -> str:
        return self.context[: self.first_sentence_end]
