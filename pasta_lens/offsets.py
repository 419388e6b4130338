"""Which characters of a text each token holds: the tokenizer's offsets, checked, or found by decoding prefixes.

Emphasis is given in characters and steering needs tokens, so every token needs its character range
``[start, end)`` in the text. Fast tokenizers report one (``offset_mapping``), but not always truthfully: some
return *zero-width* ranges ``(s, s)`` for tokens that plainly hold characters (Llama-3 / Llama-3.2 tokenizers,
tokenizers issues #1517, #1553, #1688), and Python ("slow") tokenizers return none at all. A span located with
such offsets silently marks no token, or the wrong one.

:func:`token_ranges` therefore checks the reported offsets (:func:`offsets_problem`: inside the text, in order,
no zero-width range on a token that decodes to visible text) and, when they fail the check or are missing, finds
the ranges from the tokens themselves by decoding prefixes:

    end_k = len(decode(ids[:k]))   when decode(ids[:k]) is a prefix of the text,   range_k = [end_{k-1}, end_k)

A token that ends inside a character (a byte-level piece of a multi-byte character) decodes to no clean prefix;
it shares the range of the token that completes the character, as fast tokenizers' own offsets do. A token's
leading space belongs to it (``" nurse"`` holds the space). If the decoded tokens do not give back the text (a
tokenizer that normalises, e.g. lower-cases), the characters cannot be located and the result is an error that
says so, never a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

CharRange = tuple[int, int]
"""A half-open character range ``(start, end)``; ``start == end`` holds no character."""

Source = Literal["offsets", "decoded"]


def tokenizer_of(model_or_tokenizer: Any) -> Any:
    """The Hugging Face tokenizer of a TransformerLens model (``model.tokenizer``), or the tokenizer itself.

    Raises:
        ValueError: neither a model with a tokenizer nor something that tokenises text.
    """
    tok = getattr(model_or_tokenizer, "tokenizer", None) or model_or_tokenizer
    if not callable(tok) or not callable(getattr(tok, "decode", None)):
        raise ValueError(
            f"Expected a TransformerLens model with a tokenizer or a Hugging Face tokenizer; got "
            f"{type(model_or_tokenizer).__name__}."
        )
    return tok


@dataclass(frozen=True)
class TokenRanges:
    """A text's tokens and the character range of each.

    Attributes:
        ids: token ids of the text (no special tokens added).
        ranges: ``ranges[i]`` is the character range token ``i`` holds (zero-width: it holds none).
        source: ``"offsets"`` (the tokenizer's ``offset_mapping``, checked) or ``"decoded"`` (found by decoding
            prefixes, because the offsets were missing or failed the check).
        why: when ``source == "decoded"``, what was wrong with the offsets.
    """

    ids: tuple[int, ...]
    ranges: tuple[CharRange, ...]
    source: Source
    why: str = ""

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.ranges):
            raise ValueError(
                f"TokenRanges needs one range per token; got {len(self.ids)} ids and {len(self.ranges)} ranges."
            )
        if self.source not in ("offsets", "decoded"):
            raise ValueError(f"TokenRanges.source must be 'offsets' or 'decoded'; got {self.source!r}.")


def _decode(tok: Any, ids: Sequence[int]) -> str:
    return tok.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def reported_offsets(tok: Any, text: str) -> tuple[list[int], list[CharRange] | None, str]:
    """``(ids, offsets, why)``: the tokenizer's ids and ``offset_mapping`` for ``text`` (no special tokens added);
    ``offsets`` is None, with ``why`` saying so, when the tokenizer cannot report them (a Python tokenizer)."""
    try:
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, TypeError, ValueError) as err:  # Python tokenizers refuse the option
        ids = list(tok(text, add_special_tokens=False)["input_ids"])
        return ids, None, f"the tokenizer reports no offsets ({type(err).__name__}: {err})"
    ids = list(enc["input_ids"])
    offsets = enc.get("offset_mapping") if hasattr(enc, "get") else None
    if offsets is None:
        return ids, None, "the tokenizer reports no offsets (no offset_mapping in its output)"
    return ids, [(int(a), int(b)) for a, b in offsets], ""


def offsets_problem(tok: Any, text: str, ids: Sequence[int], offsets: Sequence[CharRange]) -> str:
    """Why ``offsets`` cannot be trusted for ``ids`` of ``text``, in a phrase; ``""`` when they pass the check.

    Checked: one range per token, each inside the text, starts in order, and no zero-width range on a token that
    decodes to any text (whitespace included: a newline token with no range would leave a span on it unmarked).
    The check is cheap (one decode per zero-width token); offsets it passes are used as they are.
    """
    if len(offsets) != len(ids):
        return f"{len(offsets)} offsets for {len(ids)} tokens"
    previous = 0
    for i, (a, b) in enumerate(offsets):
        if not 0 <= a <= b <= len(text):
            return f"token {i} has the range ({a}, {b}) outside the text of {len(text)} characters"
        if a < previous:
            return f"token {i} starts at {a}, before token {i - 1} (at {previous})"
        previous = a
        if a == b and _decode(tok, [ids[i]]):
            return f"token {i} ({_decode(tok, [ids[i]])!r}) has the zero-width range ({a}, {b}) although it holds text"
    return ""


def decoded_ranges(tok: Any, text: str, ids: Sequence[int]) -> tuple[CharRange, ...]:
    """Each token's character range, from decoding the prefixes ``ids[:k]`` (see the module docstring).

    Raises:
        ValueError: decoding the tokens does not give back ``text`` (the tokenizer normalises the text).
    """
    # SentencePiece-style decoders drop the text's leading space (they take it for the one the tokenizer adds):
    # the decoded tokens then give the text from `base` on, and the first token holds the characters before it.
    full = _decode(tok, ids)
    base = len(text) - len(full) if text.endswith(full) and text[: len(text) - len(full)].isspace() else 0
    body = text[base:]
    ranges: list[CharRange | None] = [None] * len(ids)
    done, pending = 0, []  # characters of `body` located so far; tokens waiting for a clean prefix
    for k in range(1, len(ids) + 1):
        pending.append(k - 1)
        prefix = _decode(tok, ids[:k])
        if len(prefix) >= done and body.startswith(prefix) and not prefix.endswith("\ufffd"):
            start = 0 if pending[0] == 0 else base + done  # the first token holds the dropped leading space
            for i in pending:
                ranges[i] = (start, base + len(prefix))
            done, pending = len(prefix), []
    if pending or base + done != len(text):
        raise ValueError(
            f"The tokenizer's offsets cannot be used and decoding its tokens does not give back the text "
            f"({_decode(tok, ids)[:60]!r} for {text[:60]!r}): it normalises the text, so the emphasised characters "
            "cannot be located. Use a fast tokenizer with correct offsets (tokenizers >= 0.20.1 fixes the "
            "Llama-3 ones), or mark the span on the text as the tokenizer decodes it."
        )
    return tuple(r for r in ranges if r is not None)


def token_ranges(model_or_tokenizer: Any, text: str) -> TokenRanges:
    """Tokenise ``text`` (no special tokens added) and give each token its character range, reliably.

    The tokenizer's ``offset_mapping`` is used when it passes :func:`offsets_problem`; otherwise (zero-width
    ranges on visible tokens, no offsets at all, ranges out of order) the ranges come from decoding prefixes
    (:func:`decoded_ranges`), and :attr:`TokenRanges.why` says why.

    Raises:
        ValueError: the offsets cannot be trusted and decoding does not give back the text either.

    Example:
        >>> r = token_ranges(tok, "Maria is a nurse.")
        >>> r.source, r.ranges[:2]          # "Maria", " is" (a token's leading space belongs to it)
        ('offsets', ((0, 5), (5, 8)))
    """
    tok = tokenizer_of(model_or_tokenizer)
    ids, offsets, why = reported_offsets(tok, text)
    if offsets is not None:
        why = offsets_problem(tok, text, ids, offsets)
        if not why:
            return TokenRanges(tuple(ids), tuple(offsets), "offsets")
    return TokenRanges(tuple(ids), decoded_ranges(tok, text, ids), "decoded", why)


def inserted_token(tok: Any, token_id: int, chars: str) -> bool:
    """Whether a token holds none of the characters its range points at: one the tokenizer inserted.

    A SentencePiece-style (Metaspace) tokenizer writes a ``'▁'`` token before text that does not start with a
    space (``"Ana"`` -> ``'▁'``, ``'Ana'``) and gives it the offsets of the first character; it decodes to
    nothing but a space, while those characters are not spaces. Such a token is never emphasised.
    """
    return not tok.decode([token_id]).strip() and not chars.isspace()


def emphasised_tokens(tok: Any, text: str, ranges: TokenRanges, spans: Sequence[CharRange]) -> list[bool]:
    """Per token: whether its range overlaps an emphasised character of ``spans`` (inserted tokens never do).

    Raises:
        ValueError: a span overlaps no token (e.g. only characters the tokenizer drops).
    """
    mask = [any(a < e and s < b for s, e in spans) for a, b in ranges.ranges]
    mask = [m and not inserted_token(tok, i, text[a:b]) for m, i, (a, b) in zip(mask, ranges.ids, ranges.ranges)]
    for s, e in spans:
        if not any(a < e and s < b for a, b in ranges.ranges):
            raise ValueError(
                f"Emphasised span {text[s:e]!r} at characters {s}:{e} covers no token of "
                f"{text!r}; widen the span to include at least one visible character."
            )
    return mask
