"""Named synthetic biographies: seeded bios whose first sentence names the person and the occupation.

Neither public BiasBios format can be downloaded on this project's machines, so :func:`synthetic_biographies`
generates seeded bios over the same 28 occupations: a first sentence that names the person and the occupation
("Maria Lopez is a nurse based in Lisbon."), then several sentences with gendered pronouns (education, city, a
*distractor* relative with another occupation, a hobby). Every template also has a gender-neutral form ("they",
"their", plural verbs), which is the exact gold answer of the pronoun task. Results computed on these bios are
synthetic-data results and are labelled so (``source="synthetic"``). Bios that only *imply* the occupation are
:mod:`pasta_lens.tasks.implied_bios`'s, which shares the cities, schools, hobbies and relatives listed here.
"""

from __future__ import annotations

import functools
import random
import re

from pasta_lens.tasks.base import check_split, seeded_sample
from pasta_lens.tasks.bio_example import OCCUPATIONS, Biography, occupation_text, with_article

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
