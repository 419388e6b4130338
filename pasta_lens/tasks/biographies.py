"""Biographies for the JSON, pronoun and BiasBios tasks: loaders for the real BiasBios formats and a generator.

The PASTA paper builds three of its four tasks on BiasBios (De-Arteaga et al., 2019): short web biographies
labelled with one of 28 occupations and a binary gender. Two public formats are read here:

* Hugging Face ``LabHC/bias_in_bios`` rows ``{"hard_text": str, "profession": int, "gender": int}``: the bio
  *without* its first sentence (which names the occupation) and without a name; ``profession`` indexes
  :data:`OCCUPATIONS` (alphabetical, as on the dataset card); ``gender`` 0 = male, 1 = female.
* ``BIOS.pkl`` built by the scraper of ``microsoft/biosbias``: a list of dicts with ``name`` (a tuple
  ``(first, middle, last)``), ``raw`` (the full bio, first sentence included), ``bio`` (the bio from
  ``start_pos`` on), ``title`` (the occupation, e.g. ``"software_engineer"``), ``gender`` (``"F"``/``"M"``) and
  ``start_pos`` (where the first sentence ends in ``raw``).

Neither can be downloaded on this project's machines, so :func:`synthetic_biographies` generates seeded bios over
the same 28 occupations: a first sentence that names the person and the occupation, then several sentences with
gendered pronouns (education, city, a *distractor* relative with another occupation, a hobby). Every template
also has a gender-neutral form ("they", "their", plural verbs), which is the exact gold answer of the pronoun
task. Results computed on these bios are synthetic-data results and are labelled so (``source="synthetic"``).
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pasta_lens.tasks.base import TaskExample, check_split, seeded_sample

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
            substitution, see :func:`neutralise`, for real ones).
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


def first_sentence_end(text: str) -> int:
    """End of the first sentence: after the first ``.``, ``!`` or ``?`` followed by a space (or the text end)."""
    m = re.search(r"[.!?](?=\s|$)", text)
    return m.end() if m else len(text)


_NEUTRAL = {
    "she": "they",
    "he": "they",
    "her": "their",
    "him": "them",
    "his": "their",
    "hers": "theirs",
    "herself": "themselves",
    "himself": "themselves",
}


_AGREE = {"is": "are", "was": "were", "has": "have", "does": "do"}


def neutralise(text: str) -> str:
    """Replace gendered pronouns by "they"-forms word by word.

    Only the auxiliaries right after "they" are made plural (is/was/has/does); other verbs keep their form, and
    object "her" becomes "their" (it cannot be told from possessive "her" without a parser). Exact neutral forms
    exist only for synthetic bios, whose templates carry both.

    Example:
        >>> neutralise("She said his book is hers. He has one.")
        'They said their book is theirs. They have one.'
    """

    def swap(m: re.Match) -> str:
        word = m.group(0)
        new = _NEUTRAL[word.lower()]
        return new.capitalize() if word[0].isupper() else new

    text = re.sub(r"\b(" + "|".join(_NEUTRAL) + r")\b", swap, text, flags=re.IGNORECASE)
    return re.sub(r"\b([Tt]hey) (is|was|has|does)\b", lambda m: f"{m.group(1)} {_AGREE[m.group(2)]}", text)


# ----------------------------------------------------------------------------------------------- real formats
def _rows(source: str | os.PathLike | Iterable[dict]) -> Iterable[dict]:
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"No such file: {path}. Pass a JSON/JSONL export of the dataset or the rows.")
        with open(path, encoding="utf-8") as f:
            if path.endswith(".jsonl"):
                return [json.loads(line) for line in f if line.strip()]
            return json.load(f)
    return source


def load_bias_in_bios(source: str | os.PathLike | Iterable[dict], split_name: str = "") -> list[Biography]:
    """Biographies from ``LabHC/bias_in_bios`` rows (``hard_text``, ``profession``, ``gender``).

    Args:
        source: the rows (e.g. ``datasets.load_dataset("LabHC/bias_in_bios", split="test")``) or a path to a
            JSON list / JSONL file of them.
        split_name: put in the uids (``"bias_in_bios:test:17"``).

    The rows have no name and no occupation-revealing first sentence: ``person`` is "this person", and the
    emphasised "first sentence" is the first sentence of ``hard_text``.

    Example:
        >>> bios = load_bias_in_bios([{"hard_text": "She treats patients.", "profession": 13, "gender": 1}])
        >>> bios[0].occupation, bios[0].gender
        ('nurse', 'F')
    """
    out = []
    for i, row in enumerate(_rows(source)):
        try:
            text, prof, gender = str(row["hard_text"]).strip(), int(row["profession"]), int(row["gender"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"Row {i} is not a LabHC/bias_in_bios row with hard_text, profession, gender: {str(row)[:200]}"
            ) from None
        if not 0 <= prof < len(OCCUPATIONS) or gender not in (0, 1):
            raise ValueError(
                f"Row {i}: profession must be 0..27 and gender 0 (male) or 1 (female); got {prof}, {gender}."
            )
        out.append(
            Biography(
                uid=f"bias_in_bios:{split_name}:{i}",
                source="bias_in_bios",
                name="",
                occupation=OCCUPATIONS[prof],
                gender="MF"[gender],
                context=text,
                first_sentence_end=first_sentence_end(text),
                neutral=neutralise(text),
            )
        )
    return out


def load_biosbias_pkl(source: str | os.PathLike | Iterable[dict]) -> list[Biography]:
    """Biographies from the ``BIOS.pkl`` of ``microsoft/biosbias`` (a pickled list of dicts).

    Uses ``raw`` (the whole bio) as context, ``raw[:start_pos]`` as the first sentence, ``name`` = first and
    last name, ``title`` as the occupation (rows with a title outside the 28 are skipped).

    Only unpickle files you trust: pickle can run code.
    """
    if isinstance(source, (str, os.PathLike)):
        if not os.path.exists(source):
            raise FileNotFoundError(f"No such file: {source}. Build BIOS.pkl with microsoft/biosbias.")
        with open(source, "rb") as f:
            rows = pickle.load(f)
    else:
        rows = list(source)
    out = []
    for i, row in enumerate(rows):
        try:
            raw, start, title, gender = str(row["raw"]), int(row["start_pos"]), str(row["title"]), row["gender"]
            name: Sequence[str] = row.get("name") or ()  # (first, middle, last) or empty
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"Row {i} is not a biosbias row with raw, start_pos, title, gender, name: {str(row)[:200]}"
            ) from None
        title = title.strip().lower().replace(" ", "_")
        if title not in OCCUPATIONS:
            continue
        parts = [p for p in (name[0], name[-1]) if p] if len(name) else []
        full = " ".join(dict.fromkeys(parts))  # first and last name (deduplicated when they coincide)
        raw = raw.strip()
        end = min(max(start, 1), len(raw))
        out.append(
            Biography(
                uid=f"biosbias:{i}",
                source="biosbias",
                name=full,
                occupation=title,
                gender=gender if gender in ("F", "M") else "",
                context=raw,
                first_sentence_end=end,
                neutral=neutralise(raw),
            )
        )
    return out


def split_biographies(bios: list[Biography], split: str, n: int | None, seed: int) -> list[Biography]:
    """A fixed 80/10/10 train/validation/test partition of a loaded list (seeded by nothing but the uids)."""
    check_split(split)
    ordered = seeded_sample(sorted(bios, key=lambda b: b.uid), None, 0, "bio-partition")
    k1, k2 = int(0.8 * len(ordered)), int(0.9 * len(ordered))
    part = {"train": ordered[:k1], "validation": ordered[k1:k2], "test": ordered[k2:]}[split]
    return seeded_sample(part, n, seed, f"bios-{split}")


# ------------------------------------------------------------------------------------------------- synthetic
FIRST_NAMES = {
    "F": (
        "Maria",
        "Aisha",
        "Emily",
        "Sofia",
        "Hannah",
        "Priya",
        "Olivia",
        "Mei",
        "Laura",
        "Fatima",
        "Grace",
        "Elena",
        "Chloe",
        "Amara",
        "Julia",
        "Nadia",
        "Rachel",
        "Ingrid",
        "Lucia",
        "Keiko",
    ),
    "M": (
        "James",
        "Omar",
        "Daniel",
        "Lucas",
        "Ethan",
        "Ravi",
        "Samuel",
        "Wei",
        "Mark",
        "Karim",
        "Thomas",
        "Mateo",
        "Noah",
        "Kwame",
        "Adrian",
        "Felix",
        "David",
        "Lars",
        "Diego",
        "Hiroshi",
    ),
}
LAST_NAMES = (
    "Lopez",
    "Okafor",
    "Smith",
    "Novak",
    "Chen",
    "Patel",
    "Johansson",
    "Rossi",
    "Kim",
    "Haddad",
    "Murphy",
    "Garcia",
    "Schmidt",
    "Tanaka",
    "Dubois",
    "Mensah",
    "Kowalski",
    "Silva",
    "Brown",
    "Ivanova",
    "Nguyen",
    "Cohen",
    "Walker",
    "Moreau",
    "Andersen",
    "Costa",
    "Reyes",
    "Bauer",
    "Singh",
    "Martin",
)
CITIES = (
    "Chicago",
    "Toronto",
    "Lisbon",
    "Melbourne",
    "Denver",
    "Manchester",
    "Austin",
    "Dublin",
    "Seattle",
    "Vancouver",
    "Boston",
    "Cape Town",
    "Auckland",
    "Edinburgh",
    "Portland",
)
SCHOOLS = (
    "the University of Michigan",
    "McGill University",
    "the University of Leeds",
    "Boston University",
    "the University of Texas",
    "Trinity College Dublin",
    "the University of Melbourne",
    "Ohio State University",
    "the University of Washington",
    "Rutgers University",
)
HOBBIES = (
    "hiking",
    "baking bread",
    "playing chess",
    "gardening",
    "running marathons",
    "reading mystery novels",
    "cycling",
    "learning languages",
    "sailing",
    "birdwatching",
    "playing the piano",
    "pottery",
)
RELATIVES = ("sister", "brother", "cousin", "neighbour", "best friend", "uncle", "aunt")

# Sentence templates after the first one. {S} subject, {O} object, {P} possessive, {R} reflexive pronoun,
# [gendered|neutral] verb forms; capitalised placeholders start a sentence.
TEMPLATES = (
    "{Sc} [studies|study] at {school} and [graduates|graduate] in {year}.",
    "{Sc} [has|have] lived in {city} for {k} years with {P} family.",
    "{Sc} [started|started] {P} career in {city2} after finishing {P} degree at {school}.",
    "{Pc} {relative} is {a_other}, and {S} often [jokes|joke] that {S} [was|were] almost {a_other} {R}.",
    "{Pc} {relative}, {other_name}, works as {a_other} in {city2}, and {S} [visits|visit] {O} every summer.",
    "In {P} free time, {S} [enjoys|enjoy] {hobby} and [volunteers|volunteer] at a local shelter.",
    "Friends describe {O} as patient and curious, and {S} [says|say] {S} [loves|love] {hobby}.",
    "{Sc} [is|are] known among colleagues for {P} careful work and {P} sense of humour.",
)
PRONOUNS = {
    "F": {"S": "she", "O": "her", "P": "her", "R": "herself"},
    "M": {"S": "he", "O": "him", "P": "his", "R": "himself"},
    "N": {"S": "they", "O": "them", "P": "their", "R": "themselves"},
}


def _fill(template: str, form: str, values: dict[str, str]) -> str:
    pron = PRONOUNS[form]
    text = re.sub(r"\[([^|\]]*)\|([^\]]*)\]", lambda m: m.group(2 if form == "N" else 1), template)
    for key, word in pron.items():
        text = text.replace("{" + key + "c}", word.capitalize()).replace("{" + key + "}", word)
    return text.format(**values)


def synthetic_biography(rng: random.Random, uid: str, occupation: str | None = None) -> Biography:
    """One seeded synthetic biography (see :func:`synthetic_biographies`)."""
    gender = rng.choice(("F", "M"))
    occupation = occupation or rng.choice(OCCUPATIONS)
    other = rng.choice([o for o in OCCUPATIONS if o != occupation])
    name = f"{rng.choice(FIRST_NAMES[gender])} {rng.choice(LAST_NAMES)}"
    city, city2 = rng.sample(CITIES, 2)
    values = dict(
        school=rng.choice(SCHOOLS),
        year=str(rng.randint(1985, 2018)),
        city=city,
        city2=city2,
        k=str(rng.randint(2, 20)),
        hobby=rng.choice(HOBBIES),
        relative=rng.choice(RELATIVES),
        a_other=with_article(occupation_text(other)),
        other_name=f"{rng.choice(FIRST_NAMES[rng.choice('FM')])} {rng.choice(LAST_NAMES)}",
    )
    first = f"{name} is {with_article(occupation_text(occupation))} based in {city}."
    body = rng.sample(TEMPLATES, 4)
    gendered = " ".join([first] + [_fill(t, gender, values) for t in body])
    neutral = " ".join([first] + [_fill(t, "N", values) for t in body])
    return Biography(
        uid=uid,
        source="synthetic",
        name=name,
        occupation=occupation,
        gender=gender,
        context=gendered,
        first_sentence_end=len(first),
        neutral=neutral,
    )


SPLIT_SIZES = {"train": 2000, "validation": 500, "test": 2000}
"""How many synthetic bios each split has (disjoint random streams per split)."""


def synthetic_biographies(split: str = "train", n: int | None = None, seed: int = 0) -> list[Biography]:
    """Seeded synthetic biographies over the 28 BiasBios occupations (labelled ``source="synthetic"``).

    Each split is a fixed list generated from its own random stream (``random.Random("synthetic-bios:<split>")``),
    so train, validation and test never share a generated bio; ``seed`` only chooses and orders ``n`` of them.
    Occupations cycle through all 28, so every split is balanced.

    Example:
        >>> bio = synthetic_biographies("test", n=1)[0]
        >>> bio.first_sentence  # e.g. 'Maria Lopez is a nurse based in Lisbon.'
    """
    check_split(split)
    return seeded_sample(_all_synthetic(split), n, seed, f"bios-{split}")


@functools.lru_cache(maxsize=3)
def _all_synthetic(split: str) -> tuple[Biography, ...]:
    rng = random.Random(f"synthetic-bios:{split}")
    return tuple(
        synthetic_biography(rng, f"synthetic:{split}:{i}", OCCUPATIONS[i % len(OCCUPATIONS)])
        for i in range(SPLIT_SIZES[split])
    )
