"""Short documents with questions answered in them: the material of the context-QA task.

Five kinds, each a seeded generator that returns the document and its questions. A question carries its accepted
answers (the gold value in the forms a correct answer may take: "14:00", "2 pm") and its *distractors*: the other
values of the *same kind* in the document (the other times of a schedule, the other stores of a report, the other
herb of a recipe), which a correct answer must not contain (see :func:`pasta_lens.metrics.answer_found`). Values of
another kind (a recipe's servings beside its cooking time) are not distractors: an answer may restate them.

* ``bio``: a biography (named or implied generator): the occupation of a named bio, the city, the school;
* ``schedule``: a day's meetings with times and rooms;
* ``recipe``: a dish with servings, quantities, a cooking time and a herb;
* ``product``: a product note with capacity, price and warranty;
* ``report``: a small sales report with three stores.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pasta_lens.metrics import contains_words
from pasta_lens.tasks.biographies import CITIES, OCCUPATIONS, SCHOOLS, Biography, occupation_text

NUMBER_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
)


@dataclass(frozen=True)
class Question:
    """A question about a document: accepted ``answers`` (first = the gold form) and ``distractors``."""

    text: str
    answers: tuple[str, ...]
    distractors: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.answers or not all(a.strip() for a in self.answers):
            raise ValueError(f"Question {self.text!r} needs at least one non-empty accepted answer.")
        if any(contains_words(a, d) for a in self.answers for d in self.distractors):
            raise ValueError(
                f"Question {self.text!r}: a distractor is part of an accepted answer, so the gold "
                "answer itself would count as wrong."
            )

    @property
    def gold(self) -> str:
        return self.answers[0]


def number_forms(n: int) -> tuple[str, ...]:
    """``12`` -> ``("12", "twelve")`` (words up to twenty)."""
    return (str(n), NUMBER_WORDS[n]) if 0 <= n < len(NUMBER_WORDS) else (str(n),)


def time_forms(hour: int, minute: int) -> tuple[str, ...]:
    """``(14, 30)`` -> ``("14:30", "2:30 pm", "2:30")``: the 24-hour time first."""
    twelve = hour - 12 if hour > 12 else hour
    suffix = "pm" if hour >= 12 else "am"
    forms = [f"{hour}:{minute:02d}", f"{twelve}:{minute:02d} {suffix}", f"{twelve}:{minute:02d}"]
    if minute == 0:
        forms += [f"{twelve} {suffix}"]
    return tuple(dict.fromkeys(forms))


def bio_questions(bio: Biography) -> list[Question]:
    """Questions answered in a bio: the city (when it is in the text), the school, and for a named bio the job."""
    text, out = bio.context, []
    cities = [c for c in CITIES if c in text]
    schools = [s for s in SCHOOLS if s in text]
    named = occupation_text(bio.occupation) in bio.first_sentence
    if named:
        gold = occupation_text(bio.occupation)
        others = [
            occupation_text(o)
            for o in OCCUPATIONS
            if o != bio.occupation and occupation_text(o) in text and not contains_words(gold, occupation_text(o))
        ]  # "teacher" is part of "yoga teacher"
        out.append(Question(f"What is {bio.name}'s job?", (occupation_text(bio.occupation),), tuple(others)))
        city = bio.first_sentence.rstrip(".").split(" based in ")[-1]
        out.append(Question(f"In which city is {bio.name} based?", (city,), tuple(c for c in cities if c != city)))
    if len(schools) == 1:
        school = schools[0]
        out.append(
            Question(
                f"Where did {bio.name} study or train?",
                (school, school.removeprefix("the ")),
                tuple(s for s in SCHOOLS if s != school and s in text),
            )
        )
    return out


EVENTS = (
    "stand-up meeting",
    "design review",
    "client call",
    "budget meeting",
    "team lunch",
    "safety briefing",
    "product demo",
    "interview",
)


def schedule(rng: random.Random) -> tuple[str, list[Question]]:
    """A day's schedule of four events."""
    day = rng.choice(("Monday", "Tuesday", "Wednesday", "Thursday", "Friday"))
    events = rng.sample(EVENTS, 4)
    hours = sorted(rng.sample(range(8, 18), 4))
    times = [(h, rng.choice((0, 15, 30, 45))) for h in hours]
    rooms = rng.sample(range(101, 420), 4)
    lines = [f"{times[i][0]}:{times[i][1]:02d} {events[i]} in room {rooms[i]}" for i in range(4)]
    doc = f"Schedule for {day}: " + "; ".join(lines) + "."
    i = rng.randrange(4)
    others = [f for j in range(4) if j != i for f in time_forms(*times[j])[:1]]
    return doc, [
        Question(f"What time is the {events[i]}?", time_forms(*times[i]), tuple(others)),
        Question(
            f"In which room is the {events[i]}?", (str(rooms[i]),), tuple(str(r) for j, r in enumerate(rooms) if j != i)
        ),
    ]


