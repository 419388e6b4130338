"""Learned per-head steering strengths: one alpha per head, fitted by gradient descent (beyond the paper).

PASTA steers a fixed head set at one alpha. Steering is differentiable in alpha, so instead every head gets its own
strength, parametrised by one logit ``g_h``:

    alpha_h = alpha_min ** sigmoid(g_h)        g_h -> -inf: alpha_h -> 1 (no steering)
                                               g_h -> +inf: alpha_h -> alpha_min (full strength, default 0.01)

and the logits are fitted with Adam on the training objectives of several tasks at once (the same
:class:`~pasta_lens.objectives.ProfilingExample` objectives :func:`~pasta_lens.profiling.profile_tasks` scores heads
with), minimising per step

    loss = - mean_{tasks t} mean_{examples e of t in the step} f_e(steered) / n_answer(e)       (task term)
           + kl_weight * mean_e KL( p_steered || p_unsteered )  over e's prompt positions         (fluency term)
           + sparsity * sum_h sigmoid(g_h)                                                        (sparsity term)

- **Task term.** ``f_e`` is the example's objective (log-prob of the gold answer; CounterFact: log P(new) -
  log P(old)), divided by the number of teacher-forced answer tokens ``n_answer = tokens - prompt`` so that a task
  with long answers (JSON) does not outweigh one with one-token answers (CounterFact); every task weighs the same.
  What is reported (``task_gain``) is the same quantity minus its unsteered value. With ``gain_cap`` an example's
  term is ``min(f_e(steered) / n_answer, f_e(unsteered) / n_answer + gain_cap)``: once steering has raised its
  answer by ``gain_cap`` nats per token it stops pulling, so tasks that steering moves by many nats (CounterFact,
  BiasBios) do not set the direction alone while a task that moves by a fraction of a nat (JSON) still gains.
- **Closing term** (``close_weight``, for chat targets that end the turn, ``ProfilingExample.close``):
  ``close_weight * log P(the answer's last token)`` is added to the example's task term, undivided by the answer
  length. Per-token averaging gives the one token where the answer must *stop* 1/n_answer of the weight;
  on SmolLM2's JSON task it is the hardest token of the target (teacher-forced, steered by a profile learned
  without this term: ``"}`` at p ~ 0.07 against ``",`` at ~ 0.8), and generation goes on inventing keys until
  the token budget ends with the object open.
- **Early-close and focus terms** (``early_weight``, ``focus_weight``). ``early_weight * sum log(1 - P(closing
  token))`` over the earlier answer positions whose gold token is another (the answer must not close before its
  end: the closing term alone may teach ``"}`` after the name), and ``focus_weight * mean log P(focus tokens)``
  (``ProfilingExample.focus``; the biography instruction tasks mark the occupation): the few tokens that carry the
  answer's content count beside the many that carry its format. Both are added to the task term.
- **Protect term** (``protect``, ``protect_weight``). ``protect_weight * KL(steered || unsteered)`` over the
  positions that predict the targets of examples of a task that is *not* trained for, ``per_step`` of them per
  step. With :func:`own_continuations` the targets are the unsteered model's own greedy start of its answer, so
  what that task's free generation does is kept (on SmolLM2: strengths learned for JSON otherwise change how the
  pronoun rewrite starts). With ``protect_reference`` ``"base"`` for a task, the reference is the model steered by
  the ``base`` heads alone, and :func:`own_continuations` with ``base`` gives that model's answers: the learned
  strengths must then keep what the *base* profile does on the task (e.g. CounterFact under a selected profile),
  where a KL to the unsteered model would fight the base's own steering.
- **Fluency term.** The KL divergence of the steered from the unsteered next-token distribution, averaged over the
  prompt positions ``0 .. n_prompt - 2`` (those whose next token is still prompt text; position ``n_prompt - 1``
  predicts the answer and is the task term's). It keeps the steered model a language model of ordinary text: a set
  of strengths that reaches the answer by wrecking the distribution everywhere else pays for it. ``KL(steered ||
  unsteered)`` (not the reverse) penalises the steered model for putting mass where the unsteered one puts none,
  i.e. for inventing text. The unsteered run is recomputed each step (no gradient), never stored.
- **Sparsity term.** ``sigmoid(g_h)`` is the head's strength on a 0..1 scale (``log alpha_h / log alpha_min``); its
  sum is an L1 penalty: a head must raise the per-token objective by more than ``sparsity`` nats at full strength
  to be worth steering.

**Initialisation from attribution** (:func:`init_logits`): each task's first-order head scores (the
``attribution`` scores of :func:`~pasta_lens.profiling.profile_heads` at ``alpha_min``) are divided by that task's
largest absolute score and averaged over tasks, giving ``s_h`` in [-1, 1]; then ``g_h = init_bias + init_scale *
s_h`` (defaults -4 and 6: a head with no attribution starts at alpha 0.92, i.e. almost off; the best head of every
task starts at g = 2, alpha 0.017; harmful heads start further off). All heads remain trainable.

**Differentiable steering.** Each layer's hook on ``blocks.{L}.attn.hook_pattern`` rescales all its heads with
:func:`~pasta_lens.kernels.key_weights` / :func:`~pasta_lens.kernels.scheduled_rescale` (the very arithmetic of
:func:`~pasta_lens.pasta_hooks`) at ``alpha = alpha_min ** sigmoid(g[L])``, a tensor that carries the gradient.

**Trained for its schedule.** ``schedule`` picks the query rows steered while training, the same rows
:class:`~pasta_lens.schedule.Schedule` steers at generation: the teacher-forced answer tokens stand for the
generated ones, so ``"prompt"`` trains strengths for a model whose prompt is steered and whose answer is written
unsteered (``"all"``, the default, steers the answer rows too, as the paper's generation does). Strengths trained
under one schedule and used under another are fitted to a different model; the profile records its schedule
(``provenance["schedule"]``) and is steered with it unless told otherwise. The
gradient is taken with ``torch.autograd.grad(loss, [g])`` only: no parameter gradient is computed or stored, no
``requires_grad`` flag of the model is touched, nothing on the model changes (its weights stay bit-identical).

**On top of a profile** (``base``): the heads of an already selected profile can be steered at their fixed alphas
in every steered run while the other heads' strengths are learned. The learner then adds what the base does not do
(on SmolLM2 the metric-selected 12-head intersection already solves CounterFact and BiasBios; what is left to learn
is the JSON instruction), and the profile holds both sets. Base heads take no gradient and no sparsity penalty.

**The result.** After training, the heads with ``alpha_h < keep_below`` (default 0.5: at least half of the
attention outside the span removed before renormalising) form the profile's head set, each with its learned
alpha (:attr:`HeadProfile.head_alphas <pasta_lens.head_profile.HeadProfile.head_alphas>`); the weaker heads are
dropped (not steered at all), so the profile steers a sparse set. That cut is a difference from the trained soft
model, which the recorded full alpha table (``provenance["alphas_all"]``) lets one inspect.

**Resumable and deterministic.** The examples of step ``s`` are a function of ``(seed, s)`` alone (a seeded
permutation per task and epoch), so with a checkpoint (``checkpoint=path``: ``g``, the Adam state, the step and the
loss history, rewritten atomically every ``checkpoint_every`` steps, under a lock file) an interrupted run resumed
with the same arguments ends bit-identical to an uninterrupted one. ``steps`` is not part of the run's identity: a
finished run resumed with more steps continues where it ended.

Example:
    >>> train = {t: get_task(t).profiling_examples(model, split="train", n=40) for t in TASK_NAMES}
    >>> scores = profile_tasks(model, train, method="attribution")
    >>> learned = learn_alphas(model, train, init_logits(scores), steps=100, checkpoint="run/learned.ckpt")
    >>> profile = learned_profile(model, "smollm2-135m-instruct", learned, task_scores=scores)
    >>> with steer(model, profile, em): ...                      # each head at its own alpha
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch
from jaxtyping import Float
from torch import Tensor

from pasta_lens.fingerprint import ModelFingerprint, weights_hash
from pasta_lens.generation import generate_new_tokens
from pasta_lens.io import atomic_write, file_lock
from pasta_lens.objectives import ProfilingExample, target_logprob
from pasta_lens.head_profile import HeadProfile
from pasta_lens.profiling.checkpoints import _example_digest
from pasta_lens.profiling.scoring import HeadScores, _check_examples, _objective
from pasta_lens.schedule import Schedule
from pasta_lens.kernels import key_weights, pattern_hook_name, scheduled_rescale
from pasta_lens.plan import ALPHA_MIN, Head, ScheduleSpec, head_alphas
from pasta_lens.steering import steer
from pasta_lens.tasks.base import answer_ids

PROTECT_REFERENCES = ("unsteered", "base")
"""What a protected task's answers are kept as: the unsteered model's, or the ``base`` heads' alone."""

