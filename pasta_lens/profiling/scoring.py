"""Head scores: the mean objective change when one head alone is steered, measured exactly or estimated.

    score[l, h] = mean_examples ( f(model with T_{l,h} applied) - f(model) )

``exact`` steers each head in its own batch row; ``attribution`` takes one forward and one backward pass per
example (first-order Taylor estimate through ``blocks.{l}.attn.hook_pattern``); ``hybrid`` re-scores the
attribution's ``top_m`` heads exactly, all on the same examples, and re-orders only that block by the exact scores
(:class:`HeadScores` records per head which estimator and how many examples). See :mod:`pasta_lens.profiling`
for the formulas.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional, Sequence, Union

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from pasta_lens.distributed import ShardedCheckpoint, World, compute_missing, current_world, rank_file
from pasta_lens.objectives import ProfilingExample
from pasta_lens.fingerprint import weights_hash
from pasta_lens.profiling.checkpoints import CHECKPOINT_VERSION, _Checkpoint, _example_digest, _heads_digest
from pasta_lens.kernels import key_weights, pattern_hook_name, rescale_rows
from pasta_lens.plan import Head, group_by_layer

Method = Literal["attribution", "exact", "hybrid"]
METHODS = ("attribution", "exact", "hybrid")


@dataclass(frozen=True)
class HeadScores:
    """Per-head scores of one task, with what each number is: which estimator, over how many examples.

    For ``hybrid`` the two estimators are never ranked against each other. The ranking is the attribution
    ranking over all ``n_examples``, with its first ``top_m`` places (the re-scored block) re-ordered by the exact
    scores, which are all means over the *same* first ``n_exact`` examples, so they are comparable among
    themselves. A top-k set with ``k <= top_m`` is therefore chosen by exact scores (from the attribution
    shortlist); beyond ``top_m`` it is chosen by attribution (:func:`~pasta_lens.profiling.make_profile` refuses
    that unless asked, and then labels it).

    Attributes:
        scores: each head's mean objective change when it alone is steered, by that head's estimator (exact
            where ``exact``, else attribution), ``[n_layers, n_heads]``. Use :meth:`ranking`, not a sort of this
            table, to rank a hybrid (the two estimators are on slightly different scales).
        method: ``"attribution"``, ``"exact"`` or ``"hybrid"``.
        alpha: steering strength used.
        n_examples: examples profiled (attribution: all of them; exact: all of them).
        task: task name (from the examples).
        std: per-example standard deviation of the change, by the same estimator and examples as ``scores``.
        exact: True where ``scores`` is exact (all heads for ``exact``, the re-scored block for ``hybrid``).
        baseline: mean unsteered objective over the examples.
        per_example: the change per example for every head by the run's first estimator, ``[n_examples, n_layers,
            n_heads]``: attribution values for ``attribution`` and ``hybrid``, exact values for ``exact``.
        exact_per_example: ``hybrid`` only: the exact change on each of the first ``n_exact`` examples,
            ``[n_exact, n_layers, n_heads]``, NaN at heads that were not re-scored.
        counts: examples behind each head's score, ``[n_layers, n_heads]`` (``n_exact`` or ``n_examples``).
        order: the ranking, best first (empty: sort ``scores``); set for ``hybrid``.
        top_m: ``hybrid`` only: the size of the re-scored block.
        n_exact: examples of the exact scores (0 for ``attribution``).
        wall_time_s: compute time of this task, summed over every resumed segment of a checkpointed run.
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
    exact_per_example: Optional[Float[Tensor, "n_exact layer head"]] = None
    counts: Optional[Int[Tensor, "layer head"]] = None
    order: tuple[Head, ...] = ()
    top_m: Optional[int] = None
    n_exact: int = 0
    wall_time_s: float = float("nan")

    def __post_init__(self) -> None:
        if not isinstance(self.scores, Tensor) or self.scores.ndim != 2:
            raise ValueError("HeadScores.scores must be a [n_layers, n_heads] tensor.")
        for name in ("std", "exact", "counts"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != tuple(self.scores.shape):
                raise ValueError(f"HeadScores.{name} must have the shape of scores {tuple(self.scores.shape)}.")
        if self.method not in METHODS:
            raise ValueError(f"HeadScores.method must be one of {METHODS}; got {self.method!r}.")
        if self.n_examples < 1:
            raise ValueError("HeadScores.n_examples must be at least 1.")
        order = tuple((int(h[0]), int(h[1])) for h in self.order)
        total = self.scores.numel()
        if order and (len(order) != total or len(set(order)) != total):
            raise ValueError(f"HeadScores.order must rank every head once ({total} heads); got {len(order)}.")
        object.__setattr__(self, "order", order)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.scores.shape[0]), int(self.scores.shape[1])

    def ranking(self) -> tuple[Head, ...]:
        """All heads, best first (``order`` when set, else by score; ties: lower layer, then lower head first)."""
        return self.order or _ranking(self.scores)

    def top(self, k: int) -> tuple[Head, ...]:
        """The ``k`` best heads, best first."""
        _check_k(k, self.shape)
        return self.ranking()[:k]

    def exact_through(self) -> int:
        """How many places at the top of :meth:`ranking` are ordered by exact scores (all for ``exact``)."""
        if self.method == "exact":
            return self.scores.numel()
        return int(self.top_m or 0) if self.method == "hybrid" else 0

    def describe(self) -> str:
        """One line saying exactly what was computed, e.g. for a profile's ``method`` field."""
        total = self.scores.numel()
        if self.method == "attribution":
            return f"attribution (all {total} heads, {self.n_examples} examples)"
        if self.method == "exact":
            return f"exact (all {total} heads, {self.n_examples} examples)"
        return (f"hybrid (attribution ranking of all {total} heads on {self.n_examples} examples; its top "
                f"{self.top_m} re-ordered by exact scores on the first {self.n_exact} examples)")


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
        missing = [layer for layer in range(n_layers) if layer not in zeros]
        if missing:
            raise ValueError(f"Attribution needs {pattern_hook_name(missing[0])} (and the pattern hooks of layers "
                             f"{missing}), but the forward pass never called them: this model computes attention "
                             "without exposing the pattern (a fused / SDPA / flash implementation). Load it with "
                             "eager attention (attn_implementation='eager'), or use method='exact'.")
        grads = torch.autograd.grad(value.sum(), [zeros[layer] for layer in order], allow_unused=True)
    unused = [layer for layer, grad in zip(order, grads) if grad is None]
    if unused:
        raise ValueError(f"The objective does not depend on {pattern_hook_name(unused[0])} (nor on the pattern "
                         f"of layers {unused}): the pattern there is not on the path to the output, so every "
                         "attribution score would be 0. Usually a hook of yours detaches or replaces an "
                         "activation after the pattern (e.g. returns z.detach()), or the attention does not use "
                         "the hooked pattern (non-eager attention). Remove that hook or use method='exact'.")
    scores = torch.zeros(n_layers, model.cfg.n_heads)
    with torch.no_grad():
        for layer, grad in zip(order, grads):
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
            turn, batched) or ``"hybrid"`` (attribution, then exact re-scoring of the ``top_m`` heads, which
            re-orders that block of the ranking; heads below it keep their attribution order).
        alpha: PASTA strength in (0, 1).
        top_m: heads re-scored exactly by ``hybrid``; a top-k selection is decided by exact scores only for
            ``k <= top_m``.
        heads_per_batch: steered copies per forward pass in exact scoring (speed only; a checkpoint written with
            one value resumes with another).
        checkpoint: a file to save per-example results to; a restart with the same arguments resumes from it.
        progress: show a tqdm bar per phase.
        rescore_examples: ``hybrid`` only: re-score on the first N examples (default: all); every re-scored head
            uses the same N examples.

    Under ``torchrun`` (an initialised ``torch.distributed`` process group) every process calls this with the
    same arguments: the examples are shared among them, the per-example results gathered to all of them, and
    each returns the single-process result (:mod:`pasta_lens.distributed`; checkpoints: one file per rank).

    Returns:
        :class:`HeadScores` with ``scores [n_layers, n_heads]``.

    Raises:
        ValueError: no examples, an objective that is not one value per row, a bad method/alpha/top_m, a
            checkpoint from a different run or an unreadable one, or (attribution) a pattern hook that is not on
            the path to the objective.
        pasta_lens.io.LockedError: another live process is writing the same checkpoint.

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
    # heads_per_batch is left out on purpose: it changes how many copies share a forward pass, never a value.
    fingerprint = dict(version=CHECKPOINT_VERSION, alpha=float(alpha), shape=(n_layers, n_heads),
                       weights=weights_hash(model))
    vocab = int(getattr(model.cfg, "d_vocab", 0) or model.tokenizer.vocab_size)
    digests = [_example_digest(ex, vocab) for ex in examples]
    world = current_world()  # [distributed] torch.distributed's rank/size; one process: World(0, 1)
    own = rank_file(checkpoint, world.rank) if checkpoint is not None else None
    with ExitStack() as stack:  # [distributed] this rank's file locked and written; the other ranks' files read
        def open_store(path: Optional[Path]) -> _Checkpoint:
            return stack.enter_context(_Checkpoint(path, fingerprint, lock=path == own))

        ckpt = ShardedCheckpoint(checkpoint, world, open_store)
        return _score(model, examples, digests, ckpt, world, method, float(alpha), int(top_m), int(heads_per_batch),
                      n_rescore, progress, task)


