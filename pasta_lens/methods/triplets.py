"""Contrastive triplets for fitting key projections: a context, a question its answer span answers, and one it does
not.

SEKA and PRISM-Delta learn which directions of a key make it *relevant*: they read the keys of an answer span in a
context shown three ways (the authors' builders, ``src/model/projection_builder_base.py`` of waylonli/SEKA and
YuyaoGe/PRISM-DELTA):

    H  = keys of the answer in  "Context: {context} "
    H+ = keys of the answer in  "Question: {question}\\nContext: {context}"     (the question asks for it)
    H- = keys of the answer in  "Question: {distractor}\\nContext: {context}"   (the question asks for something else)

:func:`synthetic_triplets` writes such triplets from templates (short profiles of invented people: each sentence
states one attribute, the question asks for one, the distractor for another). The authors fit on their own synthetic
QA pairs (``data/synthetic/pair_qa_new.jsonl``, not shipped here: its licence is not stated); any list of
:class:`ContrastTriplet` can be passed to :func:`pasta_lens.methods.fit` instead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

NAMES = (
    "Maria",
    "John",
    "Aiko",
    "Omar",
    "Lena",
    "Carlos",
    "Priya",
    "Tomas",
    "Grace",
    "Yusuf",
    "Elena",
    "Kofi",
    "Ingrid",
    "Mateo",
    "Hana",
    "Dmitri",
    "Amara",
    "Felix",
    "Sofia",
    "Ravi",
)
ATTRIBUTES = {
    "job": (
        [
            "nurse",
            "plumber",
            "architect",
            "baker",
            "pilot",
            "librarian",
            "chemist",
            "farmer",
            "lawyer",
            "carpenter",
            "dentist",
            "journalist",
        ],
        "{name} works as a {value}.",
        "What is {name}'s job?",
    ),
    "city": (
        [
            "Lisbon",
            "Nairobi",
            "Osaka",
            "Toronto",
            "Krakow",
            "Lima",
            "Dublin",
            "Hanoi",
            "Cairo",
            "Oslo",
            "Quito",
            "Perth",
        ],
        "{name} lives in {value}.",
        "Which city does {name} live in?",
    ),
    "instrument": (
        ["violin", "cello", "trumpet", "harp", "banjo", "flute", "drums", "piano", "oboe", "accordion"],
        "{name} plays the {value}.",
        "Which instrument does {name} play?",
    ),
    "pet": (
        ["parrot", "tortoise", "hamster", "goldfish", "rabbit", "ferret", "beagle", "kitten", "gecko"],
        "{name} keeps a {value} at home.",
        "What pet does {name} keep?",
    ),
    "colour": (
        ["green", "orange", "purple", "yellow", "crimson", "turquoise", "silver", "maroon"],
        "{name}'s favourite colour is {value}.",
        "What is {name}'s favourite colour?",
    ),
    "sport": (
        ["tennis", "rowing", "cricket", "fencing", "hockey", "climbing", "archery", "volleyball"],
        "On weekends {name} plays {value}.",
        "Which sport does {name} play?",
    ),
}
TEXT_FORMATS = {
    "neutral": "Context: {context} ",
    "relevant": "Question: {question}\nContext: {context}",
    "irrelevant": "Question: {distractor}\nContext: {context}",
}
"""The three texts of a triplet, as the authors' builders write them (non-chat)."""


@dataclass(frozen=True)
class ContrastTriplet:
    """A context, a question answered by ``answer`` (a span of the context), and a question it does not answer.

    Example:
        >>> ContrastTriplet("Maria works as a nurse. Maria lives in Lisbon.", "What is Maria's job?", "nurse",
        ...                 "Which city does Maria live in?")
    """

    context: str
    question: str
    answer: str
    distractor: str

    def __post_init__(self) -> None:
        for name in ("context", "question", "answer", "distractor"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"ContrastTriplet.{name} must be a non-empty string.")
        if self.answer.lower() not in self.context.lower():
            raise ValueError(
                f"ContrastTriplet.answer {self.answer!r} must occur in the context (its keys are read "
                "there); got a context without it."
            )

    def texts(self) -> tuple[str, str, str]:
        """The neutral, relevant and irrelevant texts (:data:`TEXT_FORMATS`)."""
        values = dict(context=self.context, question=self.question, distractor=self.distractor)
        neutral, relevant, irrelevant = (
            TEXT_FORMATS[k].format(**values) for k in ("neutral", "relevant", "irrelevant")
        )
        return neutral, relevant, irrelevant


def synthetic_triplets(n: int, seed: int = 0, n_facts: int = 4) -> list[ContrastTriplet]:
    """``n`` template triplets, deterministic for ``seed``: ``n_facts`` sentences about one invented person.

    Example:
        >>> synthetic_triplets(2)[0].answer in synthetic_triplets(2)[0].context
        True
    """
    if n < 1 or not 2 <= n_facts <= len(ATTRIBUTES):
        raise ValueError(
            f"synthetic_triplets needs n >= 1 and 2 <= n_facts <= {len(ATTRIBUTES)}; got n={n}, n_facts={n_facts}."
        )
    rng = random.Random(f"contrast-triplets:{seed}")
    out = []
    for _ in range(n):
        name = rng.choice(NAMES)
        kinds = rng.sample(sorted(ATTRIBUTES), n_facts)
        values = {k: rng.choice(ATTRIBUTES[k][0]) for k in kinds}
        context = " ".join(ATTRIBUTES[k][1].format(name=name, value=values[k]) for k in kinds)
        asked, other = rng.sample(kinds, 2)
        out.append(
            ContrastTriplet(
                context, ATTRIBUTES[asked][2].format(name=name), values[asked], ATTRIBUTES[other][2].format(name=name)
            )
        )
    return out
