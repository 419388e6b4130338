"""The parametrisation of learned strengths: one logit per head, its alpha, the hooks that steer with it.

Every head ``(l, h)`` has a logit ``g[l, h]`` and steers at

    alpha[l, h] = alpha_min ** sigmoid(g[l, h])     g -> -inf: alpha -> 1 (not steered); g -> +inf: alpha_min

(:func:`strengths_to_alphas`), or at a fixed alpha when it is a ``base`` head (:func:`with_base`).
:func:`learned_hooks` puts those alphas on ``blocks.{l}.attn.hook_pattern`` with PASTA's own arithmetic, so the
steered logits are differentiable in ``g`` and nothing else. Training starts from :func:`init_logits` (the
attribution scores, scaled per task) and returns a :class:`LearnedAlphas`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from pasta_lens.kernels import key_weights, pattern_hook_name, scheduled_rescale
from pasta_lens.plan import Head, ScheduleSpec, head_alphas
from pasta_lens.profiling.head_scores import HeadScores
from pasta_lens.profiling.learned.config import KEEP_BELOW
from pasta_lens.schedule import Schedule


def strengths_to_alphas(g: Float[Tensor, "layer head"], alpha_min: float) -> Float[Tensor, "layer head"]:
    """``alpha = alpha_min ** sigmoid(g)``, differentiable in ``g``; always inside [alpha_min, 1].

    Example:
        >>> strengths_to_alphas(torch.tensor([[-40.0, 0.0, 40.0]]), 0.01)     # tensor([[1.0000, 0.1000, 0.0100]])
    """
    return torch.exp(torch.sigmoid(g) * math.log(alpha_min))


def init_logits(
    task_scores: Mapping[str, HeadScores | Tensor],
    init_bias: float = -4.0,
    init_scale: float = 6.0,
) -> Float[Tensor, "layer head"]:
    """Initial logits ``g = init_bias + init_scale * s`` from per-task head scores (attribution at ``alpha_min``).

    ``s_h`` is the mean over tasks of the head's score divided by that task's largest absolute score, so each task
    counts equally whatever the scale of its objective.

    Example:
        >>> init_logits({"json": scores_json, "counterfact": scores_cf})   # [n_layers, n_heads]
    """
    if not task_scores:
        raise ValueError("init_logits needs the scores of at least one task: {task: HeadScores or [layer, head]}.")
    tables = []
    for task, s in task_scores.items():
        table = (s.scores if isinstance(s, HeadScores) else torch.as_tensor(s)).detach().float().cpu()
        if table.ndim != 2:
            raise ValueError(
                f"The scores of task {task!r} must be a [n_layers, n_heads] table; got {tuple(table.shape)}."
            )
        top = float(table.abs().max())
        tables.append(table / top if top > 0 else table)
    shapes = {tuple(t.shape) for t in tables}
    if len(shapes) != 1:
        raise ValueError(f"The tasks' score tables have different shapes {sorted(shapes)}: score them on one model.")
    return init_bias + init_scale * torch.stack(tables).mean(0)


@dataclass(frozen=True)
class LearnedAlphas:
    """The outcome of :func:`~pasta_lens.profiling.learn_alphas`: the fitted logits and what it took to fit them.

    Attributes:
        g: the fitted logits ``[n_layers, n_heads]`` (``alphas`` are ``alpha_min ** sigmoid(g)``).
        init_g: the logits training started from.
        alpha_min: the strongest alpha a head can take.
        steps: optimiser steps taken (over every resumed segment).
        history: one record per step: ``loss``, ``task`` (mean normalised objective of the steered run),
            ``task_gain`` (the same minus the unsteered value), ``kl``, ``sparsity`` (the penalty term), per-task
            gains ``gain:{task}``, and ``mean_strength`` (mean sigmoid(g) before the step).
        n_examples: training examples per task.
        settings: the run's :meth:`LearnedConfig.record <pasta_lens.profiling.LearnedConfig.record>` (every
            setting that identifies it: lr, weights, schedule, base, protect...).
        wall_time_s: compute time summed over every resumed segment.
        base: the heads steered at fixed alphas beside the learned ones (``LearnedConfig.base``).

    Example:
        >>> learned = learn_alphas(model, train, init, LearnedConfig(steps=50))
        >>> learned.kept(0.5)          # {(layer, head): alpha} of the learned heads below 0.5
    """

    g: Float[Tensor, "layer head"]
    init_g: Float[Tensor, "layer head"]
    alpha_min: float
    steps: int
    history: tuple[Mapping[str, float], ...] = field(repr=False)
    n_examples: Mapping[str, int] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    wall_time_s: float = float("nan")
    base: Mapping[Head, float] = field(default_factory=dict)

    @property
    def alphas(self) -> Float[Tensor, "layer head"]:
        """Every head's learned alpha, clamped to [alpha_min, 1] against float rounding (a base head: its fixed
        alpha)."""
        with torch.no_grad():
            return with_base(strengths_to_alphas(self.g, self.alpha_min), self.base).clamp(self.alpha_min, 1.0)

    def kept(self, keep_below: float = KEEP_BELOW) -> dict[Head, float]:
        """``{(layer, head): alpha}`` of the learned heads with ``alpha < keep_below`` (possibly empty; base
        heads are not among them)."""
        alphas = self.alphas
        return {
            (int(layer), int(head)): float(alphas[layer, head])
            for layer, head in torch.nonzero(alphas < keep_below).tolist()
            if (int(layer), int(head)) not in self.base
        }

    def losses(self, window: int = 10) -> dict[str, float]:
        """The loss terms averaged over the first and the last ``window`` steps (the per-step values are
        one mini-batch each, hence noisy): ``{"loss_start": ..., "loss_end": ..., "task_gain_start": ...}``."""
        out: dict[str, float] = {}
        if not self.history:
            return out
        first, last = self.history[:window], self.history[-window:]
        extra = tuple(key for key in ("kl_content",) if key in self.history[0])  # terms of some runs only
        for key in ("loss", "task_gain", "kl", "sparsity") + extra:
            out[f"{key}_start"] = round(sum(h[key] for h in first) / len(first), 5)
            out[f"{key}_end"] = round(sum(h[key] for h in last) / len(last), 5)
        return out


def with_base(alphas: Float[Tensor, "layer head"], base: Mapping[Head, float] | None) -> Float[Tensor, "layer head"]:
    """``alphas`` with every base head replaced by its fixed alpha (no gradient reaches those heads' logits).

    Example:
        >>> with_base(torch.ones(2, 2), {(0, 1): 0.05})       # tensor([[1.00, 0.05], [1.00, 1.00]])
    """
    if not base:
        return alphas
    mask = torch.zeros(alphas.shape, dtype=torch.bool)
    fixed = torch.ones(alphas.shape, dtype=torch.float32)
    for (layer, head), alpha in base.items():
        mask[layer, head], fixed[layer, head] = True, float(alpha)
    return torch.where(mask.to(alphas.device), fixed.to(alphas.device, alphas.dtype), alphas)


def learned_hooks(
    g: Float[Tensor, "layer head"],
    alpha_min: float,
    key_mask: Bool[Tensor, "batch prompt"],
    schedule: ScheduleSpec = None,
    base: Mapping[Head, float] | None = None,
) -> list[tuple[str, Callable[[Tensor, Any], Tensor]]]:
    """One hook per layer, steering all its heads at ``alpha_min ** sigmoid(g[layer])`` (gradient flows to g; a
    ``base`` head at its fixed alpha), on the query rows ``schedule`` steers (teacher-forced answer tokens play
    the generated tokens' part).

    The arithmetic is :func:`~pasta_lens.kernels.key_weights` / :func:`~pasta_lens.kernels.scheduled_rescale`, the
    very rescale of :func:`~pasta_lens.pasta_hooks`; only the alpha is a tensor that carries the gradient.

    Example:
        >>> with model.hooks(fwd_hooks=learned_hooks(g, 0.01, ex.key_mask, "prompt")):
        ...     logits = model(ex.tokens)            # differentiable in g
    """
    alphas = with_base(strengths_to_alphas(g, alpha_min), base)
    rows = Schedule.parse(schedule)
    n_prompt = int(key_mask.shape[1])

    def make(layer: int) -> Callable[[Tensor, Any], Tensor]:
        def hook(pattern: Float[Tensor, "batch head query key"], hook: Any) -> Float[Tensor, "batch head query key"]:
            # mask and alpha moved to the pattern's device at call time (never cached)
            weights = key_weights(key_mask.to(pattern.device), pattern.shape[-1], alphas[layer].to(pattern.device))
            return scheduled_rescale(pattern, weights, rows, n_prompt)

        return hook

    return [(pattern_hook_name(layer), make(layer)) for layer in range(g.shape[0])]


def base_alphas(profile: Any, alpha: float | None = None) -> dict[Head, float]:
    """A profile's heads with the alphas it is steered at (:func:`pasta_lens.plan.head_alphas`: ``alpha`` when
    given, else its per-head alphas, else its own ``alpha``, else 0.01): the ``base`` of :class:`LearnedConfig`.

    Example:
        >>> base_alphas(load_profile("smollm2-135m-instruct-metric"))     # {(6, 8): 0.01, (7, 1): 0.01, ...}
    """
    return head_alphas(tuple(profile.heads), profile, alpha)
