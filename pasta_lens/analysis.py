"""Looking inside a steered model: span attention, head-output patching, direct logit effects.

Steering is a set of hooks, so it composes with TransformerLens' interpretability tools. Three questions and
the numbers that answer them:

1. **Does steering move attention onto the span?** :func:`span_attention` runs the model twice (unsteered,
   steered), caches only ``blocks.L.attn.hook_pattern`` and reports, per ``(layer, head)``, the attention mass
   on the emphasised keys averaged over query rows::

       mass[l, h] = mean_{b, q in Q_b} sum_{k in E_b} A_lh[b, q, k]

   where ``E_b`` are row b's emphasised keys and ``Q_b`` its real (non-padding) query positions from the
   first emphasised token on (earlier queries cannot see the span under causal attention, so they would only
   add zeros to the mean).

2. **Which steered heads carry the effect?** :func:`patch_steered_heads` does activation patching on the
   heads' outputs ``blocks.L.attn.hook_z[:, :, h]`` between the unsteered and the steered run, with
   TransformerLens' own ``transformer_lens.patching.generic_activation_patch`` (it works on the
   ``TransformerBridge``). For a metric ``m`` (e.g. ``log P(new) - log P(old)``) and ``effect = m_steered -
   m_unsteered``::

       recovered[h] = (m(unsteered run, head h's steered z patched in) - m_unsteered) / effect   (sufficiency)
       removed[h]   = (m_steered - m(steered run, head h's unsteered z patched in)) / effect     (necessity)

   :func:`cumulative_patching` patches the k best heads jointly (``head_patch_hooks``; TL's utility patches
   one index at a time) and gives the curve metric vs k: k = 0 is the unsteered run, all steered heads give
   exactly the steered run.

3. **What does a head write towards the answer?** :func:`direct_logit_effect` projects each head's output at
   the answer position through the final norm (with the cached, frozen scale) and the unembedding onto the
   direction ``W_U[:, answer] - W_U[:, contrast]``: the head's *direct* contribution to the logit difference.

4. **All of it at a glance:** :func:`attention_report` (the ``pasta-lens attention`` command) prints the
   per-layer span attention unsteered vs steered and optionally draws it and one head's attention row.

All runs use ``torch.inference_mode()``; nothing here changes the model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from pasta_lens.generation import default_profile
from pasta_lens.objectives import ProfilingExample
from pasta_lens.spans import Emphasis
from pasta_lens.kernels import HookFn
from pasta_lens.plan import (AlphaSpec, Head, HeadSpec, ScalePosition, SteeringPlan, group_by_layer, normalize_heads,
                             resolve_heads, resolve_plan, validate_heads)
from pasta_lens.steering import steer

Metric = Callable[[Float[Tensor, "batch pos vocab"]], Tensor]
"""Logits -> a scalar or one value per batch row (higher = more of the steered behaviour)."""

Prompt = Union[Emphasis, ProfilingExample]
"""What the helpers run: an :class:`Emphasis` (prompt tokens + key mask) or a task's
:class:`~pasta_lens.objectives.ProfilingExample` (prompt + teacher-forced answer tokens + key mask over the prompt).
"""


def _inputs(prompt: Prompt) -> tuple[Tensor, Tensor, Tensor]:
    """``(tokens, key_mask, attention_mask)`` of an Emphasis or a ProfilingExample."""
    if isinstance(prompt, Emphasis):
        return prompt.tokens, prompt.key_mask, prompt.attention_mask
    if isinstance(prompt, ProfilingExample):
        mask = prompt.attention_mask
        return prompt.tokens, prompt.key_mask, torch.ones_like(prompt.tokens) if mask is None else mask
    raise ValueError(f"Expected an Emphasis (from emphasize(...)) or a ProfilingExample (from a task's "
                     f"profiling_examples(...)); got {type(prompt).__name__}.")


def _z_name(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def _steering(model: Any, heads: Optional[HeadSpec], alpha: Optional[AlphaSpec],
              scale_position: ScalePosition = "exclude", allow_transfer: bool = False) -> SteeringPlan:
    """What to steer on ``model``, resolved once (:func:`pasta_lens.plan.resolve_plan`). ``heads=None``: the
    model's default profile itself, so a learned default is steered at its own per-head alphas and with its
    recorded schedule, exactly as :func:`pasta_lens.generate` steers it; a profile from another model is refused
    unless ``allow_transfer=True``, as in :func:`pasta_lens.steer`."""
    heads = default_profile(model)[0] if heads is None else heads
    return resolve_plan(model, heads, alpha, scale_position=scale_position, allow_transfer=allow_transfer)


# ----------------------------------------------------------------------------------------------- span attention
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
            raise ValueError(f"SpanAttention needs two [layer, head] tensors of one shape; got "
                             f"{tuple(self.unsteered.shape)} and {tuple(self.steered.shape)}.")

    @property
    def steered_layers(self) -> tuple[int, ...]:
        return tuple(sorted({layer for layer, _ in self.heads}))

    def per_layer(self) -> tuple[Float[Tensor, "layer"], Float[Tensor, "layer"]]:
        """``(unsteered, steered)`` mass averaged over all heads of each layer."""
        return self.unsteered.mean(-1), self.steered.mean(-1)

    def of_heads(self, heads: Optional[HeadSpec] = None) -> tuple[Float[Tensor, "n"], Float[Tensor, "n"]]:
        """``(unsteered, steered)`` mass of the given heads (default: the steered ones), in sorted order."""
        pairs = self.heads if heads is None else normalize_heads(heads)
        validate_heads(pairs, *self.unsteered.shape)
        idx = torch.tensor(pairs)
        return self.unsteered[idx[:, 0], idx[:, 1]], self.steered[idx[:, 0], idx[:, 1]]


def span_mass(
    pattern: Float[Tensor, "batch head query key"],
    key_mask: Bool[Tensor, "batch prompt"],
    attention_mask: Optional[Int[Tensor, "batch pos"]] = None,
) -> Float[Tensor, "head"]:
    """Mean attention mass on the emphasised keys per head, over real query rows that can see the span.

    Keys and queries beyond ``key_mask.shape[1]`` (e.g. teacher-forced answer tokens) count as real queries;
    their keys are never emphasised.
    """
    batch, _, n_query, n_key = pattern.shape
    n_prompt = key_mask.shape[1]
    if n_key < n_prompt or n_query != n_key:
        raise ValueError(f"span_mass needs a full [.., T, T] pattern of the emphasised prompt (T >= {n_prompt}); "
                         f"got {tuple(pattern.shape)}. Run the model on the emphasis' tokens, without KV cache.")
    keys = torch.zeros(key_mask.shape[0], n_key, dtype=torch.bool, device=pattern.device)
    keys[:, :n_prompt] = key_mask.to(pattern.device)
    real = torch.ones(batch, n_query, dtype=torch.bool, device=pattern.device)
    if attention_mask is not None:  # [batch, prompt] or [batch, pos]; positions beyond it count as real
        given = attention_mask.to(pattern.device).bool()[:, :n_query]
        real[:, :given.shape[1]] = given
    first = keys.float().argmax(-1)  # first emphasised position per row
    sees_span = torch.arange(n_query, device=pattern.device)[None, :] >= first[:, None]
    rows = (real & sees_span).float()  # [batch, query]
    mass = (pattern.float() * keys[:, None, None, :].float()).sum(-1)  # [batch, head, query]
    return (mass * rows[:, None, :]).sum((0, 2)) / rows.sum().clamp_min(1.0)


def span_attention(
    model: Any,
    emphasis: Prompt,
    heads: Optional[HeadSpec] = None,
    alpha: Optional[AlphaSpec] = None,
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
    plan = _steering(model, heads, alpha, scale_position, allow_transfer)
    n_layers = model.cfg.n_layers
    tokens, key_mask, attention_mask = _inputs(emphasis)

    def is_pattern(name: str) -> bool:
        return name.endswith("attn.hook_pattern")

    def masses(cache: Any) -> Tensor:
        return torch.stack([span_mass(cache[f"blocks.{layer}.attn.hook_pattern"], key_mask, attention_mask)
                            for layer in range(n_layers)]).cpu()

    with torch.inference_mode():
        _, cache = model.run_with_cache(tokens, attention_mask=attention_mask, names_filter=is_pattern)
        before = masses(cache)
        del cache
        # The steering hooks are added first, so the cache sees the pattern after the PASTA edit.
        with steer(model, plan, key_mask):
            _, cache = model.run_with_cache(tokens, attention_mask=attention_mask, names_filter=is_pattern)
        after = masses(cache)
    return SpanAttention(before, after, plan.heads)


# -------------------------------------------------------------------------------------------- head-output patching
def head_patch_hooks(source: Any, heads: Union[HeadSpec, Sequence[Head]]) -> list[tuple[str, HookFn]]:
    """Forward hooks that overwrite ``hook_z[:, :, h]`` of ``heads`` with the values in ``source``.

    Args:
        source: an ``ActivationCache`` (or a mapping) holding ``blocks.L.attn.hook_z`` for the patched layers,
            from a run on the same tokens.
        heads: the heads to patch jointly (any head spec); an empty list patches nothing.

    Returns:
        ``[(hook_name, hook_fn), ...]`` for ``model.run_with_hooks`` / ``model.hooks``.

    Example:
        >>> with steer(model, heads, em):
        ...     _, steered_cache = model.run_with_cache(em.tokens, names_filter=lambda n: n.endswith("hook_z"))
        >>> logits = model.run_with_hooks(em.tokens, fwd_hooks=head_patch_hooks(steered_cache, heads))
    """
    empty = isinstance(heads, (list, tuple)) and not heads
    by_layer = group_by_layer(() if empty else normalize_heads(heads))

    def make(layer: int, hs: list[int]) -> HookFn:
        def hook(z: Float[Tensor, "batch pos head d_head"], hook: Any) -> Tensor:
            src = source[_z_name(layer)].to(z.device)
            if src.shape != z.shape:
                raise ValueError(f"Cannot patch {_z_name(layer)}: source shape {tuple(src.shape)} != "
                                 f"{tuple(z.shape)}. Cache the source from a run on the same tokens.")
            out = z.clone()
            out[:, :, hs] = src[:, :, hs].to(z.dtype)
            return out

        return hook

    return [(_z_name(layer), make(layer, hs)) for layer, hs in by_layer.items()]


@dataclass(frozen=True)
class HeadPatching:
    """Result of patching steered heads' outputs between the unsteered and the steered run.

    Attributes:
        heads: the patched ``(layer, head)`` pairs, in the order of the tensors below.
        unsteered: the metric of the unsteered run.
        steered: the metric of the steered run.
        into_unsteered: ``[n]`` the metric of the unsteered run with one head's steered output patched in.
        into_steered: ``[n]`` the metric of the steered run with one head's unsteered output patched in.
    """

    heads: tuple[Head, ...]
    unsteered: float
    steered: float
    into_unsteered: Float[Tensor, "n"]
    into_steered: Float[Tensor, "n"]

    def __post_init__(self) -> None:
        n = len(self.heads)
        if self.into_unsteered.shape != (n,) or self.into_steered.shape != (n,):
            raise ValueError(f"HeadPatching needs one value per head ({n}) in into_unsteered and into_steered.")

    @property
    def effect(self) -> float:
        """``steered - unsteered``: the change steering makes to the metric."""
        return self.steered - self.unsteered

    @property
    def recovered(self) -> Float[Tensor, "n"]:
        """Fraction of the effect one head's steered output brings to the unsteered run (sufficiency).

        Undefined (inf/NaN) when steering does not change the metric (``effect == 0``).
        """
        return (self.into_unsteered - self.unsteered) / self.effect

    @property
    def removed(self) -> Float[Tensor, "n"]:
        """Fraction of the effect lost when one head's output is reset to unsteered (necessity)."""
        return (self.steered - self.into_steered) / self.effect

    def ranked(self, by: str = "recovered") -> tuple[Head, ...]:
        """The heads, most important first, by ``"recovered"`` or ``"removed"``."""
        if by not in ("recovered", "removed"):
            raise ValueError(f"rank by 'recovered' or 'removed'; got {by!r}.")
        order = torch.argsort(getattr(self, by), descending=True, stable=True)
        return tuple(self.heads[i] for i in order.tolist())

    def grid(self, n_layers: int, n_heads: int, by: str = "recovered") -> Float[Tensor, "layer head"]:
        """A ``[layer, head]`` tensor of ``recovered`` or ``removed``, NaN at heads that were not patched."""
        if by not in ("recovered", "removed"):
            raise ValueError(f"grid of 'recovered' or 'removed'; got {by!r}.")
        out = torch.full((n_layers, n_heads), float("nan"))
        for (layer, head), value in zip(self.heads, getattr(self, by).tolist()):
            out[layer, head] = value
        return out