LEARNED_CHECKPOINT_VERSION = 4  # 2: schedule and gain cap; 3: closing weight; 4: focus, early-close, protect
KEEP_BELOW = 0.5
"""Default cut: heads whose learned alpha is below it are kept in the profile."""


def strengths_to_alphas(g: Float[Tensor, "layer head"], alpha_min: float) -> Float[Tensor, "layer head"]:
    """``alpha = alpha_min ** sigmoid(g)``, differentiable in ``g``; always inside [alpha_min, 1]."""
    return torch.exp(torch.sigmoid(g) * math.log(alpha_min))


def init_logits(
    task_scores: Mapping[str, Union[HeadScores, Tensor]],
    init_bias: float = -4.0,
    init_scale: float = 6.0,
) -> Float[Tensor, "layer head"]:
    """Initial logits ``g = init_bias + init_scale * s`` from per-task head scores (see the module docstring).

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
            raise ValueError(f"The scores of task {task!r} must be a [n_layers, n_heads] table; got "
                             f"{tuple(table.shape)}.")
        top = float(table.abs().max())
        tables.append(table / top if top > 0 else table)
    shapes = {tuple(t.shape) for t in tables}
    if len(shapes) != 1:
        raise ValueError(f"The tasks' score tables have different shapes {sorted(shapes)}: score them on one model.")
    return init_bias + init_scale * torch.stack(tables).mean(0)


@dataclass(frozen=True)
class LearnedAlphas:
    """The outcome of :func:`learn_alphas`: the fitted logits and what it took to fit them.

    Attributes:
        g: the fitted logits ``[n_layers, n_heads]`` (``alphas`` are ``alpha_min ** sigmoid(g)``).
        init_g: the logits training started from.
        alpha_min: the strongest alpha a head can take.
        steps: optimiser steps taken (over every resumed segment).
        history: one record per step: ``loss``, ``task`` (mean normalised objective of the steered run),
            ``task_gain`` (the same minus the unsteered value), ``kl``, ``sparsity`` (the penalty term), per-task
            gains ``gain:{task}``, and ``mean_strength`` (mean sigmoid(g) before the step).
        n_examples: training examples per task.
        settings: the hyper-parameters (lr, kl_weight, sparsity, per_step, seed, alpha_min).
        wall_time_s: compute time summed over every resumed segment.
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
            return _with_base(strengths_to_alphas(self.g, self.alpha_min), self.base).clamp(self.alpha_min, 1.0)

    def kept(self, keep_below: float = KEEP_BELOW) -> dict[Head, float]:
        """``{(layer, head): alpha}`` of the learned heads with ``alpha < keep_below`` (possibly empty; base
        heads are not among them)."""
        alphas = self.alphas
        return {(int(layer), int(head)): float(alphas[layer, head])
                for layer, head in torch.nonzero(alphas < keep_below).tolist()
                if (int(layer), int(head)) not in self.base}

    def losses(self, window: int = 10) -> dict[str, float]:
        """The loss terms averaged over the first and the last ``window`` steps (the per-step values are
        one mini-batch each, hence noisy): ``{"loss_start": ..., "loss_end": ..., "task_gain_start": ...}``."""
        out: dict[str, float] = {}
        if not self.history:
            return out
        first, last = self.history[:window], self.history[-window:]
        for key in ("loss", "task_gain", "kl", "sparsity"):
            out[f"{key}_start"] = round(sum(h[key] for h in first) / len(first), 5)
            out[f"{key}_end"] = round(sum(h[key] for h in last) / len(last), 5)
        return out


