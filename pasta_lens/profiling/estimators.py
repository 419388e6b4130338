"""One example's head scores: the exact objective change of each steered head, or its first-order estimate.

For an example with objective ``f`` and head ``(l, h)`` steered alone by the PASTA transform ``T_{l,h}``:

    exact:        f(model with T_{l,h}) - f(model)                      (one steered batch row per head)
    attribution:  sum_{q,k} dF/dA[l, h, q, k] * (T(A) - A)[l, h, q, k]   (one forward + one backward for all heads)

:func:`exact_scores` puts ``heads_per_batch`` copies of the example in one batch, copy ``i`` steering only head
``i`` (:func:`copy_hooks`); :func:`attribution_scores` takes the gradient through ``blocks.{l}.attn.hook_pattern``
and multiplies it by :func:`pasta_delta`. :func:`pasta_lens.profiling.profile_heads` averages these over a task's
examples (and checkpoints them); the learner uses :func:`forward_copies` / :func:`objective_values` for its runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from pasta_lens.kernels import key_weights, pattern_hook_name, rescale_rows
from pasta_lens.objectives import ProfilingExample
from pasta_lens.plan import Head, group_by_layer


def check_examples(examples: Sequence[ProfilingExample], where: str = "profile_heads") -> str:
    """Refuse an empty list, a non-example or an empty emphasis (naming ``where``); return the tasks, joined."""
    examples = list(examples)
    if not examples:
        raise ValueError(
            f"{where} got no examples; pass at least one ProfilingExample (e.g. from "
            "get_task(name).profiling_examples(model, split='train', n=200))."
        )
    for ex in examples:
        if not isinstance(ex, ProfilingExample):
            raise ValueError(f"{where} takes ProfilingExample objects; got {type(ex).__name__}.")
        if not bool(ex.key_mask.any()):
            raise ValueError("A profiling example has an empty emphasis (its key mask marks no token).")
    tasks = sorted({ex.task for ex in examples})
    return ",".join(tasks)


def forward_copies(model: Any, ex: ProfilingExample, copies: int, hooks: list) -> Float[Tensor, "copies pos vocab"]:
    """Logits of ``copies`` identical rows of ``ex`` (with its attention mask) under ``hooks``; the hooks decide
    what each row steers (:func:`copy_hooks`), so one forward pass scores several heads."""
    tokens = ex.tokens.to(model.cfg.device).expand(copies, -1)
    kwargs = {}
    if ex.attention_mask is not None:
        kwargs["attention_mask"] = ex.attention_mask.to(tokens.device).expand(copies, -1)
    with model.hooks(fwd_hooks=hooks):
        return model(tokens, **kwargs)


def objective_values(ex: ProfilingExample, logits: Float[Tensor, "batch pos vocab"]) -> Float[Tensor, " batch"]:
    """``ex``'s objective on each batch row, as fp32, after checking it returns one value per row."""
    value = ex.objective(logits)
    if not isinstance(value, Tensor) or tuple(value.shape) != (logits.shape[0],):
        raise ValueError(
            f"The objective of a {ex.task or 'task'!r} example must return one value per batch row "
            f"(shape [{logits.shape[0]}]); got {tuple(getattr(value, 'shape', ()))}. Reduce over "
            "positions inside the objective, not over the batch."
        )
    return value.float()


def pasta_delta(
    pattern: Float[Tensor, "batch head query key"],
    key_mask: Bool[Tensor, "batch prompt"],
    alpha: float,
) -> Float[Tensor, "batch head query key"]:
    """``T(A) - A`` for every head at once, with ``T`` the PASTA transform of :func:`pasta_lens.pasta_hooks`.

    Example:
        >>> pasta_delta(pattern, em.key_mask, 0.01).sum(-1)       # ~0: both rows sum to 1
    """
    n_heads = pattern.shape[1]
    weights = key_weights(
        key_mask.to(pattern.device), pattern.shape[-1], torch.full((n_heads,), float(alpha), device=pattern.device)
    )
    return rescale_rows(pattern, weights).float() - pattern.float()


