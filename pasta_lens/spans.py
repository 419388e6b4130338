"""Emphasis: from marked-up text to a per-token key mask.

PASTA steers attention towards a user-chosen part of the prompt. This module turns what the user marks
(``"Maria is a nurse. *Answer in JSON.*"``) into what the steering hooks need: a token tensor and a boolean
*key mask* ``[batch, pos]`` that is True at every token position the model should attend to more.

The pipeline, per text:

1. **Parse** (:mod:`pasta_lens.markup`, whose names are importable from here too): remove the markers
   (``*span*`` by default; any ``(open, close)`` pair such as ``("<em>", "</em>")``; a backslash escapes a marker)
   and keep the character ranges they enclosed. Instead of markup, spans can be given as substrings (``"JSON"``
   or ``("the", 2)`` for the second occurrence) or as character ranges.
2. **Render**: with ``chat=True`` the clean text becomes the user turn of the model's chat template; the spans
   are shifted to where the text lands inside the rendered string, found without searching for the text
   (:func:`pasta_lens.chat.render_chat`).
3. **Tokenise**, each token with the character range it holds (:func:`pasta_lens.offsets.token_ranges`: the
   tokenizer's offset mapping when it passes a check, else found by decoding prefixes, for tokenizers whose
   offsets are zero-width or missing). A token is emphasised when its character range overlaps an emphasised
   character (a token the tokenizer inserted, such as SentencePiece's leading ``'▁'``, holds no character and is
   not). Several spans are a union.
4. **Batch**: several texts are left-padded (the layout ``generate`` needs) with an ``attention_mask``; padding
   positions are never emphasised.

Token positions are absolute key indices: the BOS token (prepended for plain text when the model's
``cfg.default_prepend_bos`` says so, never for chat-templated text, whose template already starts with it) and
the left padding are counted, so ``key_mask[b, j]`` describes key ``j`` of ``hook_pattern`` for row ``b``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from pasta_lens.chat import render_chat
from pasta_lens.markup import (
    CharSpan,
    SubstringSpec,
    char_range_specs,
    find_substrings,
    merge_spans,
    parse_markup,
)
from pasta_lens.markup import substring_specs as substring_specs  # re-exported: callers import it from here
from pasta_lens.offsets import emphasised_tokens, token_ranges, tokenizer_of


@dataclass(frozen=True)
class Emphasis:
    """Tokens of one or more prompts with the emphasised key positions marked.

    Attributes:
        tokens: token ids, left-padded, ``[batch, pos]``.
        attention_mask: 1 for real tokens, 0 for padding, ``[batch, pos]``.
        key_mask: True where a token overlaps an emphasised character, ``[batch, pos]``.
        texts: per row, the string that was tokenised (markers removed, chat template rendered).
        char_spans: per row, the emphasised character ranges in ``texts[row]`` (merged, sorted).
        prepend_bos: whether a BOS token was put in front of each row's tokens.

    ``text`` and ``spans`` give row 0's values when the batch has one row (the common case of a single
    prompt) and the per-row tuples otherwise.
    """

    tokens: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    key_mask: Bool[Tensor, "batch pos"]
    texts: tuple[str, ...]
    char_spans: tuple[tuple[CharSpan, ...], ...]
    prepend_bos: bool

    def __post_init__(self) -> None:
        shape = tuple(self.tokens.shape)
        if self.tokens.ndim != 2:
            raise ValueError(f"Emphasis.tokens must be [batch, pos]; got shape {shape}.")
        for name in ("attention_mask", "key_mask"):
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(
                    f"Emphasis.{name} must have the shape of tokens {shape}; got {tuple(getattr(self, name).shape)}."
                )
        if self.key_mask.dtype != torch.bool:
            raise ValueError("Emphasis.key_mask must be a bool tensor (True = emphasised).")
        if len(self.texts) != shape[0] or len(self.char_spans) != shape[0]:
            raise ValueError("Emphasis.texts and Emphasis.char_spans need one entry per batch row.")

    @property
    def text(self) -> str | tuple[str, ...]:
        """The tokenised string (one prompt) or the tuple of strings (a batch)."""
        return self.texts[0] if len(self.texts) == 1 else self.texts

    @property
    def spans(self) -> tuple[CharSpan, ...] | tuple[tuple[CharSpan, ...], ...]:
        """Emphasised character ranges of ``text`` (one prompt) or per row (a batch)."""
        return self.char_spans[0] if len(self.char_spans) == 1 else self.char_spans

    @property
    def batch_size(self) -> int:
        return int(self.tokens.shape[0])

    def to(self, device: str | torch.device) -> Emphasis:
        """A copy with the tensors on ``device``."""
        return Emphasis(
            self.tokens.to(device),
            self.attention_mask.to(device),
            self.key_mask.to(device),
            self.texts,
            self.char_spans,
            self.prepend_bos,
        )


def _default_prepend_bos(model_or_tokenizer: Any) -> bool:
    cfg = getattr(model_or_tokenizer, "cfg", None)
    return bool(getattr(cfg, "default_prepend_bos", True)) if cfg is not None else True


def _tokenise_row(tok: Any, text: str, spans: tuple[CharSpan, ...], bos_id: int | None) -> tuple[list[int], list[bool]]:
    ranges = token_ranges(tok, text)
    ids, mask = list(ranges.ids), emphasised_tokens(tok, text, ranges, spans)
    if bos_id is not None:
        ids, mask = [bos_id] + ids, [False] + mask
    return ids, mask


def emphasize(
    model_or_tokenizer: Any,
    text: str | Sequence[str],
    *,
    chat: bool = False,
    markers: str | tuple[str, str] = "*",
    substrings: SubstringSpec | Sequence[SubstringSpec] | Sequence[Sequence[SubstringSpec]] | None = None,
    char_ranges: CharSpan | Sequence[CharSpan] | Sequence[Sequence[CharSpan]] | None = None,
    system_prompt: str | None = None,
    prepend_bos: bool | None = None,
) -> Emphasis:
    """Tokenise ``text`` and mark the emphasised key positions.

    Args:
        model_or_tokenizer: a TransformerLens model (its ``tokenizer`` and ``cfg.default_prepend_bos`` are used)
            or a Hugging Face tokenizer (fast or not: see :mod:`pasta_lens.offsets`).
        text: one prompt or a list of prompts (a left-padded batch).
        chat: render the model's chat template around each text (user turn, generation prompt appended).
        markers: emphasis markers in ``text``; ignored when ``substrings`` or ``char_ranges`` are given.
        substrings: emphasise these substrings of the (literal) text instead of parsing markup: a string, a
            ``(string, n)`` pair for the n-th occurrence, or a list of them; for a batch, one entry per row.
        char_ranges: emphasise these ``(start, end)`` character ranges of the (literal) text: one pair or a list of
            pairs; for a batch, one entry per row.
        system_prompt: with ``chat=True``, an optional system message.
        prepend_bos: put the tokenizer's BOS in front; default ``model.cfg.default_prepend_bos`` for plain text
            and False for chat text (the template already starts with its own BOS-like token).

    Returns:
        An :class:`Emphasis` whose ``tokens`` equal ``model.to_tokens(em.text, prepend_bos=...)`` for one row.

    ``substrings="nurse"`` is one substring and ``char_ranges=(0, 5)`` one range; for a batch, give one entry
    per text (each entry such a string, pair, or list of them).

    Raises:
        ValueError: bad markup, a substring not found, a span that covers no token, a tokenizer whose tokens
            cannot be located in the text (:func:`pasta_lens.offsets.token_ranges`), a prompt longer than the
            model's context (``model.cfg.n_ctx``), a text that is not a string.

    Example:
        >>> em = emphasize(model, "Maria is a nurse. *Answer in JSON.*", chat=True)
        >>> em.tokens[0, em.key_mask[0]]  # the tokens of "Answer in JSON."
    """
    tok = tokenizer_of(model_or_tokenizer)
    single = isinstance(text, str)
    if not single and (isinstance(text, (bytes, Mapping)) or not isinstance(text, Iterable)):
        raise ValueError(
            f"emphasize takes a prompt string or a list of prompt strings; got {type(text).__name__} {text!r:.80}."
        )
    rows: list[str] = [text] if isinstance(text, str) else list(text)
    if not rows:
        raise ValueError("emphasize got an empty list of texts; pass at least one prompt.")
    for row in rows:
        if not isinstance(row, str):
            raise ValueError(
                f"emphasize takes a prompt string or a list of prompt strings; got an entry of "
                f"type {type(row).__name__}: {row!r:.80}."
            )
    if substrings is not None and char_ranges is not None:
        raise ValueError("Pass either substrings or char_ranges, not both.")
    per_row_specs: list[Any] = [None] * len(rows)
    for name, given in (("substrings", substrings), ("char_ranges", char_ranges)):
        if given is None:
            continue
        if single:
            per_row_specs = [given]
        elif isinstance(given, str) or not isinstance(given, (list, tuple)):
            raise ValueError(
                f"For a batch of {len(rows)} texts, {name} needs a list with one entry per text; got {given!r:.80}."
            )
        else:
            per_row_specs = list(given)
        if len(per_row_specs) != len(rows):
            raise ValueError(f"{name} needs one sequence per text ({len(rows)}); got {len(per_row_specs)}.")
    if prepend_bos is None:
        prepend_bos = False if chat else _default_prepend_bos(model_or_tokenizer)
    bos_id = tok.bos_token_id if prepend_bos else None
    if prepend_bos and bos_id is None:
        raise ValueError("prepend_bos=True but the tokenizer has no BOS token; pass prepend_bos=False.")
    n_ctx = getattr(getattr(model_or_tokenizer, "cfg", None), "n_ctx", None)

    texts, all_spans, all_ids, all_masks = [], [], [], []
    for index, (row, spec) in enumerate(zip(rows, per_row_specs)):
        if substrings is not None:
            clean, spans = row, find_substrings(row, spec)
        elif char_ranges is not None:
            clean, spans = row, char_range_specs(spec, len(row))
        else:
            clean, spans = parse_markup(row, markers)
        if not spans:
            raise ValueError(f"No emphasis in {row!r}: mark a span like *this*, or pass substrings= or char_ranges=.")
        spans = merge_spans(spans)
        if chat:
            rendering = render_chat(tok, clean, system_prompt=system_prompt)
            clean, spans = rendering.text, rendering.shift(spans)
        ids, mask = _tokenise_row(tok, clean, spans, bos_id)
        if n_ctx is not None and len(ids) > int(n_ctx):
            which = "The prompt" if single else f"Prompt {index}"
            raise ValueError(
                f"{which} is {len(ids)} tokens long but the model's context holds {int(n_ctx)} "
                "(cfg.n_ctx): shorten the prompt (and leave room for the tokens to generate)."
            )
        texts.append(clean)
        all_spans.append(spans)
        all_ids.append(ids)
        all_masks.append(mask)

    width = max(len(ids) for ids in all_ids)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    key_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for b, (ids, mask) in enumerate(zip(all_ids, all_masks)):
        pad = width - len(ids)  # left padding: real tokens end at the last position
        tokens[b, pad:] = torch.tensor(ids, dtype=torch.long)
        attention_mask[b, pad:] = 1
        key_mask[b, pad:] = torch.tensor(mask, dtype=torch.bool)
    device = getattr(getattr(model_or_tokenizer, "cfg", None), "device", None)
    em = Emphasis(tokens, attention_mask, key_mask, tuple(texts), tuple(all_spans), bool(prepend_bos))
    return em.to(device) if device is not None else em