# ----------------------------------------------------------------------------------------------- one step
def _with_base(alphas: Float[Tensor, "layer head"], base: Optional[Mapping[Head, float]]
               ) -> Float[Tensor, "layer head"]:
    """``alphas`` with every base head replaced by its fixed alpha (no gradient reaches those heads' logits)."""
    if not base:
        return alphas
    mask = torch.zeros(alphas.shape, dtype=torch.bool)
    fixed = torch.ones(alphas.shape, dtype=torch.float32)
    for (layer, head), alpha in base.items():
        mask[layer, head], fixed[layer, head] = True, float(alpha)
    return torch.where(mask.to(alphas.device), fixed.to(alphas.device, alphas.dtype), alphas)


def _hooks(g: Tensor, alpha_min: float, key_mask: Tensor, schedule: ScheduleSpec = None,
           base: Optional[Mapping[Head, float]] = None) -> list[tuple[str, Callable[[Tensor, Any], Tensor]]]:
    """One hook per layer, steering all its heads at ``alpha_min ** sigmoid(g[layer])`` (gradient flows to g; a
    ``base`` head at its fixed alpha), on the query rows ``schedule`` steers (teacher-forced answer tokens play
    the generated tokens' part)."""
    alphas = _with_base(strengths_to_alphas(g, alpha_min), base)
    rows = Schedule.parse(schedule)
    n_prompt = int(key_mask.shape[1])

    def make(layer: int) -> Callable[[Tensor, Any], Tensor]:
        def hook(pattern: Float[Tensor, "batch head query key"], hook: Any) -> Float[Tensor, "batch head query key"]:
            # mask and alpha moved to the pattern's device at call time (never cached)
            weights = key_weights(key_mask.to(pattern.device), pattern.shape[-1], alphas[layer].to(pattern.device))
            return scheduled_rescale(pattern, weights, rows, n_prompt)
        return hook

    return [(pattern_hook_name(layer), make(layer)) for layer in range(g.shape[0])]


def _run(model: Any, ex: ProfilingExample, hooks: list) -> Tensor:
    tokens = ex.tokens.to(model.cfg.device)
    kwargs = {} if ex.attention_mask is None else {"attention_mask": ex.attention_mask.to(tokens.device)}
    with model.hooks(fwd_hooks=hooks):
        return model(tokens, **kwargs)


def _kl(steered: Tensor, unsteered: Tensor, start: int, stop: int) -> Tensor:
    """Mean over positions ``start .. stop-1`` of KL(steered || unsteered) of the next-token distributions (0 when
    the range is empty)."""
    if stop <= start:
        return steered.new_zeros(())
    ls = torch.log_softmax(steered[0, start:stop].float(), dim=-1)
    lu = torch.log_softmax(unsteered[0, start:stop].float(), dim=-1)
    return (ls.exp() * (ls - lu)).sum(-1).mean()


def _prompt_kl(steered: Tensor, unsteered: Tensor, n_prompt: int) -> Tensor:
    """Mean over positions ``0 .. n_prompt-2`` of KL(steered || unsteered) of the next-token distributions."""
    return _kl(steered, unsteered, 0, n_prompt - 1)


def _answer_kl(steered: Tensor, unsteered: Tensor, n_prompt: int) -> Tensor:
    """Mean over the positions that predict the target tokens (``n_prompt-1 .. pos-2``) of KL(steered ||
    unsteered): the protect term."""
    return _kl(steered, unsteered, n_prompt - 1, int(steered.shape[1]) - 1)


def _close_logprob(ex: ProfilingExample, logits: Float[Tensor, "1 pos vocab"]) -> Tensor:
    """log P(the answer's closing token) at the position that predicts it (``ex.close``)."""
    assert ex.close is not None
    return torch.log_softmax(logits[0, ex.close - 1].float(), dim=-1)[ex.tokens[0, ex.close]]


def _early_close(ex: ProfilingExample, logits: Float[Tensor, "1 pos vocab"]) -> Tensor:
    """Sum of ``log(1 - P(closing token))`` at the answer positions before ``ex.close`` whose gold token is another:
    high when the answer does not close early."""
    assert ex.close is not None
    logp = torch.log_softmax(logits[0, ex.n_prompt - 1:ex.close - 1].float(), dim=-1)
    close_token = ex.tokens[0, ex.close]
    gold = ex.tokens[0, ex.n_prompt:ex.close].to(logp.device)
    p_close = logp[:, close_token].exp()
    return torch.log1p(-p_close.clamp(max=1 - 1e-6))[gold != close_token].sum()


def _focus_logprob(ex: ProfilingExample, logits: Float[Tensor, "1 pos vocab"]) -> Tensor:
    """Mean log-prob of the focus tokens (``ex.focus``), each at the position that predicts it."""
    assert ex.focus is not None
    at = torch.tensor(ex.focus, device=logits.device)
    logp = torch.log_softmax(logits[0, at - 1].float(), dim=-1)
    return logp.gather(-1, ex.tokens[0].to(logits.device)[at][:, None]).mean()


def _task_value(ex: ProfilingExample, logits: Tensor, n_answer: int, close_weight: float,
                focus_weight: float = 0.0, early_weight: float = 0.0) -> Tensor:
    value = _objective(ex, logits)[0] / n_answer
    if close_weight and ex.close is not None:
        value = value + close_weight * _close_logprob(ex, logits)
    if early_weight and ex.close is not None:
        value = value + early_weight * _early_close(ex, logits)
    if focus_weight and ex.focus is not None:
        value = value + focus_weight * _focus_logprob(ex, logits)
    return value


