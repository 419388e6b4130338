"""Implied biographies: bios that show the occupation through what a person does, never by its name.

The *named* generator (:func:`pasta_lens.tasks.biographies.synthetic_biographies`) opens every bio with
"{name} is a {occupation} based in {city}", so a model that copies one word of the bio answers "what is their
occupation?" right. Real BiasBios ``hard_text`` drops that sentence: what remains *implies* the occupation. These
bios do the same, from :data:`~pasta_lens.tasks.occupation_facts.FACTS` (duties, workplaces, tools, training,
colleagues, milestones of each of the 28 occupations):

* four writing styles: ``third`` (a third-person bio), ``first`` (first person), ``cv`` (CV-like lines), ``news``
  (a news profile with a dateline); each has opening templates and templates per kind of sentence;
* two lengths: ``short`` (an opening and two sentences about the work) and ``long`` (an opening, four to five
  sentences about the work, one or two personal ones, sometimes a relative with *another* occupation);
* 130 sentence templates in all (the named generator has 9; :mod:`pasta_lens.tasks.implied_templates` holds them
  and the people's names), filled with the person's pronouns in gendered and neutral ("they") form, as the
  pronoun task needs.

A bio never contains a word that names its own occupation (``FACTS[occupation].forbidden``; a test reads every
bio of every split). Splits are disjoint and seeded: each has its own random stream, its own first names and last
names (so no person is in two splits), and the last template of every template list and the last item of every
fact list appear only in ``test``, which so also measures phrasings that no profile was trained or selected on.
"""

from __future__ import annotations

import functools
import random
import re

from pasta_lens.tasks.base import check_split, seeded_sample
from pasta_lens.tasks.bio_example import OCCUPATIONS, Biography, occupation_text, with_article
from pasta_lens.tasks.implied_templates import FIRST_NAMES, LAST_NAMES, TEMPLATES
from pasta_lens.tasks.named_bios import CITIES, HOBBIES, RELATIVES, SCHOOLS
from pasta_lens.tasks.occupation_facts import FACTS, split_items

STYLES = ("third", "first", "cv", "news")
LENGTHS = ("short", "long")
KINDS = ("duty", "workplace", "tools", "training", "colleagues", "milestone")

SPLIT_OF_INDEX = {0: "train", 1: "train", 2: "train", 3: "validation", 4: "test"}
"""A name at position ``i`` of its pool belongs to split ``SPLIT_OF_INDEX[i % 5]``: no person is in two splits."""

SPLIT_SIZES = {"train": 2000, "validation": 500, "test": 2000}

PRONOUNS = {
    "F": {"S": "she", "O": "her", "P": "her", "R": "herself"},
    "M": {"S": "he", "O": "him", "P": "his", "R": "himself"},
    "N": {"S": "they", "O": "them", "P": "their", "R": "themselves"},
    "I": {"S": "I", "O": "me", "P": "my", "R": "myself"},
}


def split_names(pool: tuple[str, ...], split: str) -> tuple[str, ...]:
    """The names of ``pool`` that ``split`` may use (:data:`SPLIT_OF_INDEX`)."""
    return tuple(n for i, n in enumerate(pool) if SPLIT_OF_INDEX[i % 5] == split)


def split_templates(templates: tuple[str, ...], split: str) -> tuple[str, ...]:
    """Test uses every template of a list; train and validation all but the last (of lists of three or more)."""
    return templates if split == "test" or len(templates) < 3 else templates[:-1]


def third_singular(phrase: str) -> str:
    """A base-form verb phrase with its first word in the third person singular.

    Example:
        >>> [third_singular(p) for p in ("fix bugs", "carry bags", "play records", "have lunch", "go out", "see it")]
        ['fixes bugs', 'carries bags', 'plays records', 'has lunch', 'goes out', 'sees it']
    """
    verb, _, rest = phrase.partition(" ")
    irregular = {"have": "has", "do": "does", "go": "goes", "be": "is"}
    if verb in irregular:
        verb = irregular[verb]
    elif verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        verb += "es"
    elif len(verb) > 1 and verb.endswith("y") and verb[-2] not in "aeiou":
        verb = verb[:-1] + "ies"
    else:
        verb += "s"
    return f"{verb} {rest}".strip()


def fill(template: str, form: str, values: dict[str, str]) -> str:
    """``template`` with pronouns of ``form`` (``F``, ``M``, ``N`` = they, ``I`` = first person), the matching verb
    forms and duties, and ``values``."""
    text = re.sub(r"\[([^|\]]*)\|([^\]]*)\]", lambda m: m.group(1 if form in "FM" else 2), template)
    for key, word in PRONOUNS[form].items():
        text = text.replace("{" + key + "c}", word[:1].upper() + word[1:]).replace("{" + key + "}", word)
    conj = third_singular if form in "FM" else (lambda p: p)
    duties = {"duty": conj(values["duty_base"]), "duty2": conj(values["duty2_base"])}
    text = text.format(**values, **duties)
    return text[:1].upper() + text[1:]


