"""Head scores: the mean objective change when one head alone is steered, measured exactly or estimated.

    score[l, h] = mean_examples ( f(model with T_{l,h} applied) - f(model) )

``exact`` steers each head in its own batch row; ``attribution`` takes one forward and one backward pass per
example (first-order Taylor estimate through ``blocks.{l}.attn.hook_pattern``); ``hybrid`` re-scores the
attribution's ``top_m`` heads exactly. See :mod:`pasta_lens.profiling` for the formulas.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional, Sequence, Union

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from pasta_lens.distributed import ShardedCheckpoint, compute_missing, current_world
from pasta_lens.objectives import ProfilingExample
from pasta_lens.profile import weights_hash
from pasta_lens.profiling.checkpoints import CHECKPOINT_VERSION, _Checkpoint, _example_digest, _heads_digest
from pasta_lens.steering import Head, group_by_layer, key_weights, pattern_hook_name, rescale_rows

Method = Literal["attribution", "exact", "hybrid"]
METHODS = ("attribution", "exact", "hybrid")


@dataclass(frozen=True)
class HeadScores:
    """Per-head scores of one task.

    Attributes:
        scores: mean objective change when that head alone is steered, ``[n_layers, n_heads]``.
        method: ``"attribution"``, ``"exact"`` or ``"hybrid"``.
        alpha: steering strength used.
        n_examples: examples averaged over.
        task: task name (from the examples).
        std: per-example standard deviation of the change, ``[n_layers, n_heads]``.
        exact: True where the score was measured exactly (all heads for ``exact``, the top-m for ``hybrid``).
        baseline: mean unsteered objective over the examples.
        per_example: the change per example, ``[n_examples, n_layers, n_heads]``; for hybrid, the exact values at
            the re-scored heads when every example was re-scored, else attribution values throughout.
    """

    scores: Float[Tensor, "layer head"]
    method: str
    alpha: float
    n_examples: int
    task: str = ""
    std: Optional[Float[Tensor, "layer head"]] = None
    exact: Optional[Bool[Tensor, "layer head"]] = None
    baseline: float = float("nan")
    per_example: Optional[Float[Tensor, "example layer head"]] = None

    def __post_init__(self) -> None:
        if not isinstance(self.scores, Tensor) or self.scores.ndim != 2:
            raise ValueError("HeadScores.scores must be a [n_layers, n_heads] tensor.")
        for name in ("std", "exact"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != tuple(self.scores.shape):
                raise ValueError(f"HeadScores.{name} must have the shape of scores {tuple(self.scores.shape)}.")
        if self.method not in METHODS:
            raise ValueError(f"HeadScores.method must be one of {METHODS}; got {self.method!r}.")
        if self.n_examples < 1:
            raise ValueError("HeadScores.n_examples must be at least 1.")

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.scores.shape[0]), int(self.scores.shape[1])

    def ranking(self) -> tuple[Head, ...]:
        """All heads, best first (ties: lower layer, then lower head first)."""
        return _ranking(self.scores)

    def top(self, k: int) -> tuple[Head, ...]:
        """The ``k`` best heads, best first."""
        _check_k(k, self.shape)
        return self.ranking()[:k]


# ------------------------------------------------------------------------------------------- one example
def _forward(model: Any, ex: ProfilingExample, copies: int, hooks: list) -> Tensor:
    tokens = ex.tokens.to(model.cfg.device).expand(copies, -1)
    kwargs = {}
    if ex.attention_mask is not None:
        kwargs["attention_mask"] = ex.attention_mask.to(tokens.device).expand(copies, -1)
    with model.hooks(fwd_hooks=hooks):
        return model(tokens, **kwargs)


def _objective(ex: ProfilingExample, logits: Float[Tensor, "batch pos vocab"]) -> Float[Tensor, "batch"]:
    value = ex.objective(logits)
    if not isinstance(value, Tensor) or tuple(value.shape) != (logits.shape[0],):
        raise ValueError(f"The objective of a {ex.task or 'task'!r} example must return one value per batch row "
                         f"(shape [{logits.shape[0]}]); got {tuple(getattr(value, 'shape', ()))}. Reduce over "
                         "positions inside the objective, not over the batch.")
    return value.float()


def pasta_delta(
    pattern: Float[Tensor, "batch head query key"],
    key_mask: Bool[Tensor, "batch prompt"],
    alpha: float,
) -> Float[Tensor, "batch head query key"]:
    """``T(A) - A`` for every head at once, with ``T`` the PASTA transform of :func:`pasta_lens.pasta_hooks`."""
    n_heads = pattern.shape[1]
    weights = key_weights(key_mask.to(pattern.device), pattern.shape[-1],
                          torch.full((n_heads,), float(alpha), device=pattern.device))
    return rescale_rows(pattern, weights).float() - pattern.float()


def attribution_scores(model: Any, ex: ProfilingExample, alpha: float) -> tuple[float, Float[Tensor, "layer head"]]:
    """One forward + backward: the unsteered objective and the first-order score of every head.

    A zero tensor ``z_l`` (requiring grad) is added to each layer's pattern, so ``dF/dz_l`` is the total
    derivative of the objective with respect to that pattern, whether or not the parameters require grad, and
    no parameter gradient is computed (``torch.autograd.grad`` only differentiates towards the ``z_l``).
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
        logits = _forward(model, ex, 1, hooks)
        value = _objective(ex, logits)
        order = sorted(zeros)
        grads = torch.autograd.grad(value.sum(), [zeros[layer] for layer in order], allow_unused=True)
    scores = torch.zeros(n_layers, model.cfg.n_heads)
    with torch.no_grad():
        for layer, grad in zip(order, grads):
            if grad is None:  # the objective does not depend on this layer's pattern
                continue
            delta = pasta_delta(patterns[layer], ex.key_mask, alpha)
            scores[layer] = (grad.float() * delta).sum(dim=(0, 2, 3)).cpu()
    return float(value.detach()[0]), scores


