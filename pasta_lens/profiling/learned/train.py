"""The training loop of learned strengths: Adam on the head logits ``g`` only, resumable and deterministic.

Each step draws ``per_step`` examples per task (:func:`step_indices`), sums the gradients of their losses
(:func:`~pasta_lens.profiling.learned.losses.example_loss`, each divided by the number of terms, so the step's loss
is the mean over tasks of the mean over its examples), adds the protect term on ``per_step`` protected rows
(:func:`protect_rows`), the content term on ``per_step`` content examples (when ``content_weight`` is set) and the
sparsity penalty, and takes one Adam step:

    g <- Adam( g, d/dg [ mean_{t, e} loss_e  +  protect_weight * mean_rows KL_protect
                         +  content_weight * mean_rows KL_content  +  sparsity * sum sigmoid(g) ] )

The gradient is taken with ``torch.autograd.grad(loss, [g])`` only: no parameter gradient is computed or stored,
no ``requires_grad`` flag of the model is touched, its weights stay bit-identical.

**Resumable and deterministic.** The examples of step ``s`` are a function of ``(seed, s)`` alone, so with a
checkpoint (``g``, the Adam state, the step and the loss history, rewritten atomically every
``checkpoint_every`` steps under a lock file) an interrupted run resumed with the same arguments ends
bit-identical to an uninterrupted one. The checkpoint's fingerprint is the model's shape and weights, the initial
logits, every example's digest and :meth:`LearnedConfig.record`; another fingerprint is refused. ``steps`` is not
part of it: a finished run resumed with more steps continues where it ended.
"""

from __future__ import annotations

import hashlib
import os
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from pasta_lens.fingerprint import weights_hash
from pasta_lens.io import atomic_write, file_lock
from pasta_lens.objectives import ProfilingExample
from pasta_lens.profiling.checkpoints import example_digest
from pasta_lens.profiling.estimators import check_examples
from pasta_lens.profiling.learned import losses
from pasta_lens.profiling.learned.config import LearnedConfig
from pasta_lens.profiling.learned.losses import (
    content_loss,
    content_teacher,
    example_loss,
    protect_loss,
    sparsity_penalty,
)
from pasta_lens.profiling.learned.strengths import LearnedAlphas

LEARNED_CHECKPOINT_VERSION = 4  # 2: schedule and gain cap; 3: closing weight; 4: focus, early-close, protect


def step_indices(sizes: Mapping[str, int], step: int, per_step: int, seed: int) -> dict[str, list[int]]:
    """The example indices of ``step`` per task: positions ``step*per_step ..`` of seeded per-epoch permutations.

    A function of ``(sizes, step, per_step, seed)`` alone, so a resumed run sees the same examples at each step.

    Example:
        >>> step_indices({"json": 40}, step=3, per_step=2, seed=0)      # {'json': [i, j]}
    """
    out = {}
    for task, n in sizes.items():
        idx = []
        for pos in range(step * per_step, (step + 1) * per_step):
            epoch, within = divmod(pos, n)
            gen = torch.Generator().manual_seed(zlib.crc32(f"learned:{seed}:{task}:{epoch}".encode()))
            idx.append(int(torch.randperm(n, generator=gen)[within]))
        out[task] = idx
    return out


def protect_rows(protect: Sequence[ProfilingExample], step: int, config: LearnedConfig) -> list[list[int]]:
    """The protected examples of ``step``: one pool of ``per_step`` rows, or (``config.protect_each``) ``per_step``
    rows of every protected task, each task from its own seeded permutation.

    Example:
        >>> protect_rows(protect, 0, LearnedConfig(per_step=2, protect_each=True))   # [[cf rows], [pronoun rows]]
    """
    per_step, seed = config.per_step, config.seed
    if not config.protect_each:
        return [step_indices({"protect": len(protect)}, step, per_step, seed)["protect"]]
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(protect):
        groups.setdefault(ex.task, []).append(i)
    return [
        [groups[task][j] for j in step_indices({f"protect:{task}": len(rows)}, step, per_step, seed)[f"protect:{task}"]]
        for task, rows in sorted(groups.items())
    ]


