"""Chat templates: render a user text as the last user turn, and know exactly where it lies in the rendering.

PASTA on a chat model steers towards part of the *user's* text, so the emphasised characters must be found inside
the rendered prompt. They are never searched for (the user text may also occur in the template: ``"assistant"``,
``"user"``, ``"<|im_start|>"``). :func:`render_chat` renders the template once with a unique sentinel as the user
content, splits there into ``prefix`` and ``suffix``, and checks that rendering the real text gives exactly

    rendered(text) == prefix + text + suffix,      so the text lies at [len(prefix), len(prefix) + len(text))

:func:`assistant_turn_end` reads the end-of-turn marker a chat model writes after its answer the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pasta_lens.offsets import CharRange, tokenizer_of


@dataclass(frozen=True)
class ChatRendering:
    """A chat template rendered around one user turn, and where the user's text lies in it.

    Attributes:
        text: the rendered prompt (generation prompt appended).
        start, end: ``text[start:end]`` is exactly the user text of the last user turn.
    """

    text: str
    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end <= len(self.text):
            raise ValueError(f"ChatRendering needs 0 <= start <= end <= len(text); got {self.start}, {self.end}.")

    def shift(self, spans: Sequence[CharRange]) -> tuple[CharRange, ...]:
        """Character ranges of the user text moved to where it lies in :attr:`text`."""
        return tuple((s + self.start, e + self.start) for s, e in spans)


_SENTINEL = "\x00pasta-lens-user-text-{}\x00"


def assistant_turn_end(model_or_tokenizer: Any) -> str:
    """What the chat template writes right after an assistant message: the end-of-turn marker a chat model
    generates to stop (``"<|im_end|>"`` for ChatML templates such as SmolLM2's; trailing whitespace dropped).

    Found like :func:`render_chat` finds the user turn: the template is rendered with a sentinel as the content of
    an assistant turn, and what follows the sentinel is the marker. A template that writes nothing after the
    message falls back to the tokenizer's ``eos_token``.

    Raises:
        ValueError: the tokenizer has no chat template, or neither the template nor ``eos_token`` ends a turn.

    Example:
        >>> assistant_turn_end(tok)
        '<|im_end|>'
    """
    tok = tokenizer_of(model_or_tokenizer)
    if not getattr(tok, "chat_template", None):
        raise ValueError(
            "The end of an assistant turn needs a tokenizer with a chat template; this one has none "
            "(plain-text tasks have no turn to end)."
        )
    sentinel = _SENTINEL.format("assistant")
    text = tok.apply_chat_template(
        [{"role": "user", "content": "?"}, {"role": "assistant", "content": sentinel}], tokenize=False
    )
    if text.count(sentinel) != 1:
        raise ValueError(
            "The chat template does not show the assistant's message exactly once, so its end-of-turn "
            "marker cannot be read off it."
        )
    end = text.split(sentinel)[1].rstrip()
    end = end or (getattr(tok, "eos_token", None) or "")
    if not end:
        raise ValueError(
            "The chat template writes nothing after an assistant message and the tokenizer has no "
            "eos_token: there is no end-of-turn marker to score."
        )
    return end


def render_chat(
    model_or_tokenizer: Any,
    user_text: str,
    *,
    system_prompt: str | None = None,
    history: Sequence[Mapping[str, str]] = (),
) -> ChatRendering:
    """Render ``user_text`` as the last user turn of the chat template and say where it lies.

    The position is never searched for (the user text may also occur in the template: ``"assistant"``,
    ``"user"``, ``"<|im_start|>"``). The template is rendered once with a sentinel string as the user content;
    the sentinel must occur exactly once, and splits the rendering into ``prefix`` and ``suffix``. Rendering
    the real text must then give exactly ``prefix + user_text + suffix``, so ``start = len(prefix)``.

    Args:
        model_or_tokenizer: a TransformerLens model or a Hugging Face tokenizer with a chat template.
        user_text: the content of the last user turn.
        system_prompt: an optional system message first.
        history: earlier turns, ``[{"role": "user", "content": ...}, {"role": "assistant", ...}, ...]``
            (e.g. few-shot demonstrations), between the system message and the user turn.

    Raises:
        ValueError: the tokenizer has no chat template, or the template changes the user text (e.g. trims it),
            so that its place cannot be known exactly.

    Example:
        >>> r = render_chat(tok, "assistant")
        >>> r.text[r.start:r.end]
        'assistant'
    """
    tok = tokenizer_of(model_or_tokenizer)
    if not getattr(tok, "chat_template", None):
        raise ValueError(
            "chat=True needs a tokenizer with a chat template; this one has none. "
            "Use chat=False, or render the template yourself and mark the span in it."
        )
    if not isinstance(user_text, str):
        raise ValueError(f"The user text must be a string; got {type(user_text).__name__}.")
    head = [{"role": "system", "content": system_prompt}] if system_prompt is not None else []
    head += [dict(m) for m in history]

    def rendered(content: str) -> str:
        return tok.apply_chat_template(
            head + [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )

    given = [user_text] + [str(m.get("content", "")) for m in head]
    sentinel = next(c for c in (_SENTINEL.format(i) for i in range(len(given) + 1)) if not any(c in g for g in given))
    template = rendered(sentinel)
    if template.count(sentinel) != 1:
        raise ValueError(
            f"The chat template shows the user turn {template.count(sentinel)} times instead of "
            "once, so the emphasised text cannot be located; render the prompt yourself and pass "
            "chat=False with the span marked in the rendered string."
        )
    prefix, suffix = template.split(sentinel)
    full = rendered(user_text)
    if full != prefix + user_text + suffix:
        hint = (
            " (it strips leading/trailing whitespace: pass the text without it)"
            if full == prefix + user_text.strip() + suffix
            else ""
        )
        raise ValueError(
            f"The chat template changes the user text{hint}, so the emphasised characters cannot "
            "be located exactly; render the prompt yourself and pass chat=False with the span "
            "marked in the rendered string."
        )
    return ChatRendering(full, len(prefix), len(prefix) + len(user_text))
