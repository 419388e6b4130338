"""The loss of learned strengths, term by term: each term a small function, its weight a :class:`LearnedConfig` field.

For one training example ``e`` (prompt + teacher-forced answer of ``n_answer`` tokens) the learner minimises

    loss_e = - min( value_e(steered), value_e(unsteered) + gain_cap )          (task term; no cap: value_e(steered))
             + sum_p  weight_p * penalty_p(e; steered, unsteered)             (PENALTIES: the fluency KL)

    value_e(logits) = f_e(logits) / n_answer  +  sum_t  weight_t * term_t(e; logits)      (TASK_TERMS)

and per step adds ``sparsity * sum_h sigmoid(g_h)`` (:func:`sparsity_penalty`), for examples of tasks that are
protected rather than trained, ``protect_weight * KL(steered || reference)`` on their answer positions
(:func:`protect_loss`), and for context-QA content examples ``content_weight * KL(unsteered || steered)`` on their
document-dependent answer positions (:func:`content_loss`). ``f_e`` is the example's objective (log-prob of the
gold answer; CounterFact: log P(new) - log P(old)); dividing by ``n_answer`` lets a task of long answers (JSON)
weigh as much as one of one-token answers.

The terms, each with its weight (formulas at each function):

- the objective ``f_e / n_answer`` (weight 1): the gold answer, per token;
- :func:`close_logprob` (``close_weight``): the answer's closing token (``ex.close``) at full weight;
- :func:`early_close` (``early_weight``): no close before the end of the answer;
- :func:`focus_logprob` (``focus_weight``): the content tokens (``ex.focus``, e.g. the occupation);
- :func:`prompt_kl` (``kl_weight``): fluency, KL(steered || unsteered) on the prompt positions;
- :func:`protect_loss` (``protect_weight``): another task's answers kept as a reference model has them;
- :func:`content_loss` (``content_weight``): the document still read, ``mean_{i in focus} KL(p_u(.|i) || p_s(.|i))``
  over the answer tokens copied from the document, the teacher ``p_u`` the unsteered model (:func:`content_teacher`);
- :func:`sparsity_penalty` (``sparsity``): few heads, ``sum_h sigmoid(g_h)``.

**Adding a term** is one entry here plus its weight: write ``term(ex, logits) -> Tensor | None`` (a reward on one
run, None when the example lacks what it needs) and add a :class:`TaskTerm` to :data:`TASK_TERMS`, or write
``penalty(ex, steered, unsteered) -> Tensor`` (>= 0, differentiable in the steered logits) and add a
:class:`Penalty` to :data:`PENALTIES`; then add the weight field to :class:`LearnedConfig` with default 0 and
``metadata={"record": "when_set"}``. The training loop, the step history, the profile's ``method`` and
``provenance["learned"]`` pick it up from the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from pasta_lens.objectives import ProfilingExample
from pasta_lens.profiling.estimators import objective_values
from pasta_lens.profiling.learned.config import LearnedConfig
from pasta_lens.profiling.learned.strengths import learned_hooks
from pasta_lens.profiling.learned.targets import reference_hooks

Logits = Float[Tensor, "1 pos vocab"]


def run(model: Any, ex: ProfilingExample, hooks: list) -> Logits:
    """The model's logits on ``ex`` (with its attention mask) under ``hooks``."""
    tokens = ex.tokens.to(model.cfg.device)
    kwargs = {} if ex.attention_mask is None else {"attention_mask": ex.attention_mask.to(tokens.device)}
    with model.hooks(fwd_hooks=hooks):
        return model(tokens, **kwargs)


def mean_kl(steered: Logits, reference: Logits, start: int, stop: int) -> Float[Tensor, ""]:
    """``mean_{i = start .. stop-1} KL(p_steered(. | i) || p_reference(. | i))`` of the next-token distributions
    (0 when the range is empty). KL(steered || reference), not the reverse: mass the steered model puts where the
    reference puts none, i.e. invented text, costs most."""
    if stop <= start:
        return steered.new_zeros(())
    ls = torch.log_softmax(steered[0, start:stop].float(), dim=-1)
    lu = torch.log_softmax(reference[0, start:stop].float(), dim=-1)
    return (ls.exp() * (ls - lu)).sum(-1).mean()


