"""Is the gold answer in a generated answer? Correctness that survives formatting and refuses copies.

A context-QA answer may be correct *and* formatted as asked: ``"THURSDAY"``, ``'"Thursday"'``,
``'{"answer": "Thursday"}'``, ``"Answer: thursday."``. :func:`normalise_answer` maps all of them to the same words:

    lower case -> drop the commas inside numbers (1,240 -> 1240) -> every character other than a-z, 0-9 becomes a
    space, except ``:`` and ``.`` between two digits (11:30, 1.7) -> runs of spaces as one

and :func:`answer_found` asks for one accepted form of the gold answer as whole words of that text. A copy of the
document would contain the gold answer too, so each question also names *distractors*: the other values of the same
kind in the document (the other times of a schedule, the other cities of a bio). An answer that holds any of them
is not counted correct, so the cheapest cheats (copy the document, list every value) fail.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


def normalise_answer(text: str) -> str:
    """The words of an answer, formatting removed (see the module docstring).

    Example:
        >>> normalise_answer('{"answer": "11:30 AM"}')
        'answer 11:30 am'
        >>> normalise_answer("1,240 units."), normalise_answer('"PEAR CIDER"')
        ('1240 units', 'pear cider')
    """
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text.lower())
    text = re.sub(r"[^a-z0-9:.]", " ", text)
    text = re.sub(r"(?<!\d)[:.]|[:.](?!\d)", " ", text)
    return " ".join(text.split())


def contains_words(text: str, phrase: str) -> bool:
    """Whether the normalised ``phrase`` occurs in the normalised ``text`` as whole words.

    Example:
        >>> contains_words("The call is at 11:30.", "11:30"), contains_words("at 1:30", "11:30")
        (True, False)
    """
    norm, want = normalise_answer(text), normalise_answer(phrase)
    if not want:
        raise ValueError(f"The phrase {phrase!r} has no words to look for.")
    return re.search(r"(?<![a-z0-9:.])" + re.escape(want) + r"(?![a-z0-9]|[:.]\d)", norm) is not None


def answer_found(output: str, answers: Sequence[str], distractors: Sequence[str] = ()) -> bool:
    """Correctness: one of ``answers`` occurs in ``output`` as whole words and none of ``distractors`` does.

    Example:
        >>> answer_found("THURSDAY", ["Thursday"], ["Monday"])
        True
        >>> answer_found("Monday or Thursday", ["Thursday"], ["Monday"])
        False
    """
    if not answers:
        raise ValueError("answer_found needs at least one accepted form of the gold answer.")
    return any(contains_words(output, a) for a in answers) and not any(contains_words(output, d) for d in distractors)
