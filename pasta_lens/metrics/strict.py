"""Stricter metrics beside the paper's, each built so that the cheapest cheat fails it.

The paper's JSON P.Acc is a case-insensitive *substring* test on any parsed object's string values, and its pronoun
metrics count an answer with no gendered pronoun, so ``"nurse"``, ``"{}"`` or a copy of one word of the input can
score. The metrics here close those doors:

* **strict F.Acc** (:func:`json_strict_object`): the output's *first* ``{`` opens a *non-empty* object that parses
  whole (``json.JSONDecoder.raw_decode`` from that brace; text before and after is allowed).
* **strict P.Acc** (:func:`json_strict_occupation_ok`): that object's ``"occupation"`` value (key matched without
  case or surrounding spaces) is a string that names the occupation as whole words (:func:`names_occupation`).
* **occupation in prose** (:func:`names_occupation`): the text names the occupation anywhere, as whole words, by its
  label or one of the synonyms listed explicitly in :data:`OCCUPATION_NAMES` (an optional plural ``s``; case,
  underscores and hyphens ignored). ``"nursery"`` does not name a nurse, ``"Cardiologist"`` does not name a
  physician: only the listed names count.
* **rewrite** (:func:`is_rewrite`): an answer to "rewrite this bio with *they*" keeps at least half of the bio's
  content words and contains a they-form. With ``K(t)`` the set of content words of ``t`` (lower-cased ``\\w+``
  runs of >= 3 letters, minus :data:`STOPWORDS` and pronouns, a final ``s`` dropped so that "works"/"work" agree)

      kept(answer, bio) = |K(answer) & K(bio)| / |K(bio)|,     rewrite = kept >= 0.5 and a they-form occurs.

  One copied word, the first sentence alone or an empty answer keep far less than half of a bio.
"""

from __future__ import annotations

import json
import re
from typing import Any

OCCUPATION_NAMES: dict[str, tuple[str, ...]] = {
    "accountant": ("accountant", "cpa"),
    "architect": ("architect",),
    "attorney": ("attorney", "lawyer", "barrister", "solicitor", "litigator"),
    "chiropractor": ("chiropractor",),
    "comedian": ("comedian", "comedienne", "comic"),
    "composer": ("composer",),
    "dentist": ("dentist",),
    "dietitian": ("dietitian", "dietician", "nutritionist"),
    "dj": ("dj", "deejay", "disc jockey"),
    "filmmaker": ("filmmaker", "film maker", "film director", "movie director"),
    "interior_designer": ("interior designer", "interior decorator"),
    "journalist": ("journalist", "reporter", "correspondent"),
    "model": ("model",),
    "nurse": ("nurse",),
    "painter": ("painter",),
    "paralegal": ("paralegal", "legal assistant"),
    "pastor": ("pastor", "minister", "preacher", "reverend"),
    "personal_trainer": ("personal trainer", "fitness trainer", "fitness coach", "fitness instructor"),
    "photographer": ("photographer",),
    "physician": ("physician", "doctor", "general practitioner", "internist"),
    "poet": ("poet",),
    "professor": ("professor",),
    "psychologist": ("psychologist", "psychotherapist"),
    "rapper": ("rapper", "emcee"),
    "software_engineer": ("software engineer", "software developer", "programmer"),
    "surgeon": ("surgeon",),
    "teacher": ("teacher", "schoolteacher"),
    "yoga_teacher": ("yoga teacher", "yoga instructor"),
}
"""Each BiasBios occupation's label in prose and the synonyms the strict metrics accept (and nothing else)."""

STOPWORDS = frozenset(
    """
the and for with that this from have has had was were are been being into onto over under about after before
than then them they their theirs themselves she her hers herself his him himself its our ours your yours who whom
whose which what when where while also very more most much many some such each every other another any all both
few own same just only not nor but yet out off who's it's one two three four five six seven eight nine ten
there here how why can could would should will shall may might must does did doing done per via
""".split()
)
"""Words that carry no content of a biography (function words, pronouns, small numbers)."""

THEY_FORMS = ("they", "them", "their", "theirs", "themselves", "themself")

_WORDS = re.compile(r"[A-Za-z]+")


def normalise_text(text: str) -> str:
    """Lower case, underscores and hyphens as spaces, runs of white space as one: how names are compared.

    Example:
        >>> normalise_text("Film-maker  and Software_Engineer")
        'film maker and software engineer'
    """
    return " ".join(re.sub(r"[_\-]", " ", text.lower()).split())


