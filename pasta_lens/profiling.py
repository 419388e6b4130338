"""Head profiling: which attention heads, steered alone, help a task most; and which set to keep.

The score of head ``(l, h)`` on a task is the mean change of the task objective ``f`` (a scalar per example,
higher is better, see :mod:`pasta_lens.objectives`) when that head alone is steered with PASTA:

    score[l, h] = mean_examples ( f(model with T_{l,h} applied) - f(model) )

where ``T_{l,h}`` rescales head ``(l, h)``'s attention pattern ``A`` to ``A * w / sum(A * w)`` (``w = alpha`` on
prompt keys outside the emphasised span, 1 elsewhere): exactly :func:`pasta_lens.pasta_hooks`.

Three ways to compute it:

- ``exact``: run the edit for every head. The batch dimension carries one steered head per copy of the example
  (copy ``i`` steers head ``h_i`` and nothing else), so ``heads_per_batch`` heads cost one forward pass.
  Cost per example: ``n_layers * n_heads / heads_per_batch`` batched forwards.
- ``attribution``: a first-order Taylor estimate from one forward and one backward pass per example:

      score[l, h] ~ sum_{q,k} dF/dA[l, h, q, k] * (T(A)[l, h, q, k] - A[l, h, q, k])

  with the gradient taken through ``blocks.{l}.attn.hook_pattern`` and ``T`` the exact PASTA transform. It
  equals ``exact`` to first order in ``(1 - alpha)`` and ranks heads well at ``alpha = 0.01`` in practice.
- ``hybrid``: attribution for all heads, then ``exact`` re-scoring of the ``top_m`` heads by attribution.

Profiling one task gives a :class:`HeadScores`. :func:`select_heads` combines several tasks' rankings as in the
paper: the ``intersection`` of the per-task top-k (default), their ``union``, or one task's top-k
(``task_specific``). :func:`ablation_curve` steers each candidate set on validation examples and reports the
objective gain against the number of heads; :func:`choose_k` picks k from that curve.

Long runs are resumable: with ``checkpoint=path`` the per-example results are written (atomically) after every
example, and a restart with the same arguments skips the finished examples and returns an identical result.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, NamedTuple, Optional, Sequence, Union

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from pasta_lens.objectives import ProfilingExample
from pasta_lens.fingerprint import ModelFingerprint
from pasta_lens.profile import HeadProfile, weights_hash
from pasta_lens.steering import Head, key_weights, pasta_hooks, pattern_hook_name, rescale_rows

Method = Literal["attribution", "exact", "hybrid"]
Strategy = Literal["intersection", "union", "task_specific"]
METHODS = ("attribution", "exact", "hybrid")
STRATEGIES = ("intersection", "union", "task_specific")
CHECKPOINT_VERSION = 1


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
    by_layer: dict[int, tuple[list[int], list[int]]] = {}
    for row, head in enumerate(heads):
        if head is not None:
            rows, hs = by_layer.setdefault(head[0], ([], []))
            rows.append(row)
            hs.append(head[1])

    def make_hook(rows: list[int], hs: list[int]) -> Callable[[Tensor, Any], Tensor]:
        def hook(pattern: Float[Tensor, "batch head query key"], hook: Any) -> Tensor:
            rows_t = torch.tensor(rows, device=pattern.device)
            heads_t = torch.tensor(hs, device=pattern.device)
            alpha_t = torch.tensor([float(alpha)], device=pattern.device)
            weights = key_weights(key_mask.to(pattern.device), pattern.shape[-1], alpha_t)
            steered = rescale_rows(pattern[rows_t, heads_t][:, None], weights)[:, 0]
            return pattern.index_put((rows_t, heads_t), steered)
        return hook

    return [(pattern_hook_name(layer), make_hook(rows, hs)) for layer, (rows, hs) in sorted(by_layer.items())]


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


# ------------------------------------------------------------------------------------------- checkpoints
def _example_digest(ex: ProfilingExample) -> str:
    """Identity of an example for checkpoints: its tokens, key mask and attention mask (not the objective)."""
    h = hashlib.sha256()
    for t in (ex.tokens, ex.key_mask, ex.attention_mask):
        h.update(repr(None if t is None else (str(t.dtype), tuple(t.shape))).encode())
        if t is not None:
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def _heads_digest(heads: Sequence[Head]) -> str:
    return hashlib.sha256(repr(list(heads)).encode()).hexdigest()[:16]


class _Checkpoint:
    """Per-example results on disk, rewritten atomically after each example; refuses other run settings.

    Results are keyed by the example's own digest (and, for exact scores, by the list of heads scored), so a run
    with more examples drawn with the same seed reuses the ones already done.
    """

    def __init__(self, path: Optional[Union[str, os.PathLike]], fingerprint: dict[str, Any]) -> None:
        self.path = Path(path) if path is not None else None
        self.fingerprint = fingerprint
        self.state: dict[str, Any] = {"fingerprint": fingerprint, "attribution": {}, "exact": {}}
        if self.path is not None and self.path.exists():
            state = torch.load(self.path, weights_only=True)
            if state.get("fingerprint") != fingerprint:
                diff = sorted(k for k in set(fingerprint) | set(state.get("fingerprint", {}))
                              if state.get("fingerprint", {}).get(k) != fingerprint.get(k))
                raise ValueError(f"Checkpoint {self.path} belongs to a different profiling run (differs in "
                                 f"{diff}); delete it, or pass another checkpoint path.")
            self.state = state

    def get(self, phase: str, key: str) -> Any:
        return self.state[phase].get(key)

    def put(self, phase: str, key: str, value: Any) -> None:
        self.state[phase][key] = value
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        try:
            torch.save(self.state, tmp)
            os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; a checkpoint is as readable as a profile
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def _progress(iterable: Sequence[int], enabled: bool, desc: str) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False, unit="it")


# ------------------------------------------------------------------------------------------- profiling
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
    ckpt = _Checkpoint(checkpoint, fingerprint)
    all_heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    n = len(examples)
    per_example = torch.zeros(n, n_layers, n_heads)
    baselines = torch.zeros(n)
    exact_mask = torch.zeros(n_layers, n_heads, dtype=torch.bool)

    if method in ("attribution", "hybrid"):
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


# ------------------------------------------------------------------------------------------- selection
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


def _tables(task_scores: Mapping[str, Union[HeadScores, Tensor]]) -> dict[str, Tensor]:
    if not task_scores:
        raise ValueError("select_heads needs scores of at least one task: {task: HeadScores}.")
    tables = {t: (s.scores if isinstance(s, HeadScores) else torch.as_tensor(s)) for t, s in task_scores.items()}
    shapes = {tuple(t.shape) for t in tables.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"All tasks' score tables must be [n_layers, n_heads] of one model; got shapes {shapes}.")
    return tables


def select_heads(
    task_scores: Mapping[str, Union[HeadScores, Tensor]],
    k: int,
    strategy: Strategy = "intersection",
    task: Optional[str] = None,
) -> tuple[Head, ...]:
    """Combine per-task rankings into one head set (the paper's multi-task selection).

    Args:
        task_scores: ``{task: HeadScores}`` (or ``{task: [n_layers, n_heads] tensor}``).
        k: heads taken from the top of each task's ranking.
        strategy: ``"intersection"`` (heads in every task's top-k; the paper's default), ``"union"`` (in any
            task's top-k) or ``"task_specific"`` (the top-k of ``task``).
        task: the task for ``"task_specific"``.

    Returns:
        Sorted ``(layer, head)`` pairs; possibly empty for an intersection with a small k.

    Example:
        >>> select_heads({"json": s_json, "counterfact": s_cf}, k=40)
        ((18, 2), (21, 5), ...)
    """
    tables = _tables(task_scores)
    shape = tuple(next(iter(tables.values())).shape)
    _check_k(k, shape)  # type: ignore[arg-type]
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got {strategy!r}.")
    tops = {t: set(_ranking(s)[:k]) for t, s in tables.items()}
    if strategy == "task_specific":
        if task not in tops:
            raise ValueError(f"strategy='task_specific' needs task= one of {sorted(tops)}; got {task!r}.")
        chosen = tops[task]
    elif strategy == "intersection":
        chosen = set.intersection(*tops.values())
    else:
        chosen = set.union(*tops.values())
    return tuple(sorted(chosen))


class _Point(NamedTuple):
    k: int
    n_heads: int
    metric: float


class AblationPoint(_Point):
    """One point of an ablation curve, a ``(k, n_heads, metric)`` tuple: steering the heads selected with ``k``
    on validation examples gives ``metric``; ``per_task`` holds each task's value (not part of the tuple)."""

    per_task: dict[str, float]

    def __new__(cls, k: int, n_heads: int, metric: float, per_task: Optional[Mapping[str, float]] = None
                ) -> "AblationPoint":
        point = super().__new__(cls, k, n_heads, metric)
        point.per_task = dict(per_task or {})
        return point


def _mean_change(model: Any, examples: Sequence[ProfilingExample], heads: Sequence[Head], alpha: float,
                 baselines: list[float]) -> float:
    if not heads:
        return 0.0
    changes = []
    with torch.inference_mode():
        for ex, base in zip(examples, baselines):
            hooks = pasta_hooks(heads, ex.key_mask, alpha)
            changes.append(float(_objective(ex, _forward(model, ex, 1, hooks))[0]) - base)
    return sum(changes) / len(changes)


def ablation_curve(
    model: Any,
    task_scores: Mapping[str, Union[HeadScores, Tensor]],
    val_examples_by_task: Mapping[str, Sequence[ProfilingExample]],
    ks: Sequence[int],
    strategy: Strategy = "intersection",
    alpha: float = 0.01,
    progress: bool = True,
) -> list[AblationPoint]:
    """Steer the head set selected with each ``k`` on validation examples; report the mean objective gain.

    ``metric`` is the mean over tasks of the mean change of the objective (steered minus unsteered) on that task's
    validation examples; for ``task_specific`` each task is steered with its own top-k. An empty intersection
    scores 0 (no steering).

    Example:
        >>> curve = ablation_curve(model, scores, val, ks=[5, 10, 20, 40])
        >>> [(p.k, p.n_heads, round(p.metric, 3)) for p in curve]
    """
    tables = _tables(task_scores)
    missing = set(tables) - set(val_examples_by_task)
    if missing:
        raise ValueError(f"No validation examples for tasks {sorted(missing)}; give one list per scored task.")
    for t in tables:
        _check_examples(val_examples_by_task[t], f"ablation_curve (validation examples of {t!r})")
    with torch.inference_mode():
        baselines = {t: [float(_objective(ex, _forward(model, ex, 1, []))[0]) for ex in val_examples_by_task[t]]
                     for t in tables}
    curve = []
    for k in _progress(list(ks), progress, f"ablation ({strategy})"):
        per_task, sizes = {}, []
        for t in tables:
            heads = select_heads(tables, k, strategy, task=t if strategy == "task_specific" else None)
            sizes.append(len(heads))
            per_task[t] = _mean_change(model, val_examples_by_task[t], heads, alpha, baselines[t])
        n_heads = sizes[0] if strategy != "task_specific" else max(sizes)
        curve.append(AblationPoint(int(k), n_heads, sum(per_task.values()) / len(per_task), per_task))
    return curve


def choose_k(curve: Sequence[AblationPoint]) -> int:
    """The k with the highest validation metric (ties: the fewer heads, then the smaller k).

    Points with no heads (empty intersections) are never chosen unless nothing else exists.
    """
    if not curve:
        raise ValueError("choose_k needs a non-empty ablation curve; compute one with ablation_curve(...).")
    candidates = [p for p in curve if p.n_heads > 0] or list(curve)
    return max(candidates, key=lambda p: (p.metric, -p.n_heads, -p.k)).k


def make_profile(
    model: Any,
    model_name: str,
    task_scores: Mapping[str, HeadScores],
    k: int,
    strategy: Strategy = "intersection",
    task: Optional[str] = None,
    seed: Optional[int] = None,
    command: Optional[str] = None,
    provenance: Optional[Mapping[str, Any]] = None,
) -> HeadProfile:
    """Select heads and wrap them with their scores and provenance in a :class:`HeadProfile`.

    Example:
        >>> profile = make_profile(model, "smollm2-135m-instruct", scores, k=40)
        >>> profile.save("profiles/my-profile.json")
    """
    heads = select_heads(task_scores, k, strategy, task)
    methods = {s.method for s in task_scores.values()}
    alphas = {s.alpha for s in task_scores.values()}
    if len(alphas) != 1:
        raise ValueError(f"All tasks must be profiled with one alpha to share a profile; got {sorted(alphas)}.")
    return HeadProfile(
        model_name=model_name, n_layers=int(model.cfg.n_layers), n_heads=int(model.cfg.n_heads), heads=heads,
        weights_hash=weights_hash(model), fingerprint=ModelFingerprint.of(model), tasks=tuple(task_scores),
        method="+".join(sorted(methods)),
        alpha=alphas.pop(), k=int(k), strategy=strategy,
        n_examples={t: s.n_examples for t, s in task_scores.items()}, seed=seed, command=command,
        scores={t: s.scores for t, s in task_scores.items()}, provenance=dict(provenance or {}))


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