def _scalar_metric(metric: Metric) -> Callable[[Tensor], Tensor]:
    def scalar(logits: Tensor) -> Tensor:
        return torch.as_tensor(metric(logits)).float().mean()

    return scalar


def _unpadded(prompt: Prompt) -> tuple[Tensor, Tensor]:
    """``(tokens, key_mask)`` of a prompt that has no padding (TL's patching runs without an attention mask)."""
    tokens, key_mask, attention_mask = _inputs(prompt)
    if not bool(attention_mask.bool().all()):
        raise ValueError("Head patching runs the tokens without an attention mask (as TransformerLens' patching "
                         "utilities do), so the prompts must not be padded: patch one prompt at a time.")
    return tokens, key_mask


def patch_steered_heads(
    model: Any,
    emphasis: Prompt,
    heads: HeadSpec,
    metric: Metric,
    alpha: Optional[AlphaSpec] = None,
    scale_position: ScalePosition = "exclude",
    *,
    candidates: Optional[HeadSpec] = None,
    allow_transfer: bool = False,
) -> HeadPatching:
    """Patch each head's ``hook_z`` between the unsteered and the steered run; measure the metric.

    Uses ``transformer_lens.patching.generic_activation_patch`` (one forward per head and direction) with
    ``layer_head_vector_patch_setter`` on activation ``"z"``. The steered -> unsteered direction is the utility
    as is (the "clean" cache is the steered run's); for unsteered -> steered the utility runs inside
    :func:`pasta_lens.steer`, whose hooks stay on while the utility adds and removes its own.

    Args:
        model: a TransformerLens model.
        emphasis: one prompt (no padding) with its span: an Emphasis or a task's ProfilingExample.
        heads: the steered heads.
        metric: logits ``[batch, pos, vocab]`` -> scalar or ``[batch]`` (averaged), e.g.
            ``objectives.target_logprob(n_prompt, new_ids[:1], old_ids[:1])``.
        alpha, scale_position: as in :func:`pasta_lens.pasta_hooks` (None: a profile's per-head alphas, else 0.01).
        candidates: the heads to patch (default: the steered ones).
        allow_transfer: accept a profile (``heads`` or ``candidates``) made on other weights of the same shape.

    Returns:
        A :class:`HeadPatching`.

    Example:
        >>> hp = patch_steered_heads(model, em, heads, metric)
        >>> hp.ranked()[:5]      # the steered heads that carry most of the effect on their own
    """
    import pandas as pd
    from transformer_lens import patching

    tokens, key_mask = _unpadded(emphasis)
    plan = _steering(model, heads, alpha, scale_position, allow_transfer)
    patched = plan.heads if candidates is None else resolve_heads(model, candidates, allow_transfer=allow_transfer)
    scalar = _scalar_metric(metric)
    layers = sorted({layer for layer, _ in patched})
    names = {_z_name(layer) for layer in layers}
    index_df = pd.DataFrame(list(patched), columns=["layer", "head_index"])

    def run_patch(clean_cache: Any) -> Tensor:
        return patching.generic_activation_patch(model, tokens, clean_cache, scalar,
                                                 patching.layer_head_vector_patch_setter, "z",
                                                 index_df=index_df).float().cpu()

    with torch.inference_mode():
        logits, unsteered_cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
        base = float(scalar(logits))
        with steer(model, plan, key_mask):
            logits, steered_cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
            full = float(scalar(logits))
            into_steered = run_patch(unsteered_cache)
        into_unsteered = run_patch(steered_cache)
    return HeadPatching(patched, base, full, into_unsteered, into_steered)