def occupation_names(occupation: str) -> tuple[str, ...]:
    """The names that count for ``occupation`` (a BiasBios label such as ``"software_engineer"``).

    Example:
        >>> occupation_names("dietitian")
        ('dietitian', 'dietician', 'nutritionist')
    """
    key = occupation.strip().lower().replace(" ", "_")
    if key not in OCCUPATION_NAMES:
        raise ValueError(
            f"Unknown occupation {occupation!r}; use one of the 28 BiasBios labels {tuple(OCCUPATION_NAMES)}."
        )
    return OCCUPATION_NAMES[key]


def mentions(text: str, phrases: tuple[str, ...]) -> bool:
    """Whether ``text`` holds one of ``phrases`` as whole words (an optional plural ``s``/``es``), compared after
    :func:`normalise_text`.

    Example:
        >>> mentions("She works with nurses.", ("nurse",)), mentions("a nursery", ("nurse",))
        (True, False)
    """
    norm = normalise_text(text)
    return any(
        re.search(r"(?<![a-z0-9])" + re.escape(normalise_text(p)) + r"(?:e?s)?(?![a-z0-9])", norm)
        for p in phrases
        if p.strip()
    )


def names_occupation(text: str, occupation: str) -> bool:
    """Occupation in prose: ``text`` names ``occupation`` (or a listed synonym) as whole words.

    Example:
        >>> names_occupation("He is a registered nurse.", "nurse"), names_occupation("Cardiologist", "physician")
        (True, False)
    """
    return mentions(text, occupation_names(occupation))


def json_strict_object(text: str) -> dict[str, Any] | None:
    """Strict F.Acc: the object the output's *first* ``{`` opens, when it parses whole and is not empty; else None.

    Example:
        >>> json_strict_object('Sure: {"name": "Ana"} ok')
        {'name': 'Ana'}
        >>> json_strict_object("{}"), json_strict_object('{"a": {"b": 1}')
        (None, None)
    """
    at = text.find("{")
    if at < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text, at)
    except ValueError:
        return None
    return value if isinstance(value, dict) and value else None


def json_strict_occupation_ok(text: str, occupation: str) -> bool:
    """Strict P.Acc: the strict object has an ``"occupation"`` key whose string value names ``occupation``.

    Example:
        >>> json_strict_occupation_ok('{"name": "Ana", "occupation": "Registered Nurse"}', "nurse")
        True
        >>> json_strict_occupation_ok('{"name": "Ana", "occupation": "Nursery"}', "nurse")
        False
    """
    obj = json_strict_object(text)
    if obj is None:
        return False
    values = [v for k, v in obj.items() if str(k).strip().lower() == "occupation"]
    return any(isinstance(v, str) and names_occupation(v, occupation) for v in values)


def content_words(text: str) -> set[str]:
    """The content words of ``text`` (see the module docstring): lower-cased, >= 3 letters, no stopword or pronoun,
    a final ``s`` dropped.

    Example:
        >>> sorted(content_words("She works night shifts on the ward."))
        ['night', 'shift', 'ward', 'work']
    """
    out = set()
    for w in _WORDS.findall(text.lower()):
        if len(w) >= 3 and w not in STOPWORDS and w not in ("she", "he", "her", "him", "his", "hers"):
            out.add(w[:-1] if w.endswith("s") and len(w) > 3 else w)
    return out


def content_kept(answer: str, source: str) -> float:
    """The fraction of ``source``'s content words that ``answer`` contains (0 when the source has none)."""
    wanted = content_words(source)
    return len(wanted & content_words(answer)) / len(wanted) if wanted else 0.0


def has_they_form(text: str) -> bool:
    """Whether ``text`` contains they, them, their, theirs, themselves or themself as a word (any case)."""
    return re.search(r"(?<![A-Za-z])(?:" + "|".join(THEY_FORMS) + r")(?![A-Za-z])", text, re.IGNORECASE) is not None


def is_rewrite(answer: str, source: str, min_kept: float = 0.5) -> bool:
    """The pronoun task's *rewrite* column: ``answer`` keeps >= ``min_kept`` of ``source``'s content words and
    contains a they-form.

    Example:
        >>> bio = "She works night shifts on the cardiology ward and trains new staff."
        >>> is_rewrite("They work night shifts on the cardiology ward and train new staff.", bio)
        True
        >>> is_rewrite("They are a nurse.", bio)
        False
    """
    if not 0.0 < min_kept <= 1.0:
        raise ValueError(f"min_kept is a fraction of the source's content words in (0, 1]; got {min_kept}.")
    return has_they_form(answer) and content_kept(answer, source) >= min_kept
