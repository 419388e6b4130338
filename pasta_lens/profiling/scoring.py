"""Head scores: the mean objective change when one head alone is steered, measured exactly or estimated.

    score[l, h] = mean_examples ( f(model with T_{l,h} applied) - f(model) )

``exact`` steers each head in its own batch row; ``attribution`` takes one forward and one backward pass per
example (first-order Taylor estimate through ``blocks.{l}.attn.hook_pattern``); ``hybrid`` re-scores the
attribution's ``top_m`` heads exactly, all on the same examples, and re-orders only that block by the exact scores
(:class:`HeadScores` records per head which estimator and how many examples). See :mod:`pasta_lens.profiling`
for the formulas; one example's numbers come from :mod:`~pasta_lens.profiling.estimators`, and each finished
example is stored at once in a :class:`~pasta_lens.profiling.checkpoints.Checkpoint`, so a rerun resumes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor

from pasta_lens.distributed import ShardedCheckpoint, World, compute_missing, current_world, rank_file
from pasta_lens.fingerprint import weights_hash
from pasta_lens.objectives import ProfilingExample
from pasta_lens.profiling.checkpoints import CHECKPOINT_VERSION, Checkpoint, example_digest, heads_digest
from pasta_lens.profiling.estimators import attribution_scores, check_examples, exact_scores
from pasta_lens.profiling.head_scores import METHODS, HeadScores, Method, ranking_by_score

T = TypeVar("T")


def progress_bar(items: Iterable[T], enabled: bool, desc: str) -> Iterable[T]:
    """``items`` behind a tqdm bar labelled ``desc`` when ``enabled`` (tqdm is imported only then), else as is.

    Example:
        >>> for task in progress_bar(["json", "pronoun"], True, "tasks"): ...
    """
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False, unit="it")


def profile_heads(
    model: Any,
    examples: Sequence[ProfilingExample],
    method: Method = "attribution",
    alpha: float = 0.01,
    top_m: int = 32,
    heads_per_batch: int = 16,
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
    rescore_examples: int | None = None,
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
    task = check_examples(examples)
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
    fingerprint = dict(
        version=CHECKPOINT_VERSION, alpha=float(alpha), shape=(n_layers, n_heads), weights=weights_hash(model)
    )
    vocab = int(getattr(model.cfg, "d_vocab", 0) or model.tokenizer.vocab_size)
    digests = [example_digest(ex, vocab) for ex in examples]
    world = current_world()  # under torchrun: torch.distributed's rank/size; one process: World(0, 1)
    own = rank_file(checkpoint, world.rank) if checkpoint is not None else None
    with ExitStack() as stack:  # under torchrun: this rank's file locked and written; the other ranks' files read

        def open_store(path: Path | None) -> Checkpoint:
            return stack.enter_context(Checkpoint(path, fingerprint, lock=path == own))

        ckpt = ShardedCheckpoint(checkpoint, world, open_store)
        return _score(
            model,
            examples,
            digests,
            ckpt,
            world,
            method,
            float(alpha),
            int(top_m),
            int(heads_per_batch),
            n_rescore,
            progress,
            task,
        )


def _std(values: Tensor) -> Tensor:
    return values.std(0, unbiased=True) if values.shape[0] > 1 else torch.zeros(values.shape[1:])


def _score(
    model: Any,
    examples: list[ProfilingExample],
    digests: list[str],
    ckpt: ShardedCheckpoint[Checkpoint],
    world: World,
    method: str,
    alpha: float,
    top_m: int,
    heads_per_batch: int,
    n_rescore: int,
    progress: bool,
    task: str,
) -> HeadScores:
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    all_heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    n = len(examples)
    per_example = torch.zeros(n, n_layers, n_heads)
    baselines = torch.zeros(n)

    if method in ("attribution", "hybrid"):
        compute_missing(
            ckpt,
            "attribution",
            digests,
            lambda i: attribution_scores(model, examples[i], alpha),
            world,
            progress,
            f"{task or 'task'}: attribution",
        )  # under torchrun: this rank's share
        for i in progress_bar(range(n), progress, f"{task or 'task'}: attribution"):
            done = ckpt.get("attribution", digests[i])
            if done is None:
                done = attribution_scores(model, examples[i], alpha)
                ckpt.put("attribution", digests[i], done)
            baselines[i], per_example[i] = done[0], done[1]
    attribution_mean = per_example.mean(0)

    if method == "exact":
        rescored, exact_rows = all_heads, range(n)
    elif method == "hybrid":
        rescored, exact_rows = list(ranking_by_score(attribution_mean)[:top_m]), range(n_rescore)
    else:
        rescored, exact_rows = [], range(0)
    exact_values = torch.zeros(len(exact_rows), len(rescored))
    heads_key = heads_digest(rescored)
    compute_missing(
        ckpt,
        "exact",
        [f"{digests[i]}:{heads_key}" for i in exact_rows],  # under torchrun: this rank's rows
        lambda j: exact_scores(model, examples[exact_rows[j]], alpha, rescored, heads_per_batch),
        world,
        progress,
        f"{task or 'task'}: exact",
    )
    for j, i in enumerate(progress_bar(exact_rows, progress and bool(rescored), f"{task or 'task'}: exact")):
        done = ckpt.get("exact", f"{digests[i]}:{heads_key}")
        if done is None:
            done = exact_scores(model, examples[i], alpha, rescored, heads_per_batch)
            ckpt.put("exact", f"{digests[i]}:{heads_key}", done)
        exact_values[j] = done[1]
        if method == "exact":
            baselines[i] = done[0]
    common: dict[str, Any] = dict(
        method=method,
        alpha=alpha,
        n_examples=n,
        task=task,
        baseline=float(baselines.mean()),
        wall_time_s=round(ckpt.own.elapsed_s(), 3),
    )
    if method == "attribution":
        return HeadScores(
            scores=attribution_mean,
            std=_std(per_example),
            exact=torch.zeros(n_layers, n_heads, dtype=torch.bool),
            counts=torch.full((n_layers, n_heads), n),
            per_example=per_example,
            **common,
        )
    if method == "exact":
        values = exact_values.reshape(n, n_layers, n_heads)  # rescored = all heads in row-major order
        return HeadScores(
            scores=values.mean(0),
            std=_std(values),
            exact=torch.ones(n_layers, n_heads, dtype=torch.bool),
            counts=torch.full((n_layers, n_heads), n),
            per_example=values,
            n_exact=n,
            **common,
        )
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
    order = tuple(rescored[c] for c in block) + tuple(ranking_by_score(attribution_mean)[len(rescored) :])
    return HeadScores(
        scores=scores,
        std=std,
        exact=exact_mask,
        counts=counts,
        per_example=per_example,
        exact_per_example=exact_full,
        order=order,
        top_m=len(rescored),
        n_exact=n_rescore,
        **common,
    )


def profile_tasks(
    model: Any,
    examples_by_task: Mapping[str, Sequence[ProfilingExample]],
    method: Method = "attribution",
    alpha: float = 0.01,
    top_m: int = 32,
    heads_per_batch: int = 16,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: bool = True,
    rescore_examples: int | None = None,
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
    for task in progress_bar(names, progress and len(names) > 1, "tasks"):
        ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / f"{task}.ckpt"
        out[task] = profile_heads(
            model, examples_by_task[task], method, alpha, top_m, heads_per_batch, ckpt, progress, rescore_examples
        )
    return out