def cumulative_patching(
    model: Any,
    emphasis: Prompt,
    heads: HeadSpec,
    order: Sequence[Head],
    metric: Metric,
    alpha: Optional[AlphaSpec] = None,
    scale_position: ScalePosition = "exclude",
    *,
    ks: Optional[Sequence[int]] = None,
    allow_transfer: bool = False,
) -> list[tuple[int, float]]:
    """The metric of the unsteered run with the first k heads of ``order`` patched in jointly from the steered run.

    Args:
        model, emphasis, heads, metric, alpha, scale_position: as in :func:`patch_steered_heads`.
        order: the heads to add one by one, e.g. ``patch_steered_heads(...).ranked()``.
        ks: which k to evaluate (default ``0 .. len(order)``).
        allow_transfer: accept a profile made on other weights of the same shape.

    Returns:
        ``[(k, metric), ...]``: k = 0 is the unsteered run; patching every steered head gives the steered run.

    Example:
        >>> curve = cumulative_patching(model, em, heads, hp.ranked(), metric)
        >>> plot_ablation({"patch top-k heads": curve}, "k")
    """
    tokens, key_mask = _unpadded(emphasis)
    plan = _steering(model, heads, alpha, scale_position, allow_transfer)
    order = tuple(tuple(h) for h in order)
    ks = list(range(len(order) + 1)) if ks is None else [int(k) for k in ks]
    if any(not 0 <= k <= len(order) for k in ks):
        raise ValueError(f"every k must be in 0..{len(order)} (the number of heads in order); got {ks}.")
    scalar = _scalar_metric(metric)
    with torch.inference_mode():
        with steer(model, plan, key_mask):
            _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("attn.hook_z"))
        curve = []
        for k in ks:
            logits = model.run_with_hooks(tokens, fwd_hooks=head_patch_hooks(cache, order[:k]))
            curve.append((k, float(scalar(logits))))
    return curve