def _copy_hooks(heads: Sequence[Optional[Head]], key_mask: Tensor, alpha: float) -> list:
    """Hooks that steer head ``heads[i]`` only in batch row ``i`` (``None`` = an unsteered row).

    Built on :func:`key_weights` and :func:`rescale_rows`, the same arithmetic as :func:`pasta_hooks`.
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

    return [(pattern_hook_name(layer), make_hook([r for r, _ in pairs], [h for _, h in pairs]))
            for layer, pairs in by_layer.items()]


def exact_scores(model: Any, ex: ProfilingExample, alpha: float, heads: Sequence[Head],
                 heads_per_batch: int = 16) -> tuple[float, Float[Tensor, "n"]]:
    """The unsteered objective and the exact change for each of ``heads``, steered one at a time.

    Each forward pass holds ``heads_per_batch`` copies of the example, copy ``i`` steering only ``heads[i]``;
    the first pass also holds one unsteered copy for the baseline.
    """
    heads = list(heads)
    changes = torch.zeros(len(heads))
    base: Optional[float] = None
    start = 0
    with torch.inference_mode():
        while start < len(heads) or base is None:
            chunk = heads[start:start + heads_per_batch - (1 if base is None else 0)]
            rows: list[Optional[Head]] = ([None] if base is None else []) + chunk
            values = _objective(ex, _forward(model, ex, len(rows), _copy_hooks(rows, ex.key_mask, alpha))).cpu()
            if base is None:
                base, values = float(values[0]), values[1:]
            changes[start:start + len(chunk)] = values - base
            start += len(chunk)
    return base, changes


def _progress(iterable: Sequence[int], enabled: bool, desc: str) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False, unit="it")



def _ranking(scores: Tensor) -> tuple[Head, ...]:
    n_layers, n_heads = scores.shape
    flat = scores.reshape(-1).tolist()
    order = sorted(range(len(flat)), key=lambda i: (-flat[i], i))  # stable: ties -> lower (layer, head)
    return tuple((i // n_heads, i % n_heads) for i in order)


def _check_k(k: int, shape: tuple[int, int]) -> None:
    total = shape[0] * shape[1]
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= total:
        raise ValueError(f"k must be an integer between 1 and the number of heads ({shape[0]} layers x "
                         f"{shape[1]} heads = {total}); got {k!r}.")



def _check_examples(examples: Sequence[ProfilingExample], where: str = "profile_heads") -> str:
    examples = list(examples)
    if not examples:
        raise ValueError(f"{where} got no examples; pass at least one ProfilingExample (e.g. from "
                         "get_task(name).profiling_examples(model, split='train', n=200)).")
    for ex in examples:
        if not isinstance(ex, ProfilingExample):
            raise ValueError(f"{where} takes ProfilingExample objects; got {type(ex).__name__}.")
        if not bool(ex.key_mask.any()):
            raise ValueError("A profiling example has an empty emphasis (its key mask marks no token).")
    tasks = sorted({ex.task for ex in examples})
    return ",".join(tasks)


def profile_heads(
    model: Any,
    examples: Sequence[ProfilingExample],
    method: Method = "attribution",
    alpha: float = 0.01,
    top_m: int = 32,
    heads_per_batch: int = 16,
    checkpoint: Optional[Union[str, os.PathLike]] = None,
    progress: bool = True,
    rescore_examples: Optional[int] = None,
) -> HeadScores:
    """Score every head of ``model`` on ``examples`` (one task): the mean objective change when it alone is steered.

    Args:
        model: a TransformerLens model (``TransformerBridge``); never modified.
        examples: profiling examples of one task (see :class:`~pasta_lens.objectives.ProfilingExample`).
        method: ``"attribution"`` (one forward + backward per example), ``"exact"`` (every head steered in
            turn, batched) or ``"hybrid"`` (attribution, then exact re-scoring of the ``top_m`` heads).
        alpha: PASTA strength in (0, 1).
        top_m: heads re-scored exactly by ``hybrid``.
        heads_per_batch: steered copies per forward pass in exact scoring.
        checkpoint: a file to save per-example results to; a restart with the same arguments resumes from it.
        progress: show a tqdm bar per phase.
        rescore_examples: ``hybrid`` only: re-score on the first N examples (default: all).

    Under ``torchrun`` (an initialised ``torch.distributed`` process group) every process calls this with the
    same arguments: the examples are shared among them, the per-example results gathered to all of them, and
    each returns the single-process result (:mod:`pasta_lens.distributed`; checkpoints: one file per rank).

    Returns:
        :class:`HeadScores` with ``scores [n_layers, n_heads]``.

    Raises:
        ValueError: no examples, an objective that is not one value per row, a bad method/alpha/top_m, or a
            checkpoint from a different run.

    Example:
        >>> examples = get_task("counterfact").profiling_examples(model, split="train", n=50)
        >>> scores = profile_heads(model, examples, method="hybrid", checkpoint="cf.ckpt")
        >>> scores.top(5)
    """
    examples = list(examples)
    task = _check_examples(examples)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
    if not (0.0 < float(alpha) < 1.0):
        raise ValueError(f"alpha must be in (0, 1) to profile (1 = no steering); got {alpha}.")
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    if isinstance(top_m, bool) or int(top_m) != top_m or not 1 <= top_m:
        raise ValueError(f"top_m must be a positive integer; got {top_m!r}.")
    top_m = min(int(top_m), n_layers * n_heads)
    if heads_per_batch < 2:
        raise ValueError("heads_per_batch must be at least 2 (one unsteered and one steered copy).")
    n_rescore = len(examples) if rescore_examples is None else min(int(rescore_examples), len(examples))
    if n_rescore < 1:
        raise ValueError("rescore_examples must be at least 1.")
    fingerprint = dict(version=CHECKPOINT_VERSION, alpha=float(alpha), heads_per_batch=int(heads_per_batch),
                       shape=(n_layers, n_heads), weights=weights_hash(model))
    digests = [_example_digest(ex) for ex in examples]
    world = current_world()  # [distributed] torch.distributed's rank/size; one process: World(0, 1)
    ckpt = ShardedCheckpoint(checkpoint, world, lambda p: _Checkpoint(p, fingerprint))  # [distributed]
    all_heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    n = len(examples)
    per_example = torch.zeros(n, n_layers, n_heads)
    baselines = torch.zeros(n)
    exact_mask = torch.zeros(n_layers, n_heads, dtype=torch.bool)

    if method in ("attribution", "hybrid"):
        compute_missing(ckpt, "attribution", digests, lambda i: attribution_scores(model, examples[i], alpha),
                        world, progress, f"{task or 'task'}: attribution")  # [distributed] this rank's share
        for i in _progress(range(n), progress, f"{task or 'task'}: attribution"):
            done = ckpt.get("attribution", digests[i])
            if done is None:
                done = attribution_scores(model, examples[i], alpha)
                ckpt.put("attribution", digests[i], done)
            baselines[i], per_example[i] = done[0], done[1]
    attribution_mean = per_example.mean(0)

    if method == "exact":
        rescored, exact_rows = all_heads, range(n)
    elif method == "hybrid":
        rescored, exact_rows = list(_ranking(attribution_mean)[:top_m]), range(n_rescore)
    else:
        rescored, exact_rows = [], range(0)
    exact_values = torch.zeros(len(exact_rows), len(rescored))
    heads_key = _heads_digest(rescored)
    compute_missing(ckpt, "exact", [f"{digests[i]}:{heads_key}" for i in exact_rows],  # [distributed]
                    lambda j: exact_scores(model, examples[exact_rows[j]], alpha, rescored, heads_per_batch),
                    world, progress, f"{task or 'task'}: exact")
    for j, i in enumerate(_progress(exact_rows, progress and bool(rescored), f"{task or 'task'}: exact")):
        done = ckpt.get("exact", f"{digests[i]}:{heads_key}")
        if done is None:
            done = exact_scores(model, examples[i], alpha, rescored, heads_per_batch)
            ckpt.put("exact", f"{digests[i]}:{heads_key}", done)
        exact_values[j] = done[1]
        if method == "exact":
            baselines[i] = done[0]
    scores = attribution_mean.clone()
    for col, (layer, head) in enumerate(rescored):
        exact_mask[layer, head] = True
        scores[layer, head] = exact_values[:, col].mean()
        if method == "exact" or n_rescore == n:
            per_example[:, layer, head] = exact_values[:, col]
    std = per_example.std(0, unbiased=True) if n > 1 else torch.zeros(n_layers, n_heads)
    return HeadScores(scores=scores, method=method, alpha=float(alpha), n_examples=n, task=task, std=std,
                      exact=exact_mask, baseline=float(baselines.mean()), per_example=per_example)



def profile_tasks(
    model: Any,
    examples_by_task: Mapping[str, Sequence[ProfilingExample]],
    method: Method = "attribution",
    alpha: float = 0.01,
    top_m: int = 32,
    heads_per_batch: int = 16,
    checkpoint_dir: Optional[Union[str, os.PathLike]] = None,
    progress: bool = True,
    rescore_examples: Optional[int] = None,
) -> dict[str, HeadScores]:
    """:func:`profile_heads` for several tasks, one checkpoint file per task (``checkpoint_dir/{task}.ckpt``).

    Example:
        >>> scores = profile_tasks(model, {"json": json_examples, "counterfact": cf_examples}, method="hybrid")
        >>> select_heads(scores, k=40)
    """
    if not examples_by_task:
        raise ValueError("profile_tasks needs at least one task: {task: [ProfilingExample, ...]}.")
    out = {}
    names = list(examples_by_task)
    for task in _progress(names, progress and len(names) > 1, "tasks"):
        ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / f"{task}.ckpt"
        out[task] = profile_heads(model, examples_by_task[task], method, alpha, top_m, heads_per_batch, ckpt,
                                  progress, rescore_examples)
    return out
