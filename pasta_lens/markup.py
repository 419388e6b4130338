"""Which characters of a text are emphasised: markup parsed, substrings found, character ranges checked.

The first step of :func:`pasta_lens.emphasize`, on characters only (no tokenizer, no model). A user marks the span
to steer towards in one of three ways, and each becomes the clean text with half-open character ranges into it:

* **markup**: :func:`parse_markup` removes the markers (``*span*`` by default; any ``(open, close)`` pair such as
  ``("<em>", "</em>")``; a backslash escapes a marker) and keeps the ranges they enclosed;
* **substrings**: :func:`find_substrings` locates ``"JSON"``, or ``("the", 2)`` for the second occurrence;
* **character ranges**: :func:`char_range_specs` checks ``(start, end)`` pairs against the text's length.

Several spans are a union (:func:`merge_spans`). :mod:`pasta_lens.spans` takes the ranges on to tokens.

Example:
    >>> parse_markup("Maria is a nurse. *Answer in JSON.*")
    ('Maria is a nurse. Answer in JSON.', ((18, 33),))
    >>> merge_spans([(5, 9), (0, 3), (2, 4)])
    ((0, 4), (5, 9))
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

CharSpan = tuple[int, int]
"""A half-open character range ``(start, end)`` in a string."""

SubstringSpec = str | tuple[str, int]
"""A substring to emphasise, or ``(substring, n)`` for its n-th occurrence (1-based)."""


def parse_markup(
    text: str, markers: str | tuple[str, str] = "*", escape: str = "\\"
) -> tuple[str, tuple[CharSpan, ...]]:
    """Remove emphasis markers from ``text`` and return the clean text with the marked character ranges.

    Args:
        text: text with spans marked, e.g. ``"Maria is a nurse. *Answer in JSON.*"``.
        markers: one string used to open and close (``"*"``, ``"**"``) or an ``(open, close)`` pair
            (``("<em>", "</em>")``).
        escape: a character that makes the next marker (or escape character) literal: ``r"2 \\* 3"``.

    Returns:
        ``(clean_text, spans)`` with spans as half-open ranges into ``clean_text``, in order.

    Raises:
        ValueError: a marker is left open, a closing marker has no opening one, or a span is empty.

    Example:
        >>> parse_markup("Maria is a nurse. *Answer in JSON.*")
        ('Maria is a nurse. Answer in JSON.', ((18, 33),))
    """
    open_m, close_m = (markers, markers) if isinstance(markers, str) else tuple(markers)
    if not open_m or not close_m:
        raise ValueError("Emphasis markers must be non-empty strings, e.g. '*' or ('<em>', '</em>').")
    out: list[str] = []
    length = 0  # len("".join(out)), kept as we go
    spans: list[CharSpan] = []
    start: int | None = None
    i, n = 0, len(text)
    while i < n:
        if escape and text.startswith(escape, i):
            rest = text[i + len(escape) :]
            literal = next((m for m in (escape, open_m, close_m) if rest.startswith(m)), None)
            if literal is not None:
                out.append(literal)
                length += len(literal)
                i += len(escape) + len(literal)
                continue
        if start is None and text.startswith(open_m, i):
            start = length
            i += len(open_m)
        elif start is not None and text.startswith(close_m, i):
            if length == start:
                raise ValueError(
                    f"Empty emphasis span at character {i} of {text!r}: put text between "
                    f"the markers {open_m!r}...{close_m!r}."
                )
            spans.append((start, length))
            start = None
            i += len(close_m)
        elif start is None and text.startswith(close_m, i):
            raise ValueError(
                f"Closing marker {close_m!r} at character {i} has no opening {open_m!r} in "
                f"{text!r}; escape it as {escape + close_m!r} to keep it as text."
            )
        else:
            out.append(text[i])
            length += 1
            i += 1
    if start is not None:
        raise ValueError(
            f"Unbalanced emphasis markers in {text!r}: an opening {open_m!r} is never closed "
            f"with {close_m!r}. Close it, or escape a literal marker as {escape + open_m!r}."
        )
    return "".join(out), tuple(spans)


def _is_occurrence_spec(spec: Any) -> bool:
    """``("the", 2)``-like: a substring and an occurrence number (not two substrings)."""
    return (
        isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str) and not isinstance(spec[1], str)
    )


def substring_specs(spec: Any) -> tuple[tuple[str, int], ...]:
    """Normalise the ``substrings=`` of one text to ``((substring, n), ...)``.

    A bare string is *one* substring (``"nurse"``, not the letters n, u, r, s, e), and a bare
    ``("the", 2)`` is one occurrence spec; otherwise a sequence of strings and ``(string, n)`` pairs.

    Raises:
        ValueError: an entry is neither, or an occurrence number is not a whole number >= 1.
    """
    if isinstance(spec, str) or _is_occurrence_spec(spec):
        spec = [spec]
    if not isinstance(spec, (list, tuple)):
        raise ValueError(
            f"substrings must be a string, a (string, n) pair or a list of them; got "
            f"{type(spec).__name__} {spec!r}. Example: substrings=['JSON', ('the', 2)]."
        )
    out = []
    for item in spec:
        if isinstance(item, str):
            sub, nth = item, 1
        elif _is_occurrence_spec(item):
            sub, nth = item
            if not _is_index(nth):
                raise ValueError(
                    f"The occurrence number in {tuple(item)!r} must be a whole number >= 1 "
                    f"(1 = first occurrence); got {nth!r}. Example: ({sub!r}, 2) for the second."
                )
            nth = operator.index(nth)
        else:
            raise ValueError(
                f"Each emphasised substring is a string or a (string, n) pair for its n-th "
                f"occurrence; got {item!r}. Example: substrings=['JSON', ('the', 2)]."
            )
        if not sub:
            raise ValueError("An emphasised substring is empty; give the text to emphasise.")
        if nth < 1:
            raise ValueError(f"Occurrence numbers start at 1; got ({sub!r}, {nth}).")
        out.append((sub, nth))
    return tuple(out)


def find_substrings(text: str, substrings: SubstringSpec | Sequence[SubstringSpec]) -> tuple[CharSpan, ...]:
    """Character ranges of ``substrings`` in ``text``; ``(s, n)`` picks the n-th occurrence (1-based).

    A bare string is one substring (see :func:`substring_specs`).

    Raises:
        ValueError: a substring is empty or does not occur (n times) in ``text``, or a spec is malformed.

    Example:
        >>> find_substrings("the cat and the dog", [("the", 2)])
        ((12, 15),)
    """
    spans = []
    for sub, nth in substring_specs(substrings):
        at = -1
        for _ in range(nth):
            at = text.find(sub, at + 1)
            if at < 0:
                raise ValueError(
                    f"Substring {sub!r} (occurrence {nth}) not found in {text!r}; pass a substring "
                    f"that occurs in the text (markers removed), or ({sub!r}, n) with a smaller n."
                )
        spans.append((at, at + len(sub)))
    return tuple(spans)


def _is_index(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    try:
        operator.index(x)
    except TypeError:
        return False
    return True


def char_range_specs(spec: Any, length: int) -> tuple[CharSpan, ...]:
    """Normalise the ``char_ranges=`` of one text (of ``length`` characters) to ``((start, end), ...)``.

    A bare ``(start, end)`` pair of integers is one range; otherwise a sequence of such pairs.

    Raises:
        ValueError: an entry is not a pair of integers, or a range is empty or outside the text.
    """
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and not any(isinstance(x, (tuple, list)) for x in spec):
        spec = [spec]  # one bare pair, e.g. (0, 3); validated as a range below
    if isinstance(spec, str) or not isinstance(spec, (list, tuple)):
        raise ValueError(
            f"char_ranges must be a (start, end) pair of integers or a list of them; got "
            f"{type(spec).__name__} {spec!r}. Example: char_ranges=[(0, 5), (18, 33)]."
        )
    out = []
    for item in spec:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and all(_is_index(x) for x in item)):
            raise ValueError(
                f"Each character range is a (start, end) pair of integers; got {item!r}. "
                "Example: char_ranges=[(0, 5), (18, 33)]."
            )
        s, e = operator.index(item[0]), operator.index(item[1])
        if not 0 <= s < e <= length:
            raise ValueError(
                f"Character range ({s}, {e}) is empty or outside the text of length "
                f"{length}; use 0 <= start < end <= len(text)."
            )
        out.append((s, e))
    return tuple(out)


def merge_spans(spans: Sequence[CharSpan]) -> tuple[CharSpan, ...]:
    """Sort and merge overlapping or touching ranges (several spans are a union)."""
    merged: list[list[int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return tuple((s, e) for s, e in merged)