# ---------------------------------------------------------------------------------------- direct logit effect
def logit_direction(model: Any, answer: int, contrast: Optional[int] = None) -> Float[Tensor, "d_model"]:
    """``W_U[:, answer] - W_U[:, contrast]`` (or ``W_U[:, answer]``), scaled by the final norm's weight.

    TransformerBridge does not fold the final norm's weight into ``W_U`` (a HookedTransformer with
    ``fold_ln=True`` does, and then has no ``ln_final.w``), so it is applied here when present.
    """
    w_u = model.W_U
    direction = w_u[:, answer] - (w_u[:, contrast] if contrast is not None else 0.0)
    ln_w = getattr(getattr(model, "ln_final", None), "w", None)
    if ln_w is not None:
        direction = direction * ln_w
    return direction.detach()


def direct_logit_effect(
    model: Any,
    cache: Any,
    answer: int,
    contrast: Optional[int] = None,
    pos: int = -1,
) -> Float[Tensor, "layer head"]:
    """Each head's direct contribution to ``logit[answer] - logit[contrast]`` at position ``pos``.

    ``effect[l, h] = LN_frozen(z_lh[pos] @ W_O[l, h]) . direction``: the head's output, normalised with the
    final norm's cached scale (and centred for LayerNorm), dotted with :func:`logit_direction`. Averaged over
    the batch. The cache must hold ``blocks.L.attn.hook_z`` for every layer and ``ln_final.hook_scale``.

    Example:
        >>> _, cache = model.run_with_cache(em.tokens)
        >>> dla = direct_logit_effect(model, cache, new_id, old_id)     # [layer, head]
    """
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    with torch.inference_mode():
        results = []
        for layer in range(n_layers):
            z = cache[_z_name(layer)][:, pos]  # [batch, head, d_head]
            w_o = model.blocks[layer].attn.W_O  # [head, d_head, d_model]
            results.append(torch.einsum("bhd,hdm->hbm", z.to(w_o.dtype), w_o))
        stack = torch.cat(results)  # [layer*head, batch, d_model]
        normed = cache.apply_ln_to_stack(stack, layer=None, pos_slice=pos)
        direction = logit_direction(model, answer, contrast).to(normed.dtype)
        effect = (normed @ direction).mean(-1)
    return effect.reshape(n_layers, n_heads).float().cpu()