# ------------------------------------------------------------------------------------------- task terms
def close_logprob(ex: ProfilingExample, logits: Logits) -> Tensor | None:
    """``log P(x_close | x_<close)``: the answer's closing token (``ex.close``) at the position that predicts it.

    Averaged over the answer, the one token where it must stop weighs ``1 / n_answer``; this term gives it full
    weight. None without a closing token (plain-text tasks)."""
    if ex.close is None:
        return None
    return torch.log_softmax(logits[0, ex.close - 1].float(), dim=-1)[ex.tokens[0, ex.close]]


def early_close(ex: ProfilingExample, logits: Logits) -> Tensor | None:
    """``sum_{n_prompt <= i < close, x_i != c} log(1 - P(c | x_<i))`` with ``c`` the closing token: high when the
    answer does not close before its end. None without a closing token."""
    if ex.close is None:
        return None
    logp = torch.log_softmax(logits[0, ex.n_prompt - 1 : ex.close - 1].float(), dim=-1)
    close_token = ex.tokens[0, ex.close]
    gold = ex.tokens[0, ex.n_prompt : ex.close].to(logp.device)
    p_close = logp[:, close_token].exp()
    return torch.log1p(-p_close.clamp(max=1 - 1e-6))[gold != close_token].sum()


def focus_logprob(ex: ProfilingExample, logits: Logits) -> Tensor | None:
    """``mean_{i in focus} log P(x_i | x_<i)``: the few tokens that carry the answer's content (``ex.focus``; the
    biography instruction tasks mark the occupation), which the many format tokens would outweigh. None without."""
    if ex.focus is None:
        return None
    at = torch.tensor(ex.focus, device=logits.device)
    logp = torch.log_softmax(logits[0, at - 1].float(), dim=-1)
    return logp.gather(-1, ex.tokens[0].to(logits.device)[at][:, None]).mean()


@dataclass(frozen=True)
class TaskTerm:
    """A reward added to an example's task value: ``weight * value(ex, logits)``, on the steered and the unsteered
    run alike (the reported gain is of the sum).

    Attributes:
        weight: the :class:`LearnedConfig` field holding its weight (0: the term is off).
        value: ``(example, logits) -> scalar tensor``, or None when the example lacks what it needs.
        needs: what the training examples must have when the weight is set (an error names it otherwise).
        applies: whether an example has it.
        label: the term in the profile's ``method`` (``"closing token weight 0.5"``).
        formula: the term in ``provenance["learned"]["task_term"]``.
    """

    weight: str
    value: Callable[[ProfilingExample, Logits], Tensor | None]
    needs: str
    applies: Callable[[ProfilingExample], bool]
    label: str
    formula: str


TASK_TERMS: tuple[TaskTerm, ...] = (
    TaskTerm(
        "close_weight",
        close_logprob,
        "examples with a closing token: build a chat task's examples with end_turn=True (CLI: --end-turn)",
        lambda ex: ex.close is not None,
        "closing token weight",
        "close_weight * log P(the answer's closing token) for chat targets that end the turn",
    ),
    TaskTerm(
        "early_weight",
        early_close,
        "examples with a closing token: build a chat task's examples with end_turn=True (CLI: --end-turn)",
        lambda ex: ex.close is not None,
        "early-close weight",
        "early_weight * sum log(1 - P(closing token)) at the answer's earlier positions",
    ),
    TaskTerm(
        "focus_weight",
        focus_logprob,
        "examples with focus tokens (the json and pronoun tasks mark the occupation); train on such a task",
        lambda ex: ex.focus is not None,
        "focus token weight",
        "focus_weight * mean log P(focus tokens: the occupation in the gold answer)",
    ),
)
"""The rewards added to the per-token objective, in this order (the order of the floating-point sum)."""