def learn_alphas(
    model: Any,
    examples_by_task: Mapping[str, Sequence[ProfilingExample]],
    init: Float[Tensor, "layer head"],
    config: LearnedConfig = LearnedConfig(),
    *,
    protect: Sequence[ProfilingExample] | None = None,
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
    content: Sequence[ProfilingExample] | None = None,
) -> LearnedAlphas:
    """Fit one steering strength per head on several tasks' objectives (the loss: :mod:`.losses`).

    Args:
        model: a TransformerLens model; never modified (only ``g`` requires grad; weights stay bit-identical).
        examples_by_task: ``{task: [ProfilingExample, ...]}``, the training examples (train split).
        init: the initial logits ``[n_layers, n_heads]`` (e.g. :func:`init_logits` of attribution scores).
        config: every setting (:class:`LearnedConfig`: steps, lr, the loss weights, schedule, base, ...).
        protect: examples of tasks the strengths must *not* change (e.g. :func:`own_continuations` of another
            task's prompts): each step adds ``protect_weight * KL(steered || reference)`` over the positions that
            predict their targets, for ``per_step`` of them (their own seeded permutation). Not trained for: they
            carry no task term. Their reference per task: ``config.protect_reference``.
        checkpoint: file holding ``g``, the Adam state, the step and the history; resumed from if it exists.
        progress: a tqdm bar over the steps.
        content: the content term's examples (:func:`~pasta_lens.profiling.learned.content_targets`: context-QA
            prompts with the unsteered model's own answers, ``focus`` on the tokens copied from the document); each
            step adds ``content_weight * KL(unsteered || steered)`` over the focus positions of ``per_step`` of them
            (their own seeded permutation); the unsteered log-probs are computed once per example and kept. Needs
            ``config.content_weight > 0``.

    Returns:
        :class:`LearnedAlphas`.

    Raises:
        ValueError: no or bad examples, a weight set for a term none of the examples can carry, ``init`` of
            another shape, base heads outside the model, a checkpoint of another run (or one further than
            ``steps``).
        pasta_lens.io.LockedError: another live process is training on the same checkpoint.

    Example:
        >>> config = LearnedConfig(steps=100, schedule="prompt")
        >>> learned = learn_alphas(model, train, init_logits(scores), config, checkpoint="learned.ckpt")
        >>> learned.kept()        # {(layer, head): alpha} with alpha < 0.5
    """
    if not isinstance(config, LearnedConfig):
        raise ValueError(
            f"config must be a LearnedConfig (e.g. LearnedConfig(steps=100, lr=0.1)); got {type(config).__name__}."
        )
    if not examples_by_task:
        raise ValueError("learn_alphas needs at least one task: {task: [ProfilingExample, ...]}.")
    examples = {str(t): list(e) for t, e in examples_by_task.items()}
    for exs in examples.values():
        check_examples(exs, "learn_alphas")
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    init = torch.as_tensor(init).detach().float().cpu()
    if tuple(init.shape) != (n_layers, n_heads):
        raise ValueError(f"init must be a [{n_layers}, {n_heads}] logit table for this model; got {tuple(init.shape)}.")
    if not torch.isfinite(init).all():
        raise ValueError("init holds NaN or infinite logits; give finite values (e.g. init_logits(scores)).")
    for layer, head in config.base:
        if not (layer < n_layers and head < n_heads):
            raise ValueError(f"base head {(layer, head)} is outside this model's {n_layers} layers x {n_heads} heads.")
    for term in losses.TASK_TERMS:
        if getattr(config, term.weight) and not any(term.applies(ex) for exs in examples.values() for ex in exs):
            raise ValueError(f"{term.weight} needs {term.needs}, or set {term.weight}=0.")
    protected = list(protect or [])
    if protect is not None:
        check_examples(protected, "learn_alphas(protect=...)")
    protected_tasks = sorted({ex.task for ex in protected})
    config.references(protected_tasks)  # a per-task mapping must name exactly the protected tasks
    content_rows = list(content or [])
    if config.content_weight and not content_rows:
        raise ValueError(
            "content_weight needs content examples: content=content_targets(model, context_qa examples, their "
            "documents, F) (CLI: --content-weight builds them), or set content_weight=0."
        )
    if content_rows and not config.content_weight:
        raise ValueError("content examples were given but content_weight is 0: set content_weight > 0 or drop them.")
    if content_rows:
        check_examples(content_rows, "learn_alphas(content=...)")
        if any(not ex.focus for ex in content_rows):
            raise ValueError(
                "every content example needs focus positions (the answer tokens copied from its document): build "
                "them with content_targets(...)."
            )
    settings = config.record(protected_tasks, len(protected))
    if content_rows:  # recorded only when the term is on: the fingerprints of earlier runs stay valid
        settings["content"] = {"tasks": sorted({ex.task for ex in content_rows}), "n": len(content_rows)}
    vocab = int(getattr(model.cfg, "d_vocab", 0) or model.tokenizer.vocab_size)
    fingerprint = dict(
        version=LEARNED_CHECKPOINT_VERSION,
        shape=(n_layers, n_heads),
        weights=weights_hash(model),
        init=_digest(init),
        examples={t: [example_digest(ex, vocab) for ex in exs] for t, exs in examples.items()},
        protect_examples=[example_digest(ex, vocab) for ex in protected],
        **settings,
    )
    if content_rows:
        fingerprint["content_examples"] = [[example_digest(ex, vocab), list(ex.focus or ())] for ex in content_rows]
    path = Path(checkpoint) if checkpoint is not None else None
    if path is None:
        return _train(model, examples, init, config, settings, None, fingerprint, progress, protected, content_rows)
    with file_lock(path, what="the learned-alphas checkpoint"):
        return _train(model, examples, init, config, settings, path, fingerprint, progress, protected, content_rows)