def _std(values: Tensor) -> Tensor:
    return values.std(0, unbiased=True) if values.shape[0] > 1 else torch.zeros(values.shape[1:])


def _score(model: Any, examples: list[ProfilingExample], digests: list[str], ckpt: ShardedCheckpoint, world: World,
           method: str, alpha: float, top_m: int, heads_per_batch: int, n_rescore: int, progress: bool, task: str
           ) -> HeadScores:
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    all_heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    n = len(examples)
    per_example = torch.zeros(n, n_layers, n_heads)
    baselines = torch.zeros(n)

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
    common = dict(method=method, alpha=alpha, n_examples=n, task=task, baseline=float(baselines.mean()),
                  wall_time_s=round(ckpt.own.elapsed_s(), 3))
    if method == "attribution":
        return HeadScores(scores=attribution_mean, std=_std(per_example),
                          exact=torch.zeros(n_layers, n_heads, dtype=torch.bool),
                          counts=torch.full((n_layers, n_heads), n), per_example=per_example, **common)
    if method == "exact":
        values = exact_values.reshape(n, n_layers, n_heads)  # rescored = all heads in row-major order
        return HeadScores(scores=values.mean(0), std=_std(values), exact=torch.ones(n_layers, n_heads, dtype=torch.bool),
                          counts=torch.full((n_layers, n_heads), n), per_example=values, n_exact=n, **common)
    # hybrid: exact numbers only where measured, each over the same first n_rescore examples
    exact_full = torch.full((n_rescore, n_layers, n_heads), float("nan"))
    layers_t = torch.tensor([h[0] for h in rescored])
    heads_t = torch.tensor([h[1] for h in rescored])
    exact_full[:, layers_t, heads_t] = exact_values
    exact_mask = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    exact_mask[layers_t, heads_t] = True
    scores = torch.where(exact_mask, exact_full.nan_to_num(0.0).mean(0), attribution_mean)
    std = torch.where(exact_mask, _std(exact_full.nan_to_num(0.0)), _std(per_example))
    counts = torch.where(exact_mask, torch.tensor(n_rescore), torch.tensor(n))
    block_means = exact_values.mean(0).tolist()
    block = sorted(range(len(rescored)), key=lambda c: (-block_means[c], rescored[c]))
    order = tuple(rescored[c] for c in block) + tuple(_ranking(attribution_mean)[len(rescored):])
    return HeadScores(scores=scores, std=std, exact=exact_mask, counts=counts, per_example=per_example,
                      exact_per_example=exact_full, order=order, top_m=len(rescored), n_exact=n_rescore, **common)



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