def task_value(ex: ProfilingExample, logits: Logits, config: LearnedConfig) -> Float[Tensor, ""]:
    """``f(logits) / n_answer + sum_t weight_t * term_t``: the example's task value (higher is better)."""
    n_answer = max(1, int(ex.tokens.shape[1]) - ex.n_prompt)
    value = objective_values(ex, logits)[0] / n_answer
    for term in TASK_TERMS:
        weight = getattr(config, term.weight)
        if weight:
            part = term.value(ex, logits)
            if part is not None:
                value = value + weight * part
    return value


# -------------------------------------------------------------------------------------------- penalties
def prompt_kl(ex: ProfilingExample, steered: Logits, unsteered: Logits) -> Float[Tensor, ""]:
    """Fluency: ``mean_{i = 0 .. n_prompt-2} KL(steered || unsteered)``, the prompt positions whose next token is
    still prompt text (position ``n_prompt - 1`` predicts the answer: the task term's). Strengths that reach the
    answer by wrecking the distribution everywhere else pay for it."""
    return mean_kl(steered, unsteered, 0, ex.n_prompt - 1)


@dataclass(frozen=True)
class Penalty:
    """A divergence added to an example's loss: ``weight * value(ex, steered, unsteered)``; computed and recorded
    in the step history (under ``name``) at every weight, 0 included.

    Attributes:
        name: its key in the step history and in :meth:`LearnedAlphas.losses`.
        weight: the :class:`LearnedConfig` field holding its weight.
        value: ``(example, steered logits, unsteered logits) -> scalar tensor >= 0``.
        title: its key in ``provenance["learned"]`` (``"{title}_term"``).
        formula: the text recorded there.
    """

    name: str
    weight: str
    value: Callable[[ProfilingExample, Logits, Logits], Tensor]
    title: str
    formula: str


PENALTIES: tuple[Penalty, ...] = (
    Penalty(
        "kl",
        "kl_weight",
        prompt_kl,
        "fluency",
        "KL(steered || unsteered) of next-token distributions, mean over prompt positions 0..n_prompt-2",
    ),
)
"""The penalties on a trained example, in this order (the order of the floating-point sum)."""


# ------------------------------------------------------------------------------------------ per example
def example_loss(
    model: Any, ex: ProfilingExample, g: Float[Tensor, "layer head"], config: LearnedConfig
) -> tuple[Float[Tensor, ""], dict[str, float]]:
    """One training example's loss (differentiable in ``g``) and its parts, as in the module docstring.

    The steered run uses ``g`` on ``config.schedule``'s rows, with ``config.base`` at its fixed alphas; gains and
    penalties are against the unsteered model, recomputed here (no gradient), never stored. The parts are
    ``task`` (the steered value), ``task_gain`` (minus the unsteered value), ``term`` (after the cap) and each
    penalty by name (``kl``).

    Example:
        >>> loss, parts = example_loss(model, ex, g.requires_grad_(), LearnedConfig(schedule="prompt"))
        >>> (dg,) = torch.autograd.grad(loss, [g])
    """
    with torch.no_grad():
        plain_logits = run(model, ex, [])
        plain = float(task_value(ex, plain_logits, config))
    with torch.enable_grad():
        logits = run(model, ex, learned_hooks(g, config.alpha_min, ex.key_mask, config.schedule, config.base))
        task = task_value(ex, logits, config)
        cap = config.gain_cap
        term = task if cap is None else torch.clamp(task, max=plain + cap)  # capped: no gradient beyond
        loss = -term
        penalties = {}
        for penalty in PENALTIES:
            penalties[penalty.name] = penalty.value(ex, logits, plain_logits)
            loss = loss + getattr(config, penalty.weight) * penalties[penalty.name]
    value = float(task.detach())
    return loss, {
        "task": value,
        "task_gain": value - plain,
        "term": float(term.detach()),
        **{name: float(part.detach()) for name, part in penalties.items()},
    }


