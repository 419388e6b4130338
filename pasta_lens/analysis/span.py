"""Does steering move attention onto the span? Attention mass on the emphasised keys per head, unsteered and steered.

:func:`span_attention` runs the model twice (unsteered, steered), caches only ``blocks.L.attn.hook_pattern`` and
reports, per ``(layer, head)``, the attention mass on the emphasised keys averaged over query rows::

    mass[l, h] = mean_{b, q in Q_b} sum_{k in E_b} A_lh[b, q, k]

where ``E_b`` are row b's emphasised keys and ``Q_b`` its real (non-padding) query positions from the first
emphasised token on (earlier queries cannot see the span under causal attention, so they would only add zeros to
the mean).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from pasta_lens.analysis.inputs import Prompt, analysis_plan, prompt_inputs
from pasta_lens.plan import AlphaSpec, Head, HeadSpec, ScalePosition, normalize_heads, validate_heads
from pasta_lens.steering import steer


@dataclass(frozen=True)
class SpanAttention:
    """Attention mass on the emphasised span per head, without and with steering.

    Attributes:
        unsteered: ``[layer, head]`` mass in the unsteered run, each in [0, 1].
        steered: ``[layer, head]`` mass with ``heads`` steered.
        heads: the steered ``(layer, head)`` pairs.
    """

    unsteered: Float[Tensor, "layer head"]
    steered: Float[Tensor, "layer head"]
    heads: tuple[Head, ...]

    def __post_init__(self) -> None:
        if self.unsteered.ndim != 2 or self.unsteered.shape != self.steered.shape:
            raise ValueError(
                f"SpanAttention needs two [layer, head] tensors of one shape; got "
                f"{tuple(self.unsteered.shape)} and {tuple(self.steered.shape)}."
            )

    @property
    def steered_layers(self) -> tuple[int, ...]:
        return tuple(sorted({layer for layer, _ in self.heads}))

    def per_layer(self) -> tuple[Float[Tensor, " layer"], Float[Tensor, " layer"]]:
        """``(unsteered, steered)`` mass averaged over all heads of each layer."""
        return self.unsteered.mean(-1), self.steered.mean(-1)

    def of_heads(self, heads: HeadSpec | None = None) -> tuple[Float[Tensor, " n"], Float[Tensor, " n"]]:
        """``(unsteered, steered)`` mass of the given heads (default: the steered ones), in sorted order."""
        pairs = self.heads if heads is None else normalize_heads(heads)
        validate_heads(pairs, *self.unsteered.shape)
        idx = torch.tensor(pairs)
        return self.unsteered[idx[:, 0], idx[:, 1]], self.steered[idx[:, 0], idx[:, 1]]


def span_mass(
    pattern: Float[Tensor, "batch head query key"],
    key_mask: Bool[Tensor, "batch prompt"],
    attention_mask: Int[Tensor, "batch pos"] | None = None,
) -> Float[Tensor, " head"]:
    """Mean attention mass on the emphasised keys per head, over real query rows that can see the span.

    Keys and queries beyond ``key_mask.shape[1]`` (e.g. teacher-forced answer tokens) count as real queries;
    their keys are never emphasised.
    """
    batch, _, n_query, n_key = pattern.shape
    n_prompt = key_mask.shape[1]
    if n_key < n_prompt or n_query != n_key:
        raise ValueError(
            f"span_mass needs a full [.., T, T] pattern of the emphasised prompt (T >= {n_prompt}); "
            f"got {tuple(pattern.shape)}. Run the model on the emphasis' tokens, without KV cache."
        )
    keys = torch.zeros(key_mask.shape[0], n_key, dtype=torch.bool, device=pattern.device)
    keys[:, :n_prompt] = key_mask.to(pattern.device)
    real = torch.ones(batch, n_query, dtype=torch.bool, device=pattern.device)
    if attention_mask is not None:  # [batch, prompt] or [batch, pos]; positions beyond it count as real
        given = attention_mask.to(pattern.device).bool()[:, :n_query]
        real[:, : given.shape[1]] = given
    first = keys.float().argmax(-1)  # first emphasised position per row
    sees_span = torch.arange(n_query, device=pattern.device)[None, :] >= first[:, None]
    rows = (real & sees_span).float()  # [batch, query]
    mass = (pattern.float() * keys[:, None, None, :].float()).sum(-1)  # [batch, head, query]
    return (mass * rows[:, None, :]).sum((0, 2)) / rows.sum().clamp_min(1.0)


def span_attention(
    model: Any,
    emphasis: Prompt,
    heads: HeadSpec | None = None,
    alpha: AlphaSpec | None = None,
    scale_position: ScalePosition = "exclude",
    *,
    allow_transfer: bool = False,
) -> SpanAttention:
    """Attention mass on the emphasised span per ``(layer, head)``, unsteered and with ``heads`` steered.

    Only the ``hook_pattern`` activations are cached (``names_filter``), which keeps it cheap.

    Args:
        model: a TransformerLens model.
        emphasis: the prompt(s) with the span, from :func:`pasta_lens.emphasize` (or a ProfilingExample).
        heads: the heads to steer (default: the model's default head set); a ``HeadProfile`` is checked against
            ``model`` as in :func:`pasta_lens.steer`.
        alpha, scale_position: as in :func:`pasta_lens.pasta_hooks` (None: a profile's per-head alphas, else 0.01).
        allow_transfer: accept a profile made on other weights of the same shape (as in ``steer``).

    Returns:
        A :class:`SpanAttention` with ``[layer, head]`` tensors.

    Example:
        >>> sa = span_attention(model, emphasize(model, "Maria is a nurse. *Answer in JSON.*"), {20: [0, 3]})
        >>> sa.of_heads()        # (mass before, mass after) at the steered heads
    """
    plan = analysis_plan(model, heads, alpha, scale_position, allow_transfer)
    n_layers = model.cfg.n_layers
    tokens, key_mask, attention_mask = prompt_inputs(emphasis)

    def is_pattern(name: str) -> bool:
        return name.endswith("attn.hook_pattern")

    def masses(cache: Any) -> Tensor:
        return torch.stack(
            [
                span_mass(cache[f"blocks.{layer}.attn.hook_pattern"], key_mask, attention_mask)
                for layer in range(n_layers)
            ]
        ).cpu()

    with torch.inference_mode():
        _, cache = model.run_with_cache(tokens, attention_mask=attention_mask, names_filter=is_pattern)
        before = masses(cache)
        del cache
        # The steering hooks are added first, so the cache sees the pattern after the PASTA edit.
        with steer(model, plan, key_mask):
            _, cache = model.run_with_cache(tokens, attention_mask=attention_mask, names_filter=is_pattern)
        after = masses(cache)
    return SpanAttention(before, after, plan.heads)