def attribution_scores(model: Any, ex: ProfilingExample, alpha: float) -> tuple[float, Float[Tensor, "layer head"]]:
    """One forward + backward: the unsteered objective and the first-order score of every head.

    A zero tensor ``z_l`` (requiring grad) is added to each layer's pattern, so ``dF/dz_l`` is the total
    derivative of the objective with respect to that pattern, whether or not the parameters require grad, and
    no parameter gradient is computed (``torch.autograd.grad`` only differentiates towards the ``z_l``).

    Example:
        >>> base, scores = attribution_scores(model, ex, 0.01)    # scores: [n_layers, n_heads]
    """
    n_layers = model.cfg.n_layers
    zeros: dict[int, Tensor] = {}
    patterns: dict[int, Tensor] = {}

    def make_hook(layer: int) -> Callable[[Tensor, Any], Tensor]:
        def hook(pattern: Tensor, hook: Any) -> Tensor:
            patterns[layer] = pattern.detach()
            zeros[layer] = torch.zeros_like(pattern, requires_grad=True)
            return pattern + zeros[layer]

        return hook

    hooks = [(pattern_hook_name(layer), make_hook(layer)) for layer in range(n_layers)]
    with torch.enable_grad():
        logits = forward_copies(model, ex, 1, hooks)
        value = objective_values(ex, logits)
        order = sorted(zeros)
        missing = [layer for layer in range(n_layers) if layer not in zeros]
        if missing:
            raise ValueError(
                f"Attribution needs {pattern_hook_name(missing[0])} (and the pattern hooks of layers "
                f"{missing}), but the forward pass never called them: this model computes attention "
                "without exposing the pattern (a fused / SDPA / flash implementation). Load it with "
                "eager attention (attn_implementation='eager'), or use method='exact'."
            )
        grads = torch.autograd.grad(value.sum(), [zeros[layer] for layer in order], allow_unused=True)
    unused = [layer for layer, grad in zip(order, grads) if grad is None]
    if unused:
        raise ValueError(
            f"The objective does not depend on {pattern_hook_name(unused[0])} (nor on the pattern "
            f"of layers {unused}): the pattern there is not on the path to the output, so every "
            "attribution score would be 0. Usually a hook of yours detaches or replaces an "
            "activation after the pattern (e.g. returns z.detach()), or the attention does not use "
            "the hooked pattern (non-eager attention). Remove that hook or use method='exact'."
        )
    scores = torch.zeros(n_layers, model.cfg.n_heads)
    with torch.no_grad():
        for layer, grad in zip(order, grads):
            delta = pasta_delta(patterns[layer], ex.key_mask, alpha)
            scores[layer] = (grad.float() * delta).sum(dim=(0, 2, 3)).cpu()
    return float(value.detach()[0]), scores


def copy_hooks(heads: Sequence[Head | None], key_mask: Tensor, alpha: float) -> list:
    """Hooks that steer head ``heads[i]`` only in batch row ``i`` (``None`` = an unsteered row).

    Built on :func:`key_weights` and :func:`rescale_rows`, the same arithmetic as :func:`pasta_hooks`.

    Example:
        >>> hooks = copy_hooks([None, (1, 0), (2, 3)], ex.key_mask, 0.01)   # row 0 unsteered, rows 1-2 one head
        >>> forward_copies(model, ex, 3, hooks)
    """
    by_layer = group_by_layer((head[0], (row, head[1])) for row, head in enumerate(heads) if head is not None)

    def make_hook(rows: list[int], hs: list[int]) -> Callable[[Tensor, Any], Tensor]:
        def hook(pattern: Float[Tensor, "batch head query key"], hook: Any) -> Tensor:
            rows_t = torch.tensor(rows, device=pattern.device)
            heads_t = torch.tensor(hs, device=pattern.device)
            alpha_t = torch.tensor([float(alpha)], device=pattern.device)
            weights = key_weights(key_mask.to(pattern.device), pattern.shape[-1], alpha_t)
            steered = rescale_rows(pattern[rows_t, heads_t][:, None], weights)[:, 0]
            return pattern.index_put((rows_t, heads_t), steered)

        return hook

    return [
        (pattern_hook_name(layer), make_hook([r for r, _ in pairs], [h for _, h in pairs]))
        for layer, pairs in by_layer.items()
    ]


def exact_scores(
    model: Any, ex: ProfilingExample, alpha: float, heads: Sequence[Head], heads_per_batch: int = 16
) -> tuple[float, Float[Tensor, " n"]]:
    """The unsteered objective and the exact change for each of ``heads``, steered one at a time.

    Each forward pass holds ``heads_per_batch`` copies of the example, copy ``i`` steering only ``heads[i]``;
    the first pass also holds one unsteered copy for the baseline.

    Example:
        >>> base, changes = exact_scores(model, ex, 0.01, [(20, 0), (21, 5)])    # changes[i]: head i's gain
    """
    heads = list(heads)
    changes = torch.zeros(len(heads))
    base: float | None = None
    start = 0
    with torch.inference_mode():
        while start < len(heads) or base is None:
            chunk = heads[start : start + heads_per_batch - (1 if base is None else 0)]
            rows: list[Head | None] = ([None] if base is None else []) + chunk
            hooks = copy_hooks(rows, ex.key_mask, alpha)
            values = objective_values(ex, forward_copies(model, ex, len(rows), hooks)).cpu()
            if base is None:
                base, values = float(values[0]), values[1:]
            changes[start : start + len(chunk)] = values - base
            start += len(chunk)
    return base, changes
