"""How one batch of queries becomes outputs: greedy generation on the chosen engine, candidate log-probs.

* ``generate`` queries: greedy, KV-cached generation of a left-padded batch (:func:`generate_texts`) on the
  engine chosen once per evaluation (:class:`Engine`): ``"hf"`` runs HF's own loop on a twin of the bridge's
  weights with PASTA as an additive mask bias (:mod:`pasta_lens.hf_engine`), ``"hooks"`` TransformerLens' loop
  with the steering hooks (:func:`pasta_lens.generation.generate_tokens`); the two give the same tokens where the
  twin is allowed (:func:`pasta_lens.generation.select_engine` says where).
* ``choice`` queries: the log-probability of each candidate continuation under teacher forcing, one forward pass
  on the model itself (:func:`candidate_token_logprobs`), per token: the candidate's ``i``-th token is scored at
  position ``n - 1 + i`` of ``prompt + candidate`` (``n`` prompt tokens),

      lp_i = log softmax(logits[n - 1 + i])[candidate_i],

  from which the tasks take what their metric needs: the first token (``lp_0``, the PASTA paper's CounterFact
  ES/PS), the sum (the whole string, BiasBios) or the mean (ROME's CounterFact scores).

Every steered call takes a :class:`~pasta_lens.plan.SteeringPlan` (or, for convenience, the same head spec,
alpha and schedule arguments as :func:`pasta_lens.steer`); nothing here chooses an alpha or a schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from pasta_lens.evaluation.specs import Method, steering_registry
from pasta_lens.generation import Engine as EngineName
from pasta_lens.generation import decode_new, generate_new_tokens, generate_tokens, select_engine
from pasta_lens.hf_engine import hf_generate_tokens
from pasta_lens.plan import AlphaSpec, HeadSpec, ScheduleSpec, SteeringPlan, plan_from_spec
from pasta_lens.spans import Emphasis
from pasta_lens.steering import steer
from pasta_lens.tasks.base import Rendered, answer_ids, emphasis_of

FORWARD = "forward"
"""The engine name of rows that generated nothing (choice queries only: one teacher-forced forward pass)."""


@dataclass(frozen=True)
class Engine:
    """The generation loop of one evaluation, chosen once (:func:`choose_engine`).

    Attributes:
        name: ``"hf"`` (HF's loop on the twin) or ``"hooks"`` (TransformerLens' loop with hooks).
        reason: why the hooks path runs (empty for ``"hf"``).
        twin: the HF twin for ``"hf"`` (:func:`pasta_lens.hf_engine.hf_twin`), else None.
    """

    name: str
    reason: str = ""
    twin: Any = None

    def __post_init__(self) -> None:
        if self.name not in ("hf", "hooks"):
            raise ValueError(f"Engine.name must be 'hf' or 'hooks'; got {self.name!r}.")
        if (self.twin is not None) != (self.name == "hf"):
            raise ValueError("Engine: a twin goes with name 'hf' and only with it.")


def choose_engine(model: Any, engine: EngineName = "auto") -> Engine:
    """The engine :func:`pasta_lens.generate` would pick (``"auto"``), or the one asked for (``"hf"``, ``"hooks"``).

    Raises:
        ValueError: ``engine="hf"`` where the twin cannot give the hooked model's result (the reason is named).
    """
    name, twin, why = select_engine(model, engine)
    return Engine(name, why, twin)


def method_engine(method: Method, engine: Engine) -> str:
    """The loop a method's generations run on: the evaluation's engine for PASTA and the unsteered methods,
    ``"hooks"`` for a registered steering method (it acts through hooks the twin does not run)."""
    return engine.name if method.steering == "pasta" else "hooks"


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


@contextmanager
def steering_context(
    model: Any, method: Method, plan: SteeringPlan | None, emphasis: Emphasis | Any
) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """The hooks that steer ``model`` as ``method`` does while the body runs (nothing for an unsteered method).

    PASTA: :func:`pasta_lens.steer` with the plan. A registered steering method (:mod:`pasta_lens.methods`):
    its ``hooks(name, model, emphasis, heads=..., **params)``, on the plan's heads (``"all"`` for every head).

    Yields the batch the body must run the model on: ``widen(tokens)`` (and ``widen(attention_mask)``) is the input
    itself, or for a two-pass method (SPA: the prompt and its anchor-free copy) the input stacked on itself, of
    whose outputs the body keeps the first ``len(tokens)`` rows (the registry's ``batch_for``).
    """
    if plan is None:
        yield _same
        return
    if method.steering == "pasta":
        with steer(model, plan, emphasis):
            yield _same
        return
    registry = steering_registry()
    if registry is None:
        raise ValueError(f"Method {method.name!r} needs pasta_lens.methods, which is not installed.")
    heads = "all" if method.heads == "all" else list(plan.heads)
    hooks = registry.hooks(method.steering, model, emphasis, heads=heads, **dict(method.params))
    with model.hooks(fwd_hooks=hooks):
        yield (lambda x: registry.batch_for(method.steering, x)) if hooks else _same


def _as_plan(
    heads: HeadSpec | SteeringPlan | None, alpha: AlphaSpec | None, schedule: ScheduleSpec
) -> SteeringPlan | None:
    if heads is None:  # unsteered: alpha and schedule have nothing to act on
        return None
    return plan_from_spec(heads, alpha, schedule)


def candidate_token_logprobs(
    model: Any,
    rendered: Rendered,
    candidates: Sequence[str],
    heads: HeadSpec | SteeringPlan | None = None,
    alpha: AlphaSpec | None = None,
    schedule: ScheduleSpec = None,
    *,
    method: Method | None = None,
) -> list[list[float]]:
    """Teacher-forced log-probability of each token of each candidate continuation of one prompt.

    One forward pass over a small batch: a row per distinct multi-token prefix ``prompt + candidate[:-1]``
    (right-padded: causal attention never sees the padding); single-token candidates are read at the prompt's
    last position of any row. The emphasis covers the prompt only; the plan's schedule treats the candidate's
    tokens as generated ones (``"prompt"`` leaves their rows unsteered, as in generation).

    Args:
        model: a TransformerLens model.
        rendered: the rendered prompt (:meth:`pasta_lens.tasks.Task.render`).
        candidates: continuations, each with its leading space (``" nurse"``).
        heads, alpha, schedule: what to steer: a :class:`~pasta_lens.plan.SteeringPlan` (alpha and schedule
            then None), or a head set with the arguments of :func:`pasta_lens.steer`; None: unsteered.
        method: the method (for a registered steering method other than PASTA); default PASTA.

    Returns:
        ``[[lp_0, lp_1, ...] per candidate]`` (natural log, fp32 softmax).

    Example:
        >>> r = get_task("counterfact").render(model, markup)
        >>> candidate_token_logprobs(model, r, [" English", " French"])  # [[-2.3], [-0.7]]
    """
    plan = _as_plan(heads, alpha, schedule)
    em = emphasis_of(model, [rendered])
    prompt = em.tokens[0].tolist()
    n = len(prompt)
    ids = [answer_ids(model, c).tolist() for c in candidates]
    prefixes = sorted({tuple(i[:-1]) for i in ids if len(i) > 1}) or [()]
    row_of = {p: r for r, p in enumerate(prefixes)}
    width = n + max(len(p) for p in prefixes)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    tokens = torch.full((len(prefixes), width), pad, dtype=torch.long)
    for r, p in enumerate(prefixes):
        tokens[r, : n + len(p)] = torch.tensor(prompt + list(p), dtype=torch.long)
    tokens = tokens.to(em.tokens.device)
    steering = method or Method("pasta", heads="profile")
    with torch.inference_mode(), steering_context(model, steering, plan, em.key_mask) as widen:
        logits = model(widen(tokens))[: len(prefixes)]
    logp = torch.log_softmax(logits[:, n - 1 :].float(), dim=-1)
    return [[float(logp[row_of[tuple(c[:-1])] if len(c) > 1 else 0, i, t]) for i, t in enumerate(c)] for c in ids]


def candidate_logprobs(
    model: Any,
    rendered: Rendered,
    candidates: Sequence[str],
    reduce: str = "sum",
    heads: HeadSpec | SteeringPlan | None = None,
    alpha: AlphaSpec | None = None,
    schedule: ScheduleSpec = None,
) -> list[float]:
    """One number per candidate: the sum (``reduce="sum"``, the whole string's log-probability) or the mean
    (``"mean"``, ROME's per-token score) of :func:`candidate_token_logprobs`.

    Example:
        >>> candidate_logprobs(model, r, [" nurse", " software engineer"], heads=[(20, 0)])
    """
    return [
        reduce_logprobs(lps, reduce)
        for lps in candidate_token_logprobs(model, rendered, candidates, heads, alpha, schedule)
    ]


def reduce_logprobs(token_logprobs: Sequence[float], reduce: str) -> float:
    """``"sum"``, ``"mean"`` or ``"first"`` of one candidate's per-token log-probs.

    Example:
        >>> reduce_logprobs([-1.0, -3.0], "mean")
        -2.0
    """
    if reduce == "sum":
        return float(sum(token_logprobs))
    if reduce == "mean":
        return float(sum(token_logprobs)) / len(token_logprobs)
    if reduce == "first":
        return float(token_logprobs[0])
    raise ValueError(f"reduce must be 'sum', 'mean' or 'first'; got {reduce!r}.")


def generate_texts(
    model: Any,
    rendered: Sequence[Rendered],
    method: Method,
    plan: SteeringPlan | None,
    max_new_tokens: int,
    engine: Engine,
) -> list[str]:
    """Greedy continuations of a batch of rendered prompts (left-padded, KV cache), steered as ``method`` with
    ``plan``, on ``engine`` (:func:`method_engine`)."""
    em = emphasis_of(model, rendered)
    if method_engine(method, engine) == "hf":
        new = hf_generate_tokens(model, em, plan, max_new_tokens=max_new_tokens, twin=engine.twin)
        return decode_new(model, new)
    with steering_context(model, method, plan, em) as widen:
        if widen is _same:
            new = generate_tokens(model, em, max_new_tokens)
        else:  # a registered method's hooks: the batch it runs on (SPA's doubled one), the first rows kept
            new = generate_new_tokens(model, widen(em.tokens), widen(em.attention_mask), max_new_tokens)
            new = new[: em.tokens.shape[0]]
    return decode_new(model, new)
