"""Metrics of the PASTA paper's tasks, computed on generated text (pure Python, no model).

* **JSON formatting** (Zhang et al., 2024, Sec. 4): ``F.Acc`` = some ``{...}`` substring of the output parses as a
  JSON object; ``P.Acc`` = the values of a parsed object contain the right occupation (case-insensitive
  substring of a string value, searched recursively).
* **Pronoun changing**: ``Acc`` = the output contains neither *she* nor *he* as a word; ``A.Acc`` = it contains
  none of *she, he, her, him, hers, his, herself, himself* as a word (so "history", "the", "There", "hello"
  do not count; "He's" and "HIS," do).
* **Fluency** as in ROME (Meng et al., 2022): the weighted entropy of the 2- and 3-gram frequency distributions
  of the text's word tokens,

      H_n = - sum_g f(g) log2 f(g)   over the n-grams g with relative frequencies f(g)
      fluency = mean(2/3 * H_2, 4/3 * H_3) = (2/3 * H_2 + 4/3 * H_3) / 2

  exactly ROME's ``compute_n_gram_entropy`` (its ``np.mean`` over the two weighted terms halves the sum). Words
  are ``\\w+`` runs and single punctuation marks (ROME uses nltk's ``word_tokenize``; the regex avoids the
  dependency and agrees on plain English prose up to contractions). A text that repeats itself has low entropy.
  Because the entropy grows with length, :func:`is_fluent` compares a text with the largest entropy a text of the
  same number of words can have (all n-grams distinct) and filters degenerate outputs (loops, empty strings),
  which would otherwise pass the pronoun metrics trivially.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

FEMALE_MALE_SUBJECT = ("she", "he")
GENDERED_PRONOUNS = ("she", "he", "her", "him", "hers", "his", "herself", "himself")

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def word_tokens(text: str) -> list[str]:
    """The words of ``text`` as the fluency metric counts them: ``\\w+`` runs and single punctuation marks.

    Example:
        >>> word_tokens("Hi, Ana.")
        ['Hi', ',', 'Ana', '.']
    """
    return _WORD.findall(text)


def _has_word(text: str, words: tuple[str, ...]) -> bool:
    pattern = r"(?<![\w])(?:" + "|".join(re.escape(w) for w in words) + r")(?![\w])"
    return re.search(pattern, text, flags=re.IGNORECASE) is not None


def json_objects(text: str) -> Iterator[dict]:
    """Every JSON object that starts at some ``{`` of ``text`` and parses (``json.JSONDecoder.raw_decode``).

    Example:
        >>> list(json_objects('Sure! {"name": "Ana", "occupation": "nurse"} Done.'))
        [{'name': 'Ana', 'occupation': 'nurse'}]
    """
    decoder = json.JSONDecoder()
    at = text.find("{")
    while at >= 0:
        try:
            value, _ = decoder.raw_decode(text, at)
        except ValueError:
            value = None
        if isinstance(value, dict):
            yield value
        at = text.find("{", at + 1)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def normalise_occupation(occupation: str) -> str:
    """``"software_engineer"`` / ``"Software Engineer"`` -> ``"software engineer"``."""
    return " ".join(occupation.replace("_", " ").lower().split())


def json_format_ok(text: str) -> bool:
    """F.Acc of one output: some ``{...}`` substring parses as a JSON object.

    The paper's metric: equal to the official code's ``evaluate_json_EM`` (pastalib 0.1.3), which tries
    ``json.loads`` on every substring from a ``{`` to a ``}`` (a test checks the two agree). See
    :func:`json_complete_ok` for the strict variant.

    Example:
        >>> json_format_ok('{"name": "Ana", "occupation": "nurse"}'), json_format_ok('{"name": Ana}')
        (True, False)
    """
    return next(json_objects(text), None) is not None


def json_complete_ok(text: str) -> bool:
    """Strict F.Acc of one output: the *first* ``{`` opens an object that parses (text around it is allowed).

    The paper's F.Acc (:func:`json_format_ok`, the official ``evaluate_json_EM``) accepts any ``{...}`` that
    parses, so an inner object closed inside a runaway, never-closed outer one counts as formatted; this one does
    not: the answer must be one complete object.

    Example:
        >>> json_complete_ok('{"a": {"b": 1}'), json_format_ok('{"a": {"b": 1}')
        (False, True)
    """
    at = text.find("{")
    if at < 0:
        return False
    try:
        value, _ = json.JSONDecoder().raw_decode(text, at)
    except ValueError:
        return False
    return isinstance(value, dict)


def json_occupation_ok(text: str, occupation: str) -> bool:
    """P.Acc of one output: a string value of a parsed JSON object contains ``occupation`` (case-insensitive).

    As the official ``evaluate_json_pred``, except that strings inside lists count too (``["dj", "poet"]``) and
    underscores and runs of spaces are normalised on both sides.

    Example:
        >>> json_occupation_ok('{"name": "Ana", "occupation": "Registered Nurse"}', "nurse")
        True
    """
    target = normalise_occupation(occupation)
    if not target:
        raise ValueError("json_occupation_ok needs a non-empty occupation to look for.")
    return any(target in normalise_occupation(s) for obj in json_objects(text) for s in _strings(obj))


def no_subject_pronouns(text: str) -> bool:
    """Pronoun Acc of one output: neither "she" nor "he" occurs as a word (any case)."""
    return not _has_word(text, FEMALE_MALE_SUBJECT)


def no_gendered_pronouns(text: str) -> bool:
    """Pronoun A.Acc of one output: none of she, he, her, him, hers, his, herself, himself occurs as a word.

    Example:
        >>> no_gendered_pronouns("They studied history there."), no_gendered_pronouns("It is HIS.")
        (True, False)
    """
    return not _has_word(text, GENDERED_PRONOUNS)


def ngram_entropy(text: str, n: int) -> float:
    """Entropy (bits) of the n-gram frequency distribution of ``text``'s words; 0 for fewer than n words."""
    words = word_tokens(text)
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    total = sum(grams.values())
    return -sum(c / total * math.log2(c / total) for c in grams.values()) if total else 0.0


def fluency(text: str) -> float:
    """ROME's generation fluency of one text: ``(2/3 * H_2 + 4/3 * H_3) / 2`` in bits (higher = less repetitive).

    Example:
        >>> fluency("a b a b a b a b") < fluency("the cat sat on the mat and slept")
        True
    """
    return (2 / 3 * ngram_entropy(text, 2) + 4 / 3 * ngram_entropy(text, 3)) / 2


def max_fluency(n_words: int) -> float:
    """The fluency of a text of ``n_words`` words whose 2- and 3-grams are all distinct (the upper bound)."""
    h2 = math.log2(n_words - 1) if n_words > 1 else 0.0
    h3 = math.log2(n_words - 2) if n_words > 2 else 0.0
    return (2 / 3 * h2 + 4 / 3 * h3) / 2


def is_fluent(text: str, min_words: int = 5, min_ratio: float = 0.8) -> bool:
    """True when ``text`` has at least ``min_words`` words and ``fluency >= min_ratio * max_fluency(len)``.

    The filter for degenerate generations: an empty output or a loop ("they they they ...") has no gendered
    pronoun but is not a rewrite of the text. Relative to the length-matched maximum, so short and long outputs
    are judged alike (a repetition-free text scores 1.0, a two-word loop about 0.2).
    """
    if min_words < 3 or not 0.0 < min_ratio <= 1.0:
        raise ValueError("is_fluent needs min_words >= 3 and 0 < min_ratio <= 1.")
    n = len(word_tokens(text))
    return n >= min_words and fluency(text) >= min_ratio * max_fluency(n)