def protect_loss(
    model: Any,
    ex: ProfilingExample,
    g: Float[Tensor, "layer head"],
    config: LearnedConfig,
    reference: str = "unsteered",
) -> Float[Tensor, ""]:
    """``mean_{i = n_prompt-1 .. pos-2} KL(steered || reference)``: the positions that predict ``ex``'s target
    tokens (differentiable in ``g``). Keeps a task's answer (e.g. the model's own greedy start,
    :func:`~pasta_lens.profiling.own_continuations`) unchanged by the steering.

    ``reference``: ``"unsteered"`` (the model without hooks) or ``"base"`` (the ``config.base`` heads alone, on the
    same rows; every learned head at alpha 1): then only what the learned strengths add on top of the base costs.

    Example:
        >>> protect_loss(model, pronoun_ex, g, LearnedConfig(schedule="prompt"))      # 0 when g steers nothing
    """
    hooks = reference_hooks(
        (g.shape[0], g.shape[1]), config.alpha_min, ex.key_mask, config.schedule, config.base, reference
    )
    with torch.no_grad():
        plain = run(model, ex, hooks)
    with torch.enable_grad():
        steered = run(model, ex, learned_hooks(g, config.alpha_min, ex.key_mask, config.schedule, config.base))
        return mean_kl(steered, plain, ex.n_prompt - 1, int(steered.shape[1]) - 1)


def content_teacher(model: Any, ex: ProfilingExample) -> Float[Tensor, "focus vocab"]:
    """The unsteered model's next-token log-probs at the positions that predict ``ex.focus`` (the content term's
    teacher; no gradient). Computed once per content example and kept by the training loop.

    Example:
        >>> teacher = content_teacher(model, content[0])          # [len(content[0].focus), d_vocab]
    """
    if not ex.focus:
        raise ValueError("A content example needs focus positions (the answer tokens copied from its document).")
    with torch.no_grad():
        logits = run(model, ex, [])
        at = torch.tensor(ex.focus, device=logits.device) - 1
        return torch.log_softmax(logits[0, at].float(), dim=-1)


def content_loss(
    model: Any,
    ex: ProfilingExample,
    g: Float[Tensor, "layer head"],
    config: LearnedConfig,
    teacher: Float[Tensor, "focus vocab"],
) -> Float[Tensor, ""]:
    """``mean_{i in focus} KL(p_unsteered(. | x_<i) || p_steered(. | x_<i))``: at the answer tokens copied from the
    document (``ex.focus``, :func:`~pasta_lens.profiling.learned.content_targets`), the steered model must predict
    what the unsteered model does (``teacher``, :func:`content_teacher`). KL(unsteered || steered), not the
    reverse: the unsteered model's answer losing its mass (the document no longer read) costs most. Differentiable
    in ``g``; 0 when ``g`` steers nothing.

    Example:
        >>> content_loss(model, ex, g, LearnedConfig(content_weight=1.0), content_teacher(model, ex))
    """
    if not ex.focus:
        raise ValueError("A content example needs focus positions (the answer tokens copied from its document).")
    with torch.enable_grad():
        steered = run(model, ex, learned_hooks(g, config.alpha_min, ex.key_mask, config.schedule, config.base))
        at = torch.tensor(ex.focus, device=steered.device) - 1
        log_s = torch.log_softmax(steered[0, at].float(), dim=-1)
        log_u = teacher.to(log_s.device)
        return (log_u.exp() * (log_u - log_s)).sum(-1).mean()


def sparsity_penalty(
    g: Float[Tensor, "layer head"], free: Bool[Tensor, "layer head"], weight: float
) -> Float[Tensor, ""]:
    """``weight * sum_{h free} sigmoid(g_h)``: each learned head's strength on a 0..1 scale (``log alpha_h /
    log alpha_min``), an L1 penalty; a head must raise the per-token objective by more than ``weight`` nats at full
    strength to be worth steering. Base heads (``free`` False) are not the learner's to pay for."""
    return weight * torch.sigmoid(g)[free].sum()