def _forbidden(occupation: str) -> re.Pattern:
    stems = FACTS[occupation].forbidden
    return re.compile(r"(?<![a-z])(?:" + "|".join(stems) + ")", re.IGNORECASE)


def names_own_occupation(text: str, occupation: str) -> bool:
    """Whether ``text`` contains a word that names ``occupation`` (its ``forbidden`` patterns; hyphens as spaces)."""
    return _forbidden(occupation).search(text.replace("-", " ")) is not None


def implied_biography(
    rng: random.Random, uid: str, occupation: str, split: str, style: str | None = None, length: str | None = None
) -> Biography:
    """One seeded implied biography of ``occupation`` from ``split``'s names, templates and facts."""
    facts = FACTS[occupation]
    style = style or rng.choice(STYLES)
    length = length or rng.choice(LENGTHS)
    gender = rng.choice(("F", "M"))
    first, last = rng.choice(split_names(FIRST_NAMES[gender], split)), rng.choice(split_names(LAST_NAMES, split))
    others = [o for o in OCCUPATIONS if o != occupation and not names_own_occupation(occupation_text(o), occupation)]
    city, city2 = rng.sample(CITIES, 2)
    duty, duty2 = rng.sample(split_items(facts.duties, split), 2)
    pick = lambda items: rng.choice(split_items(items, split))  # noqa: E731
    values = dict(
        name=f"{first} {last}",
        first=first,
        last=last,
        city=city,
        city2=city2,
        city_upper=city.upper(),
        year=str(rng.randint(1990, 2021)),
        year2=str(rng.randint(1985, 2015)),
        year3=str(rng.randint(2005, 2023)),
        years=str(rng.randint(3, 25)),
        age=str(rng.randint(27, 63)),
        school=rng.choice(SCHOOLS),
        hobby=rng.choice(HOBBIES),
        relative=rng.choice(RELATIVES),
        a_other=with_article(occupation_text(rng.choice(others))),
        duty_base=duty,
        duty2_base=duty2,
        duty_s=third_singular(duty),
        workplace=pick(facts.workplaces),
        tool=pick(facts.tools),
        training=pick(facts.training),
        colleague=pick(facts.colleagues),
        milestone=pick(facts.milestones),
        other_name=f"{rng.choice(split_names(FIRST_NAMES[rng.choice('FM')], split))} "
        f"{rng.choice(split_names(LAST_NAMES, split))}",
    )
    table = TEMPLATES[style]
    n_work, n_personal = (2, 0) if length == "short" else (rng.randint(4, 5), rng.randint(1, 2))
    kinds = ["duty"] + rng.sample([k for k in KINDS if k != "duty"], n_work - 1)
    rng.shuffle(kinds)
    chosen = [rng.choice(split_templates(table["opening"], split))]
    chosen += [rng.choice(split_templates(table[k], split)) for k in kinds]
    chosen += rng.sample(split_templates(table["personal"], split), n_personal)
    forms = ("I", "I") if style == "first" else (gender, "N")
    sep = "\n" if style == "cv" else " "
    gendered = [fill(t, forms[0], values) for t in chosen]
    neutral = [fill(t, forms[1], values) for t in chosen]
    return Biography(
        uid=uid,
        source="synthetic",
        name=values["name"],
        occupation=occupation,
        gender=gender,
        context=sep.join(gendered),
        first_sentence_end=len(gendered[0]),
        neutral=sep.join(neutral),
        style=f"{style}/{length}",
    )


def implied_biographies(split: str = "train", n: int | None = None, seed: int = 0) -> list[Biography]:
    """Seeded implied biographies over the 28 BiasBios occupations (``source="synthetic"``, uids ``implied:...``).

    Each split is a fixed list from its own random stream (``random.Random("implied-bios:<split>")``), with its own
    people and (on test) held-out phrasings; ``seed`` only chooses and orders ``n`` of them. Occupations cycle
    through all 28, so every split is balanced; styles and lengths are drawn per bio.

    Example:
        >>> bio = implied_biographies("test", n=1)[0]
        >>> bio.occupation, bio.style   # e.g. ('nurse', 'news/long'): the text never says "nurse"
    """
    check_split(split)
    return seeded_sample(_all_implied(split), n, seed, f"implied-bios-{split}")


@functools.lru_cache(maxsize=3)
def _all_implied(split: str) -> tuple[Biography, ...]:
    rng = random.Random(f"implied-bios:{split}")
    return tuple(
        implied_biography(rng, f"implied:{split}:{i}", OCCUPATIONS[i % len(OCCUPATIONS)], split)
        for i in range(SPLIT_SIZES[split])
    )