def example_loss(model: Any, ex: ProfilingExample, g: Tensor, alpha_min: float, kl_weight: float,
                 schedule: ScheduleSpec = None, gain_cap: Optional[float] = None,
                 base: Optional[Mapping[Head, float]] = None, close_weight: float = 0.0,
                 focus_weight: float = 0.0, early_weight: float = 0.0) -> tuple[Tensor, dict[str, float]]:
    """One example's ``- (f(steered) / n_answer + close_weight * log P(close) + early_weight * early + focus_weight
    * focus) + kl_weight * KL`` (differentiable in ``g``) and its parts.

    ``schedule``: the rows steered (the answer tokens are the generated ones); ``gain_cap``: the task term counts
    at most ``gain_cap`` nats per answer token above the unsteered value (None: no cap); ``base``: heads steered
    at fixed alphas beside the learned ones; ``close_weight``: extra weight of the answer's closing token
    (``ex.close``; none when the example has no closing token); ``early_weight``: weight of ``sum log(1 -
    P(closing token))`` at the answer's earlier positions; ``focus_weight``: weight of the mean log-prob of the
    focus tokens (``ex.focus``). Gains and KL are measured against the unsteered model.
    """
    n_answer = max(1, int(ex.tokens.shape[1]) - ex.n_prompt)
    with torch.no_grad():
        plain_logits = _run(model, ex, [])
        plain = float(_task_value(ex, plain_logits, n_answer, close_weight, focus_weight, early_weight))
    with torch.enable_grad():
        logits = _run(model, ex, _hooks(g, alpha_min, ex.key_mask, schedule, base))
        task = _task_value(ex, logits, n_answer, close_weight, focus_weight, early_weight)
        term = task if gain_cap is None else torch.clamp(task, max=plain + gain_cap)  # capped: no gradient beyond
        kl = _prompt_kl(logits, plain_logits, ex.n_prompt)
        loss = -term + kl_weight * kl
    value, divergence = float(task.detach()), float(kl.detach())
    return loss, {"task": value, "task_gain": value - plain, "term": float(term.detach()), "kl": divergence}


def protect_loss(model: Any, ex: ProfilingExample, g: Tensor, alpha_min: float, schedule: ScheduleSpec = None,
                 base: Optional[Mapping[Head, float]] = None, reference: str = "unsteered") -> Tensor:
    """KL(steered || reference) averaged over the positions that predict ``ex``'s target tokens (differentiable in
    ``g``): the protect term, which keeps a task's own answer (e.g. the unsteered model's greedy start, see
    :func:`own_continuations`) unchanged by the steering.

    ``reference``: ``"unsteered"`` (the model without hooks) or ``"base"`` (the ``base`` heads alone at their
    alphas, on the same ``schedule`` rows; every learned head at alpha 1): then only what the learned strengths add
    on top of the base is penalised.
    """
    if reference not in PROTECT_REFERENCES:
        raise ValueError(f"reference must be one of {PROTECT_REFERENCES}; got {reference!r}.")
    if reference == "base" and not base:
        raise ValueError("reference='base' needs base heads (learn_alphas(base=...)): without them it is the "
                         "unsteered model; pass reference='unsteered'.")
    reference_hooks = ([] if reference == "unsteered" else
                       _hooks(torch.full(tuple(g.shape), -math.inf), alpha_min, ex.key_mask, schedule, base))
    with torch.no_grad():
        plain = _run(model, ex, reference_hooks)
    with torch.enable_grad():
        steered = _run(model, ex, _hooks(g, alpha_min, ex.key_mask, schedule, base))
        return _answer_kl(steered, plain, ex.n_prompt)


def own_continuations(model: Any, examples: Sequence[ProfilingExample], max_new_tokens: int,
                      base: Optional[Mapping[Head, float]] = None, schedule: ScheduleSpec = None,
                      rewrite: Optional[Callable[[str], str]] = None) -> list[ProfilingExample]:
    """The examples with their target replaced by the *unsteered* model's own greedy continuation of the prompt:
    at most ``max_new_tokens`` tokens, cut after the end-of-turn marker when the example ends the turn (``close``
    set: the marker is the tokens after it). With ``base`` (``{(layer, head): alpha}``) the continuation is the
    model's steered by those heads (each example's key mask, ``schedule``'s rows): the targets of a protect term
    whose reference is the base (``protect_reference="base"``).

    The protect term on these targets keeps what free generation does: the first-token decision weighs
    1/``max_new_tokens`` of the KL, where on a long teacher-forced gold answer it would weigh 1/len(answer).
    Greedy, with the KV cache (:func:`pasta_lens.generation.generate_new_tokens`); the objective of a result is the
    log-prob of its own continuation.

    ``rewrite`` (text -> text, e.g. :meth:`Task.correct <pasta_lens.tasks.base.Task.correct>`): the continuation is
    decoded, rewritten and tokenised again (the end-of-turn marker, when reached, kept after it): a *task* target
    that is the model's own answer with the instruction carried out (pronoun: "She is a dentist." -> "They are a
    dentist."), where the gold answer is text the model never writes. The ``close`` of such a result is the
    rewritten answer's last token when the marker was reached, else None.

    Example:
        >>> protect = own_continuations(model, get_task("pronoun").profiling_examples(model, n=40, end_turn=True), 16)
        >>> pronoun = get_task("pronoun")
        >>> train = own_continuations(model, pronoun.profiling_examples(model, n=40, end_turn=True), 64,
        ...                           rewrite=pronoun.correct)
    """
    if isinstance(max_new_tokens, bool) or int(max_new_tokens) != max_new_tokens or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer; got {max_new_tokens!r}.")
    out = []
    for ex in examples:
        if ex.attention_mask is not None and not bool(ex.attention_mask.all()):
            raise ValueError("own_continuations takes unpadded examples (one prompt each, no attention mask).")
        prompt = ex.tokens[:, :ex.n_prompt].to(model.cfg.device)
        stop = [] if ex.close is None else ex.tokens[0, ex.close + 1:].tolist()
        steering = (contextlib.nullcontext() if not base else
                    steer(model, list(base), ex.key_mask, alpha=dict(base), schedule=schedule))
        with steering:
            new = generate_new_tokens(model, prompt, max_new_tokens=int(max_new_tokens), stop_at_eos=False)
        new = new[0].tolist()
        ended = False
        for end in range(len(stop), len(new) + 1):  # cut after the first end-of-turn marker
            if stop and new[end - len(stop):end] == stop:
                new, ended = new[:end], True
                break
        close = None
        if rewrite is not None:
            body = new[:len(new) - len(stop)] if ended else new
            text = rewrite(model.tokenizer.decode(body))
            new = (answer_ids(model, text).tolist() if text else []) + (stop if ended else [])
            if not new:
                raise ValueError(f"rewrite left nothing of the continuation {model.tokenizer.decode(body)!r}.")
            close = ex.n_prompt + len(new) - len(stop) - 1 if ended and len(new) > len(stop) else None
        target = torch.tensor(new, dtype=ex.tokens.dtype)
        tokens = torch.cat([ex.tokens[:, :ex.n_prompt].cpu(), target[None]], dim=1)
        out.append(ProfilingExample(tokens=tokens, key_mask=ex.key_mask, task=ex.task,
                                    objective=target_logprob(ex.n_prompt, target), close=close))
    return out


