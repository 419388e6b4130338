"""What people in each of the 28 BiasBios occupations do, where, with what: the material of implied biographies.

Real BiasBios ``hard_text`` drops a bio's first sentence, the one that names the occupation; what is left implies it
through duties, workplaces, tools, training and colleagues. :mod:`pasta_lens.tasks.implied_bios` writes bios from
these facts, kept as data in ``occupation_facts.json`` beside this module (installed with the package) and read
once at import into :data:`FACTS`. For each occupation:

* ``duties``: verb phrases in the base form ("prepare tax returns"), conjugated by the generator;
* ``workplaces``: where the work happens, with its preposition, at, in, on or with ("at a mid-sized firm");
* ``tools``: noun phrases ("spreadsheets and ledger software");
* ``training``: qualifications one earns ("a master's degree in taxation");
* ``colleagues``: plural noun phrases of the people worked with;
* ``milestones``: past-tense verb phrases ("untangled the books of a bankrupt bakery");
* ``forbidden``: regular expressions (matched without case at the start of a word, hyphens read as spaces) of the
  words that would *name* the occupation: its label, its word family and its synonyms (those of
  :data:`pasta_lens.metrics.OCCUPATION_NAMES` and a few more). No bio of the occupation may contain one.

Give-away or implication? A word is forbidden when it is the answer or a near-copy of it (its stem or a synonym:
"nursing" for a nurse, "lawyer" for an attorney, "surgery" for a surgeon, "yoga" for a yoga teacher). Domain words
that only make the answer likely stay ("ward", "law firm", "operating theatre", "sun salutations"), as in real bios;
other occupations' names may appear as colleagues ("works beside surgeons" in a nurse's bio), a realistic distractor.

Held-out phrasing: the last item of every list with four or more items appears only in *test* bios
(:func:`split_items`), so the test split also measures phrasings no profile was trained or selected on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class OccupationFacts:
    """The facts of one occupation (see the module docstring)."""

    duties: tuple[str, ...]
    workplaces: tuple[str, ...]
    tools: tuple[str, ...]
    training: tuple[str, ...]
    colleagues: tuple[str, ...]
    milestones: tuple[str, ...]
    forbidden: tuple[str, ...]

    def __post_init__(self) -> None:
        least = {
            "duties": 4,
            "workplaces": 4,
            "tools": 4,
            "training": 2,
            "colleagues": 2,
            "milestones": 2,
            "forbidden": 1,
        }
        for name, n in least.items():
            if len(getattr(self, name)) < n:
                raise ValueError(
                    f"OccupationFacts.{name} needs at least {n} items (the last of a list of four is "
                    "held out for the test split); add more."
                )


def split_items(items: tuple[str, ...], split: str) -> tuple[str, ...]:
    """The items a split may use: test uses all; train and validation all but the last of a list of four or more.

    Example:
        >>> split_items(("a", "b", "c", "d"), "train"), split_items(("a", "b", "c", "d"), "test")
        (('a', 'b', 'c'), ('a', 'b', 'c', 'd'))
    """
    return items if split == "test" or len(items) < 4 else items[:-1]


FACTS_FILE = Path(__file__).with_name("occupation_facts.json")
"""The facts as data: ``{occupation: {"duties": [...], "workplaces": [...], ...}}``, in :data:`FACTS`'s order."""


def load_facts(path: Path = FACTS_FILE) -> dict[str, OccupationFacts]:
    """Occupation label -> its :class:`OccupationFacts`, read from a JSON file laid out as :data:`FACTS_FILE`.

    Raises:
        ValueError: an occupation whose entry is not an object with exactly the fields of :class:`OccupationFacts`,
            each a list of strings.

    Example:
        >>> load_facts()["nurse"].duties[0]
        'work night shifts on the cardiology ward'
    """
    names = [f.name for f in fields(OccupationFacts)]
    out = {}
    for occupation, entry in json.loads(path.read_text(encoding="utf-8")).items():
        if not (
            isinstance(entry, dict)
            and sorted(entry) == sorted(names)
            and all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in entry.values())
        ):
            raise ValueError(
                f"{path}: the facts of {occupation!r} must be an object with exactly the lists of strings {names}."
            )
        out[occupation] = OccupationFacts(**{name: tuple(entry[name]) for name in names})
    return out


FACTS: dict[str, OccupationFacts] = load_facts()
"""Occupation label -> its facts (all 28 BiasBios occupations)."""
