"""Checkers of verifiable instructions ("answer in lowercase", "no commas", "wrap it in quotes", ...).

Where IFEval's checkers fit, they come from the ``if-verifiable`` package (Apache-2.0; Google's IFEval code,
packaged): :func:`ifeval_check` builds the checker of an IFEval instruction id with its arguments and runs it. The
language-free checkers IFEval lacks, or has only in a form unusable here, are written below, each a few lines:

* case (:func:`all_upper`, :func:`all_lower`): IFEval's case checkers also require ``langdetect`` to call the text
  English, a randomised detector (results vary run to run on short texts) and not language-free;
* :func:`sentence_count`: IFEval counts sentences with nltk's punkt model, a data file that is not installed offline;
* :func:`starts_with`, :func:`wrapped_in`, :func:`no_digits`, :func:`one_word`, :func:`json_with_key`: no IFEval
  counterpart.

**Strict and loose** (IFEval's definitions, :func:`loose_variants`): an instruction is followed *strictly* when the
checker accepts the answer, *loosely* when it accepts the answer or one of its variants with the first line, the last
line or both removed and/or markdown ``*`` removed (what a chat model adds around an answer: "Sure! Here it is:").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pasta_lens.metrics.strict import json_strict_object

IFEVAL_HINT = (
    "the instruction checkers come from the if-verifiable package (Python >= 3.11): pip install if-verifiable==0.1.2"
)


def _registry() -> Mapping[str, Any]:
    try:
        from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT
    except ImportError as err:
        raise ImportError(f"{IFEVAL_HINT} ({err})") from None
    return INSTRUCTION_DICT


def ifeval_check(instruction_id: str, kwargs: Mapping[str, Any], text: str) -> bool:
    """Whether ``text`` follows IFEval's instruction ``instruction_id`` with arguments ``kwargs`` (strict).

    Example:
        >>> ifeval_check("punctuation:no_comma", {}, "No commas here.")
        True
        >>> ifeval_check("punctuation:no_comma", {}, "a, b")
        False
    """
    registry = _registry()
    if instruction_id not in registry:
        raise ValueError(f"{instruction_id!r} is not an IFEval instruction id; known: {sorted(registry)}.")
    checker = registry[instruction_id](instruction_id)
    checker.build_description(**dict(kwargs))
    return bool(text.strip()) and bool(checker.check_following(text))


def loose_variants(text: str) -> list[str]:
    """IFEval's loose variants of an answer (``if_verifiable.common.get_loose_transformations``): itself, without
    its first / last / both lines, each also without markdown ``*``.

    Example:
        >>> loose_variants("Sure!\\nhello\\nBye")[2]
        'hello\\nBye'
    """
    _registry()  # the import error, if any, names the fix
    from if_verifiable.common import get_loose_transformations

    return list(get_loose_transformations(text))


# ------------------------------------------------------------------------------------- language-free checkers
def all_upper(text: str) -> bool:
    """Every letter is a capital letter (and there is at least one letter).

    Example:
        >>> all_upper("THE CALL IS AT 3 PM."), all_upper("The call")
        (True, False)
    """
    return any(c.isalpha() for c in text) and not any(c.islower() for c in text)


def all_lower(text: str) -> bool:
    """Every letter is a small letter (and there is at least one letter)."""
    return any(c.isalpha() for c in text) and not any(c.isupper() for c in text)


def starts_with(text: str, phrase: str) -> bool:
    """The answer (leading white space ignored) begins with ``phrase``, compared without case.

    Example:
        >>> starts_with("  answer: Lisbon", "Answer:"), starts_with("The answer: Lisbon", "Answer:")
        (True, False)
    """
    if not phrase.strip():
        raise ValueError("starts_with needs a non-empty phrase.")
    return text.strip().lower().startswith(phrase.strip().lower())


def wrapped_in(text: str, opening: str, closing: str) -> bool:
    """The answer (outer white space ignored) starts with ``opening``, ends with ``closing`` and has something
    between them.

    Example:
        >>> wrapped_in("[a short answer]", "[", "]"), wrapped_in("[]", "[", "]")
        (True, False)
    """
    t = text.strip()
    inner = t[len(opening) : len(t) - len(closing)] if len(t) >= len(opening) + len(closing) else ""
    return t.startswith(opening) and t.endswith(closing) and bool(inner.strip())


def no_digits(text: str) -> bool:
    """No digit 0-9 anywhere, and at least one letter (numbers written out in words)."""
    return any(c.isalpha() for c in text) and re.search(r"[0-9]", text) is None


def sentences(text: str) -> list[str]:
    """The sentences of ``text``: pieces ended by ``.``, ``!`` or ``?`` (runs of them count once) followed by white
    space, or by a line break; pieces without a letter or digit are dropped. A last piece without a final mark (a cut
    answer) counts as a sentence. A mark inside a number (1.5, 3.30) is followed by no space and ends nothing.

    Example:
        >>> sentences("It costs 1.5 euros. Really?! Yes\\nNew line")
        ['It costs 1.5 euros.', 'Really?!', 'Yes', 'New line']
    """
    pieces = re.split(r"(?<=[.!?])\s+|\n+", text.strip())
    return [p.strip() for p in pieces if re.search(r"[A-Za-z0-9]", p)]


def sentence_count(text: str) -> int:
    """The number of :func:`sentences` of ``text``."""
    return len(sentences(text))


def one_word(text: str) -> bool:
    """The answer is one word: no white space once surrounding punctuation and quotes are removed, and at least one
    letter or digit ("Thursday.", '"11:30"' count; "on Thursday" does not).

    Example:
        >>> one_word('"Thursday."'), one_word("on Thursday")
        (True, False)
    """
    core = text.strip().strip("\"'`.,;:!?()[]{}*")
    return bool(core) and not re.search(r"\s", core) and re.search(r"[A-Za-z0-9]", core) is not None


def json_with_key(text: str, key: str) -> bool:
    """The strict JSON object (:func:`~pasta_lens.metrics.strict.json_strict_object`) has ``key`` (no case) with a
    non-empty string or a number as its value.

    Example:
        >>> json_with_key('{"answer": "Lisbon"}', "answer"), json_with_key('{"answer": ""}', "answer")
        (True, False)
    """
    obj = json_strict_object(text)
    if obj is None:
        return False
    values = [v for k, v in obj.items() if str(k).strip().lower() == key.lower()]
    return any(
        (isinstance(v, str) and v.strip()) or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values
    )