DISHES = ("lemon pasta", "lentil soup", "vegetable curry", "mushroom risotto", "bean chili", "tomato tart")
HERBS = ("basil", "parsley", "coriander", "dill", "mint", "chives")


def recipe(rng: random.Random) -> tuple[str, list[Question]]:
    """A recipe with servings, quantities, cooking time and a herb."""
    dish = rng.choice(DISHES)
    serves, minutes, grams = rng.randint(2, 8), rng.randrange(10, 45, 5), rng.randrange(150, 600, 50)
    spoons = rng.choice([x for x in (1, 2, 3) if x != serves])
    herb, other = rng.sample(HERBS, 2)
    doc = (
        f"{dish.capitalize()} (serves {serves}). Fry an onion in {spoons} spoons of oil, add {grams} g of the main "
        f"ingredient and cook for {minutes} minutes. Season with {other} while it cooks and stir in fresh {herb} "
        "just before serving."
    )
    return doc, [
        Question(f"How many minutes does the {dish} cook?", number_forms(minutes)),
        Question("Which herb is stirred in just before serving?", (herb,), (other,)),
        Question(f"How many people does the {dish} serve?", number_forms(serves)),
    ]


PRODUCTS = ("kettle", "desk lamp", "blender", "toaster", "radio", "coffee grinder")
BRANDS = ("Aero", "Nordlys", "Kestrel", "Brio", "Lumen", "Solace")


def product(rng: random.Random) -> tuple[str, list[Question]]:
    """A product note with model, price and warranty."""
    kind, brand = rng.choice(PRODUCTS), rng.choice(BRANDS)
    name = f"{brand} {rng.choice('KMTX')}{rng.randint(10, 99)}"
    price, years, weeks = rng.randrange(25, 190, 5), rng.randint(2, 5), rng.randint(2, 8)
    if weeks == years:
        weeks += 1
    doc = (
        f"The {name} {kind} costs {price} euros and ships within {weeks} weeks. It comes in three colours and "
        f"carries a warranty of {years} years. Spare parts are sold separately."
    )
    return doc, [
        Question(f"How many years of warranty does the {name} have?", number_forms(years)),
        Question(f"How much does the {name} cost in euros?", (str(price),)),
        Question(f"Within how many weeks does the {name} ship?", number_forms(weeks)),
    ]


def report(rng: random.Random) -> tuple[str, list[Question]]:
    """A small sales report with three stores."""
    stores = rng.sample(CITIES, 3)
    units = sorted(rng.sample(range(120, 2400, 10), 3), reverse=True)
    order = rng.sample(range(3), 3)
    pct = rng.randint(2, 9)
    quarter = rng.choice(("first", "second", "third", "fourth"))
    parts = [f"the {stores[j]} store sold {units[j]:,} units" for j in order]
    doc = f"Sales report, {quarter} quarter: {parts[0]}, {parts[1]} and {parts[2]}. Returns fell to {pct} percent."
    k = rng.randrange(3)
    return doc, [
        Question("Which store sold the most units?", (stores[0],), tuple(stores[1:])),
        Question(
            f"How many units did the {stores[k]} store sell?",
            (str(units[k]),),
            tuple(str(u) for j, u in enumerate(units) if j != k),
        ),
        Question("To what percentage did returns fall?", number_forms(pct)),
    ]


GENERATORS = {"schedule": schedule, "recipe": recipe, "product": product, "report": report}