def _digest(t: Tensor) -> str:
    return hashlib.sha256(t.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def _load_state(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    if not path.exists():
        return None
    fix = f"delete {path} to start the learned-alphas run from scratch"
    try:
        state = torch.load(path, weights_only=True)
    except Exception as err:  # cut, empty or foreign file
        raise ValueError(f"Checkpoint {path} cannot be read ({type(err).__name__}); {fix}.") from None
    if not isinstance(state, dict) or not {"fingerprint", "g", "optimizer", "step", "history"} <= set(state):
        raise ValueError(f"Checkpoint {path} is not a learned-alphas checkpoint; {fix}.")
    if state["fingerprint"] != fingerprint:
        old = state["fingerprint"] if isinstance(state["fingerprint"], dict) else {}
        diff = sorted(k for k in set(fingerprint) | set(old) if old.get(k) != fingerprint.get(k))
        raise ValueError(
            f"Checkpoint {path} belongs to a different learned-alphas run (differs in {diff}); {fix}, "
            "or pass another checkpoint path."
        )
    return state


def _train(
    model: Any,
    examples: dict[str, list[ProfilingExample]],
    init: Tensor,
    config: LearnedConfig,
    settings: dict[str, Any],
    path: Path | None,
    fingerprint: dict[str, Any],
    progress: bool,
    protect: Sequence[ProfilingExample] = (),
    content: Sequence[ProfilingExample] = (),
) -> LearnedAlphas:
    steps = config.steps
    g = init.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([g], lr=config.lr)
    step, history, previous_s = 0, [], []
    state = _load_state(path, fingerprint) if path is not None else None
    if state is not None:
        if int(state["step"]) > steps:
            raise ValueError(
                f"Checkpoint {path} has already taken {state['step']} steps, more than steps={steps}: "
                f"pass steps >= {state['step']} to continue it, or delete it to start again."
            )
        with torch.no_grad():
            g.copy_(state["g"])
        optimizer.load_state_dict(state["optimizer"])
        step, history, previous_s = int(state["step"]), list(state["history"]), list(state.get("segments_s", []))
    started = time.perf_counter()

    def elapsed() -> float:
        return float(sum(previous_s)) + time.perf_counter() - started

    def save() -> None:
        if path is None:
            return
        snapshot = {
            "fingerprint": fingerprint,
            "step": step,
            "g": g.detach().clone(),
            "optimizer": optimizer.state_dict(),
            "history": history,
            "segments_s": previous_s + [time.perf_counter() - started],
        }
        atomic_write(path, lambda tmp: torch.save(snapshot, tmp))

    sizes = {t: len(e) for t, e in examples.items()}
    free = torch.ones(g.shape, dtype=torch.bool)  # the heads being learned: all but the base's
    for layer, head in config.base:
        free[layer, head] = False
    n_terms = len(examples) * config.per_step
    teachers: dict[int, Tensor] = {}  # the content examples' unsteered log-probs, computed once each
    parts_summed = ("task", "task_gain", "term") + tuple(p.name for p in losses.PENALTIES)
    bar: Any = range(step, steps)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(bar, initial=step, total=steps, desc="learned alphas", unit="step", leave=False)
    for s in bar:
        grad = torch.zeros_like(g)
        record: dict[str, float] = {key: 0.0 for key in parts_summed}
        for task, idx in step_indices(sizes, s, config.per_step, config.seed).items():
            gains = []
            for i in idx:
                loss, parts = example_loss(model, examples[task][i], g, config)
                # towards g only: no parameter gradient is computed or stored
                (dg,) = torch.autograd.grad(loss / n_terms, [g])
                grad += dg
                for key in parts_summed:
                    record[key] += parts[key] / n_terms
                gains.append(parts["task_gain"])
            record[f"gain:{task}"] = sum(gains) / len(gains)
        if protect:  # KL on the protected examples' targets: kept as the unsteered model (or the base) has them
            record["kl_protect"] = 0.0
            references = config.references(sorted({ex.task for ex in protect}))
            for rows in protect_rows(protect, s, config):
                for i in rows:
                    kl_protect = protect_loss(model, protect[i], g, config, references[protect[i].task])
                    (dg,) = torch.autograd.grad(config.protect_weight * kl_protect / config.per_step, [g])
                    grad += dg
                    record["kl_protect"] += float(kl_protect.detach()) / config.per_step
        if content:  # KL(unsteered || steered) on the answer tokens copied from the document
            record["kl_content"] = 0.0
            rows = step_indices({"content": len(content)}, s, config.per_step, config.seed)["content"]
            for i in rows:
                if i not in teachers:
                    teachers[i] = content_teacher(model, content[i])
                kl_content = content_loss(model, content[i], g, config, teachers[i])
                (dg,) = torch.autograd.grad(config.content_weight * kl_content / config.per_step, [g])
                grad += dg
                record["kl_content"] += float(kl_content.detach()) / config.per_step
        with torch.enable_grad():
            penalty = sparsity_penalty(g, free, config.sparsity)
            (dp,) = torch.autograd.grad(penalty, [g])
        record.update(sparsity=float(penalty.detach()), mean_strength=float(torch.sigmoid(g.detach()).mean()))
        total = -record["term"]
        for p in losses.PENALTIES:
            total = total + getattr(config, p.weight) * record[p.name]
        record["loss"] = total + record["sparsity"]
        if protect:
            record["loss"] += config.protect_weight * record["kl_protect"]
        if content:
            record["loss"] += config.content_weight * record["kl_content"]
        g.grad = grad + dp
        optimizer.step()
        g.grad = None
        history.append(record)
        step = s + 1
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{record['loss']:.3f}", kl=f"{record['kl']:.3f}", gain=f"{record['task_gain']:.3f}")
        if step % config.checkpoint_every == 0 or step == steps:
            save()
    return LearnedAlphas(
        g=g.detach().clone(),
        init_g=init.clone(),
        alpha_min=config.alpha_min,
        steps=step,
        history=tuple(history),
        n_examples=sizes,
        settings=settings,
        wall_time_s=round(elapsed(), 3),
        base=dict(config.base),
    )