def attention_report(
    model: Any,
    text: str,
    heads: Optional[Sequence[Head]] = None,
    *,
    alpha: Optional[float] = None,
    chat: bool = False,
    markers: Union[str, tuple[str, str]] = "*",
    out: Union[str, os.PathLike, None] = None,
    row_out: Union[str, os.PathLike, None] = None,
    row_head: Optional[Head] = None,
) -> str:
    """The per-layer span-attention table as text; writes the pictures when ``out`` / ``row_out`` are given.

    Example:
        >>> print(attention_report(model, "Maria is a nurse. *Answer in JSON.*", chat=True, out="span.png"))
    """
    from pasta_lens.spans import emphasize

    em = emphasize(model, text, chat=chat, markers=markers)
    plan = _steering(model, heads, alpha)  # resolved once: shown, measured and drawn with the same steering
    sa = span_attention(model, em, plan)
    before, after = sa.per_layer()
    lines = [plan.describe(),
             "layer  unsteered  steered   (attention on the span, mean over the layer's heads)"]
    for layer, (b, a) in enumerate(zip(before.tolist(), after.tolist())):
        lines.append(f"{layer:5d}  {b:9.3f}  {a:7.3f}" + ("   steered" if layer in sa.steered_layers else ""))
    if out is not None:
        from pasta_lens.plot import plot_span_attention

        plot_span_attention(before, after, out, steered_layers=sa.steered_layers)
        lines.append(f"wrote {out}")
    if row_out is not None:
        from pasta_lens.plot import plot_attention_row

        layer, head = row_head if row_head is not None else sa.heads[0]
        name = f"blocks.{layer}.attn.hook_pattern"
        with torch.inference_mode():
            _, cache = model.run_with_cache(em.tokens, names_filter=name)
            with steer(model, plan, em):
                _, steered = model.run_with_cache(em.tokens, names_filter=name)
        plot_attention_row(model.to_str_tokens(em.tokens[0]), cache[name][0, head, -1], steered[name][0, head, -1],
                           em.key_mask[0], row_out, title=f"L{layer}H{head}, query = last token")
        lines.append(f"wrote {row_out}")
    return "\n".join(lines)
