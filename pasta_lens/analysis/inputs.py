"""What the analysis helpers take: a prompt with its span, a metric, and the steering plan to analyse.

A prompt is an :class:`~pasta_lens.spans.Emphasis` (prompt tokens + key mask, from :func:`pasta_lens.emphasize`)
or a task's :class:`~pasta_lens.objectives.ProfilingExample` (prompt + teacher-forced answer tokens + a key mask
over the prompt); :func:`prompt_inputs` gives both as ``(tokens, key_mask, attention_mask)``. What is steered is
resolved once by :func:`analysis_plan` (:func:`pasta_lens.plan.resolve_plan`), so a profile is analysed exactly
as :func:`pasta_lens.generate` steers it: its own per-head alphas and recorded schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from pasta_lens.objectives import ProfilingExample
from pasta_lens.plan import AlphaSpec, HeadSpec, ScalePosition, SteeringPlan, resolve_plan
from pasta_lens.registry import default_profile
from pasta_lens.spans import Emphasis

Metric = Callable[[Float[Tensor, "batch pos vocab"]], Tensor]
"""Logits -> a scalar or one value per batch row (higher = more of the steered behaviour)."""

Prompt = Emphasis | ProfilingExample
"""What the helpers run: an :class:`Emphasis` (prompt tokens + key mask) or a task's
:class:`~pasta_lens.objectives.ProfilingExample` (prompt + teacher-forced answer tokens + key mask over the prompt).
"""


def prompt_inputs(
    prompt: Prompt,
) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch prompt"], Int[Tensor, "batch pos"]]:
    """``(tokens, key_mask, attention_mask)`` of an Emphasis or a ProfilingExample (one without a mask: all ones).

    Example:
        >>> tokens, key_mask, attention_mask = prompt_inputs(emphasize(model, "Maria is a nurse. *Answer in JSON.*"))
    """
    if isinstance(prompt, Emphasis):
        return prompt.tokens, prompt.key_mask, prompt.attention_mask
    if isinstance(prompt, ProfilingExample):
        mask = prompt.attention_mask
        return prompt.tokens, prompt.key_mask, torch.ones_like(prompt.tokens) if mask is None else mask
    raise ValueError(
        f"Expected an Emphasis (from emphasize(...)) or a ProfilingExample (from a task's "
        f"profiling_examples(...)); got {type(prompt).__name__}."
    )


def unpadded_inputs(prompt: Prompt) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch prompt"]]:
    """``(tokens, key_mask)`` of a prompt that has no padding (TL's patching runs without an attention mask).

    Raises:
        ValueError: the prompt is padded (patch one prompt at a time).
    """
    tokens, key_mask, attention_mask = prompt_inputs(prompt)
    if not bool(attention_mask.bool().all()):
        raise ValueError(
            "Head patching runs the tokens without an attention mask (as TransformerLens' patching "
            "utilities do), so the prompts must not be padded: patch one prompt at a time."
        )
    return tokens, key_mask


def z_hook_name(layer: int) -> str:
    """The hook point of layer ``layer``'s per-head outputs: ``blocks.{layer}.attn.hook_z``."""
    return f"blocks.{layer}.attn.hook_z"


def analysis_plan(
    model: Any,
    heads: HeadSpec | None,
    alpha: AlphaSpec | None = None,
    scale_position: ScalePosition = "exclude",
    allow_transfer: bool = False,
) -> SteeringPlan:
    """What to steer on ``model``, resolved once (:func:`pasta_lens.plan.resolve_plan`).

    ``heads=None``: the model's default profile itself (:func:`pasta_lens.registry.default_profile`), so a learned
    default is steered at its own per-head alphas and with its recorded schedule, exactly as
    :func:`pasta_lens.generate` steers it; a profile from another model is refused unless ``allow_transfer=True``,
    as in :func:`pasta_lens.steer`.

    Example:
        >>> analysis_plan(model, {20: [0, 3]}).describe()
        'heads: 2 (2 heads given)   alpha: 0.01   schedule: all'
    """
    heads = default_profile(model)[0] if heads is None else heads
    return resolve_plan(model, heads, alpha, scale_position=scale_position, allow_transfer=allow_transfer)