def step_indices(sizes: Mapping[str, int], step: int, per_step: int, seed: int) -> dict[str, list[int]]:
    """The example indices of ``step`` per task: positions ``step*per_step ..`` of seeded per-epoch permutations.

    A function of ``(sizes, step, per_step, seed)`` alone, so a resumed run sees the same examples at each step.
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


# --------------------------------------------------------------------------------------------- checkpoint
def _digest(t: Tensor) -> str:
    return hashlib.sha256(t.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def _load_state(path: Path, fingerprint: dict[str, Any]) -> Optional[dict[str, Any]]:
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
        raise ValueError(f"Checkpoint {path} belongs to a different learned-alphas run (differs in {diff}); {fix}, "
                         "or pass another checkpoint path.")
    return state


# ------------------------------------------------------------------------------------------------ training
def base_alphas(profile: Any, alpha: Optional[float] = None) -> dict[Head, float]:
    """A profile's heads with the alphas it is steered at (:func:`pasta_lens.plan.head_alphas`: ``alpha`` when
    given, else its per-head alphas, else its own ``alpha``, else 0.01): the ``base`` of :func:`learn_alphas`.

    Example:
        >>> base_alphas(load_profile("smollm2-135m-instruct-metric"))     # {(6, 8): 0.01, (7, 1): 0.01, ...}
    """
    return head_alphas(tuple(profile.heads), profile, alpha)


def _check_base(base: Mapping[Head, float], n_layers: int, n_heads: int) -> dict[Head, float]:
    out = {}
    for head, alpha in dict(base).items():
        layer, index = (int(x) for x in head)
        if not (0 <= layer < n_layers and 0 <= index < n_heads):
            raise ValueError(f"base head {head} is outside this model's {n_layers} layers x {n_heads} heads.")
        if not (ALPHA_MIN <= float(alpha) <= 1.0):
            raise ValueError(f"base head {head} has alpha {alpha}; a steering alpha lies in [{ALPHA_MIN:g}, 1].")
        out[(layer, index)] = float(alpha)
    return out


def learn_alphas(
    model: Any,
    examples_by_task: Mapping[str, Sequence[ProfilingExample]],
    init: Float[Tensor, "layer head"],
    *,
    steps: int = 100,
    lr: float = 0.1,
    kl_weight: float = 1.0,
    sparsity: float = 0.01,
    alpha_min: float = 0.01,
    per_step: int = 1,
    seed: int = 0,
    schedule: ScheduleSpec = "all",
    gain_cap: Optional[float] = None,
    base: Optional[Mapping[Head, float]] = None,
    close_weight: float = 0.0,
    focus_weight: float = 0.0,
    early_weight: float = 0.0,
    protect: Optional[Sequence[ProfilingExample]] = None,
    protect_weight: float = 1.0,
    protect_reference: Union[str, Mapping[str, str]] = "unsteered",
    protect_each: bool = False,
    checkpoint: Optional[Union[str, os.PathLike]] = None,
    checkpoint_every: int = 5,
    progress: bool = True,
) -> LearnedAlphas:
    """Fit one steering strength per head on several tasks' objectives (see the module docstring for the loss).

    Args:
        model: a TransformerLens model; never modified (only ``g`` requires grad; weights stay bit-identical).
        examples_by_task: ``{task: [ProfilingExample, ...]}``, the training examples (train split).
        init: the initial logits ``[n_layers, n_heads]`` (e.g. :func:`init_logits` of attribution scores).
        steps: optimiser steps in total (a resumed run continues up to this number).
        lr: Adam's learning rate on the logits.
        kl_weight: weight of the fluency term (KL on the prompt positions).
        sparsity: weight of ``sum_h sigmoid(g_h)``.
        alpha_min: the strongest alpha (``g -> +inf``), in [``ALPHA_MIN``, 1).
        per_step: examples per task in each step (the gradient is their mean).
        seed: decides which examples each step sees.
        schedule: the query rows steered while training, as they will be steered when the profile is used
            (``"all"``: prompt and answer rows, the paper's; ``"prompt"``: the prompt rows only, the teacher-forced
            answer tokens standing for generated ones unsteered; ``"first:N"``, ``"decay:G"``). The profile
            records it as its ``provenance["schedule"]``, so it is steered the way it was trained.
        gain_cap: at most this many nats per answer token above the unsteered value count towards an example's
            task term (None: no cap). Tasks whose objective steering moves by several nats (CounterFact's
            contrast, BiasBios) otherwise set the direction alone; with a cap, an example that gained enough
            stops pulling and the other tasks decide.
        base: ``{(layer, head): alpha}`` steered at those fixed alphas in every steered run (e.g. a selected
            profile's heads, :func:`base_alphas`); the strengths are learned *on top of* it, for what it does not
            already do, and :func:`learned_profile` keeps it beside the learned heads. Its heads are not trained
            and not penalised by ``sparsity``.
        close_weight: the log-prob of each example's closing token (``ProfilingExample.close``: the answer's
            last token before the end-of-turn marker, made by ``profiling_examples(..., end_turn=True)``) times
            ``close_weight`` is added to its task term, undivided by the answer length, so the one token where the
            answer must stop is not drowned by the rest (0: no closing term). Examples without a closing token
            (plain-text tasks) are unaffected.
        focus_weight: the mean log-prob of each example's focus tokens (``ProfilingExample.focus``; the bio
            instruction tasks: the occupation in the gold answer) times ``focus_weight`` is added to its task term:
            the answer's content, a few of its tokens, is not drowned by its format (0: off).
        early_weight: ``early_weight * sum log(1 - P(closing token))`` over the answer positions before the
            closing token whose gold token is another is added to the task term of an example with a closing
            token: the answer must not close before its end (0: off). With ``close_weight`` the pair asks for
            the close at the right place.
        protect: examples of a task the strengths must *not* change (e.g. :func:`own_continuations` of another
            task's prompts): each step adds ``protect_weight * KL(steered || unsteered)`` over the positions
            that predict their target tokens, for ``per_step`` of them (their own seeded permutation). Not
            trained for: they carry no task term.
        protect_weight: the weight of that term.
        protect_reference: what the protected answers are kept as: ``"unsteered"`` (KL to the model without
            hooks) or ``"base"`` (KL to the model steered by ``base`` alone: keep what the base profile does on
            that task), for all protected tasks or per task (``{"pronoun": "unsteered", "counterfact": "base"}``).
        protect_each: with several protected tasks, each gets its own ``per_step`` rows per step (its own seeded
            permutation) and the term is the sum of their mean KLs, so every task is protected as strongly as it
            would be alone; False (the default, as before): one pool of ``per_step`` rows drawn across them.
        checkpoint: file holding ``g``, the Adam state, the step and the history; resumed from if it exists.
        checkpoint_every: write the checkpoint every this many steps (and at the end).
        progress: a tqdm bar over the steps.

    Returns:
        :class:`LearnedAlphas`.

    Raises:
        ValueError: no or bad examples, bad hyper-parameters, ``init`` of another shape, a checkpoint of another
            run (or one further than ``steps``).
        pasta_lens.io.LockedError: another live process is training on the same checkpoint.

    Example:
        >>> learned = learn_alphas(model, train, init_logits(scores), steps=100, checkpoint="learned.ckpt")
        >>> learned.kept()        # {(layer, head): alpha} with alpha < 0.5
    """
    if not examples_by_task:
        raise ValueError("learn_alphas needs at least one task: {task: [ProfilingExample, ...]}.")
    examples = {str(t): list(e) for t, e in examples_by_task.items()}
    for task, exs in examples.items():
        _check_examples(exs, "learn_alphas")
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    init = torch.as_tensor(init).detach().float().cpu()
    if tuple(init.shape) != (n_layers, n_heads):
        raise ValueError(f"init must be a [{n_layers}, {n_heads}] logit table for this model; got "
                         f"{tuple(init.shape)}.")
    if not torch.isfinite(init).all():
        raise ValueError("init holds NaN or infinite logits; give finite values (e.g. init_logits(scores)).")
    if not (ALPHA_MIN <= float(alpha_min) < 1.0):
        raise ValueError(f"alpha_min must be in [{ALPHA_MIN:g}, 1) (the strongest alpha a head may learn); got "
                         f"{alpha_min}.")
    for name, value, low in (("steps", steps, 1), ("per_step", per_step, 1), ("checkpoint_every", checkpoint_every, 1)):
        if isinstance(value, bool) or int(value) != value or value < low:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    for name, value in (("lr", lr), ("kl_weight", kl_weight), ("sparsity", sparsity)):
        if not math.isfinite(float(value)) or float(value) < 0 or (name == "lr" and float(value) == 0):
            raise ValueError(f"{name} must be a finite number {'> 0' if name == 'lr' else '>= 0'}; got {value}.")
    if gain_cap is not None and not (math.isfinite(float(gain_cap)) and float(gain_cap) > 0):
        raise ValueError(f"gain_cap must be a finite number of nats > 0 (or None for no cap); got {gain_cap}.")
    base_heads = _check_base(base or {}, n_layers, n_heads)
    for name, value in (("close_weight", close_weight), ("focus_weight", focus_weight),
                        ("early_weight", early_weight), ("protect_weight", protect_weight)):
        if not (math.isfinite(float(value)) and float(value) >= 0):
            raise ValueError(f"{name} must be a finite number >= 0 (0: off); got {value}.")
    for name, value in (("close_weight", close_weight), ("early_weight", early_weight)):
        if value and not any(ex.close is not None for exs in examples.values() for ex in exs):
            raise ValueError(f"{name} needs examples with a closing token: build a chat task's examples with "
                             f"end_turn=True (CLI: --end-turn), or set {name}=0.")
    if focus_weight and not any(ex.focus is not None for exs in examples.values() for ex in exs):
        raise ValueError("focus_weight needs examples with focus tokens (the json and pronoun tasks mark the "
                         "occupation); train on such a task, or set focus_weight=0.")
    protected = list(protect or [])
    if protect is not None:
        _check_examples(protected, "learn_alphas(protect=...)")
    protected_tasks = sorted({ex.task for ex in protected})
    references = _protect_references(protect_reference, protected_tasks, bool(base_heads))
    settings = dict(lr=float(lr), kl_weight=float(kl_weight), sparsity=float(sparsity), alpha_min=float(alpha_min),
                    per_step=int(per_step), seed=int(seed), schedule=str(Schedule.parse(schedule)),
                    gain_cap=None if gain_cap is None else float(gain_cap), close_weight=float(close_weight),
                    focus_weight=float(focus_weight), early_weight=float(early_weight),
                    protect={"tasks": protected_tasks, "n": len(protected),
                             "weight": float(protect_weight),
                             **({"each": True} if protect_each else {}),  # recorded only when set (older runs: pool)
                             # recorded only where a task is kept as the base has it (older runs: all unsteered)
                             **({"reference": references} if "base" in references.values() else {})}
                    if protected else None,
                    base=[[layer, head, alpha] for (layer, head), alpha in sorted(base_heads.items())])
    vocab = int(getattr(model.cfg, "d_vocab", 0) or model.tokenizer.vocab_size)
    fingerprint = dict(version=LEARNED_CHECKPOINT_VERSION, shape=(n_layers, n_heads), weights=weights_hash(model),
                       init=_digest(init), examples={t: [_example_digest(ex, vocab) for ex in exs]
                                                     for t, exs in examples.items()},
                       protect_examples=[_example_digest(ex, vocab) for ex in protected], **settings)
    path = Path(checkpoint) if checkpoint is not None else None
    if path is None:
        return _train(model, examples, init, int(steps), settings, None, fingerprint, int(checkpoint_every),
                      progress, protected)
    with file_lock(path, what="the learned-alphas checkpoint"):
        return _train(model, examples, init, int(steps), settings, path, fingerprint, int(checkpoint_every),
                      progress, protected)


def _protect_references(spec: Union[str, Mapping[str, str]], tasks: Sequence[str], has_base: bool
                        ) -> dict[str, str]:
    """``{task: "unsteered" | "base"}`` for the protected tasks, from one reference or a per-task mapping."""
    if isinstance(spec, str):
        spec = {task: spec for task in tasks}
    spec = {str(t): r for t, r in dict(spec).items()}
    extra, missing = sorted(set(spec) - set(tasks)), sorted(set(tasks) - set(spec))
    if extra or missing:
        raise ValueError(f"protect_reference must name exactly the protected tasks {list(tasks)}; "
                         + (f"it names {extra}, which are not protected" if extra else f"{missing} are missing"))
    bad = {t: r for t, r in spec.items() if r not in PROTECT_REFERENCES}
    if bad:
        raise ValueError(f"protect_reference must be one of {PROTECT_REFERENCES}; got {bad}.")
    if "base" in spec.values() and not has_base:
        raise ValueError("protect_reference 'base' keeps what the base heads do: give them with base=... (CLI: "
                         "--base-profile), or protect against 'unsteered'.")
    return {t: spec[t] for t in tasks}


def _protect_rows(protect: Sequence[ProfilingExample], step: int, settings: Mapping[str, Any]) -> list[list[int]]:
    """The protected examples of ``step``: one pool of ``per_step`` rows, or (``protect["each"]``) ``per_step``
    rows of every protected task, each task from its own seeded permutation."""
    per_step, seed = settings["per_step"], settings["seed"]
    if not settings["protect"].get("each"):
        return [step_indices({"protect": len(protect)}, step, per_step, seed)["protect"]]
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(protect):
        groups.setdefault(ex.task, []).append(i)
    return [[groups[task][j] for j in step_indices({f"protect:{task}": len(rows)}, step, per_step, seed)[
        f"protect:{task}"]] for task, rows in sorted(groups.items())]


def _train(model: Any, examples: dict[str, list[ProfilingExample]], init: Tensor, steps: int,
           settings: dict[str, Any], path: Optional[Path], fingerprint: dict[str, Any], every: int,
           progress: bool, protect: Sequence[ProfilingExample] = ()) -> LearnedAlphas:
    g = init.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([g], lr=settings["lr"])
    step, history, previous_s = 0, [], []
    state = _load_state(path, fingerprint) if path is not None else None
    if state is not None:
        if int(state["step"]) > steps:
            raise ValueError(f"Checkpoint {path} has already taken {state['step']} steps, more than steps={steps}: "
                             f"pass steps >= {state['step']} to continue it, or delete it to start again.")
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
        snapshot = {"fingerprint": fingerprint, "step": step, "g": g.detach().clone(),
                    "optimizer": optimizer.state_dict(), "history": history,
                    "segments_s": previous_s + [time.perf_counter() - started]}
        atomic_write(path, lambda tmp: torch.save(snapshot, tmp))

    sizes = {t: len(e) for t, e in examples.items()}
    alpha_min, kl_weight, sparsity = settings["alpha_min"], settings["kl_weight"], settings["sparsity"]
    base = {(int(layer), int(head)): float(alpha) for layer, head, alpha in settings["base"]}
    free = torch.ones(g.shape, dtype=torch.bool)  # the heads being learned: all but the base's
    for layer, head in base:
        free[layer, head] = False
    n_terms = len(examples) * settings["per_step"]
    bar: Any = range(step, steps)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(bar, initial=step, total=steps, desc="learned alphas", unit="step", leave=False)
    for s in bar:
        grad = torch.zeros_like(g)
        record: dict[str, float] = {"task": 0.0, "task_gain": 0.0, "term": 0.0, "kl": 0.0}
        for task, idx in step_indices(sizes, s, settings["per_step"], settings["seed"]).items():
            gains = []
            for i in idx:
                loss, parts = example_loss(model, examples[task][i], g, alpha_min, kl_weight, settings["schedule"],
                                           settings["gain_cap"], base, settings["close_weight"],
                                           settings["focus_weight"], settings["early_weight"])
                # towards g only: no parameter gradient is computed or stored
                (dg,) = torch.autograd.grad(loss / n_terms, [g])
                grad += dg
                for key in ("task", "task_gain", "term", "kl"):
                    record[key] += parts[key] / n_terms
                gains.append(parts["task_gain"])
            record[f"gain:{task}"] = sum(gains) / len(gains)
        if protect:  # KL on the protected examples' targets: kept as the unsteered model (or the base) has them
            record["kl_protect"] = 0.0
            weight = settings["protect"]["weight"]
            for rows in _protect_rows(protect, s, settings):
                for i in rows:
                    reference = settings["protect"].get("reference", {}).get(protect[i].task, "unsteered")
                    kl_protect = protect_loss(model, protect[i], g, alpha_min, settings["schedule"], base, reference)
                    (dg,) = torch.autograd.grad(weight * kl_protect / settings["per_step"], [g])
                    grad += dg
                    record["kl_protect"] += float(kl_protect.detach()) / settings["per_step"]
        with torch.enable_grad():
            strength = torch.sigmoid(g)
            penalty = sparsity * strength[free].sum()  # base heads are not the learner's to pay for
            (dp,) = torch.autograd.grad(penalty, [g])
        record.update(sparsity=float(penalty.detach()), mean_strength=float(strength.detach().mean()))
        record["loss"] = -record["term"] + kl_weight * record["kl"] + record["sparsity"]
        if protect:
            record["loss"] += settings["protect"]["weight"] * record["kl_protect"]
        g.grad = grad + dp
        optimizer.step()
        g.grad = None
        history.append(record)
        step = s + 1
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{record['loss']:.3f}", kl=f"{record['kl']:.3f}",
                            gain=f"{record['task_gain']:.3f}")
        if step % every == 0 or step == steps:
            save()
    return LearnedAlphas(g=g.detach().clone(), init_g=init.clone(), alpha_min=alpha_min, steps=step,
                         history=tuple(history), n_examples=sizes, settings=settings,
                         wall_time_s=round(elapsed(), 3), base=base)


# -------------------------------------------------------------------------------------------------- profile
def learned_profile(
    model: Any,
    model_name: str,
    learned: LearnedAlphas,
    *,
    keep_below: float = KEEP_BELOW,
    task_scores: Optional[Mapping[str, HeadScores]] = None,
    seed: Optional[int] = None,
    command: Optional[str] = None,
    provenance: Optional[Mapping[str, Any]] = None,
    base_profile: Optional[HeadProfile] = None,
    base_name: Optional[str] = None,
) -> HeadProfile:
    """A :class:`~pasta_lens.head_profile.HeadProfile` of the heads with ``alpha < keep_below``, each at its alpha, and
    of the ``base`` heads the strengths were learned on top of (at their fixed alphas).

    ``base_profile``: the profile the base came from; its tasks (whose examples chose the base heads), example
    counts and score tables join the result's (for a task in both, the learned run's own table and count), and
    ``provenance["base_profile"]`` records it (``base_name``: the name or path it was loaded by, its method,
    command and heads).

    ``scores`` hold the attribution tables the logits were initialised from (``task_scores``), ``alpha`` is
    ``alpha_min`` (the strength those scores were measured at), ``k`` and ``strategy`` are None (no top-k
    selection), and ``provenance`` records the settings, the loss at the start and end, every head's alpha
    (``alphas_all``) and the wall time.

    Raises:
        ValueError: no head is below ``keep_below`` and there is no base (lower ``sparsity`` or ``kl_weight``, train longer, or raise
            ``keep_below``).

    Example:
        >>> profile = learned_profile(model, "smollm2-135m-instruct", learned, task_scores=scores)
        >>> profile.head_alphas      # {(layer, head): alpha}
    """
    if not 0.0 < keep_below <= 1.0:
        raise ValueError(f"keep_below must be in (0, 1]; got {keep_below}.")
    kept = learned.kept(keep_below)
    if not kept and not learned.base:
        best = float(learned.alphas.min())
        raise ValueError(f"No head learned an alpha below {keep_below} (the strongest is {best:.3g}): lower the "
                         "sparsity or the KL weight, train for more steps, or raise keep_below.")
    tasks = tuple(learned.n_examples)
    sizes = sorted(set(learned.n_examples.values()))
    per_task = str(sizes[0]) if len(sizes) == 1 else "/".join(str(learned.n_examples[t]) for t in tasks)
    st = learned.settings
    schedule = str(st.get("schedule", "all"))
    cap = "" if st.get("gain_cap") is None else f", gain cap {st['gain_cap']:g} nats per answer token"
    if st.get("close_weight"):
        cap += f", closing token weight {st['close_weight']:g}"
    if st.get("early_weight"):
        cap += f", early-close weight {st['early_weight']:g}"
    if st.get("focus_weight"):
        cap += f", focus token weight {st['focus_weight']:g}"
    if st.get("protect"):
        against = st["protect"].get("reference")
        against = "" if not against else "; against " + ", ".join(f"{t}: {r}" for t, r in against.items())
        each = f"; {st['per_step']} of each task per step" if st["protect"].get("each") else ""
        cap += (f", KL on {st['protect']['n']} protected {'/'.join(st['protect']['tasks'])} answers (weight "
                f"{st['protect']['weight']:g}{against}{each})")
    method = (f"learned (per-head alphas alpha_min**sigmoid(g), alpha_min {st['alpha_min']:g}; {learned.steps} Adam "
              f"steps of {st['per_step']} example(s) per task from {per_task} train examples per task; "
              f"lr {st['lr']:g}, kl_weight {st['kl_weight']:g}, sparsity {st['sparsity']:g}{cap}; trained and "
              f"steered with schedule {schedule}; initialised from attribution; {len(kept)} heads with alpha < "
              f"{keep_below:g} kept" + (f", on top of {len(learned.base)} fixed base heads)" if learned.base else ")"))
    steered = {**kept, **dict(learned.base)}
    prov = dict(provenance or {})
    if base_profile is not None:
        prov["base_profile"] = {"profile": base_name, "method": base_profile.method, "command": base_profile.command,
                                "heads": [list(h) for h in base_profile.heads]}
    prov.update({
        "schedule": schedule,  # steer the profile with the rows it was trained on (pasta_lens.plan.spec_schedule)
        "learned": {**st, "steps": learned.steps, "keep_below": keep_below,
                    "fluency_term": "KL(steered || unsteered) of next-token distributions, mean over prompt positions "
                                    "0..n_prompt-2",
                    "task_term": "objective / answer tokens, mean over examples, tasks weighted equally" + (
                        "" if st.get("gain_cap") is None else
                        f"; at most gain_cap above the unsteered value per example") + (
                        "" if not st.get("close_weight") else
                        "; plus close_weight * log P(the answer's closing token) for chat targets that end the turn") + (
                        "" if not st.get("early_weight") else
                        "; plus early_weight * sum log(1 - P(closing token)) at the answer's earlier positions") + (
                        "" if not st.get("focus_weight") else
                        "; plus focus_weight * mean log P(focus tokens: the occupation in the gold answer)"),
                    **({"protect_term": "protect weight * KL(steered || reference) over the positions predicting "
                                        "the protected examples' targets, per_step of them per step; reference: "
                                        "the unsteered model, or the base heads alone for a task whose "
                                        "protect.reference is 'base'"}
                       if st.get("protect") else {}),
                    "init": "g = init_bias + init_scale * mean_t(attribution_t / max|attribution_t|)"},
        "losses": learned.losses(),
        "learning_wall_time_s": round(learned.wall_time_s, 1),
        "alphas_all": [[round(float(a), 5) for a in row] for row in learned.alphas.tolist()],
        "init_logits": [[round(float(x), 4) for x in row] for row in learned.init_g.tolist()],
    })
    scores = {t: s.scores for t, s in (task_scores or {}).items()}
    n_examples = dict(learned.n_examples)
    if base_profile is not None:
        tasks = tuple(dict.fromkeys(tuple(base_profile.tasks) + tasks))
        scores = {**dict(base_profile.scores), **scores}
        n_examples = {**dict(base_profile.n_examples), **n_examples}
    return HeadProfile(
        model_name=model_name, n_layers=int(model.cfg.n_layers), n_heads=int(model.cfg.n_heads),
        heads=tuple(steered), head_alphas=steered, weights_hash=weights_hash(model),
        fingerprint=ModelFingerprint.of(model),
        tasks=tasks, method=method, alpha=st["alpha_min"], k=None, strategy=None,
        n_examples=n_examples, seed=seed, command=command, scores=scores, provenance=prov)
