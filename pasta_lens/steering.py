"""PASTA steering as TransformerLens hook functions on ``blocks.{L}.attn.hook_pattern``.

Mark a span of the prompt (:func:`pasta_lens.emphasize`), choose heads, and PASTA (Zhang et al., ICLR 2024)
rescales those heads' attention so every query row spends more of it on the span:

    A'[q, k] = A[q, k] * w[k] / sum_j A[q, j] * w[j],   w[k] = alpha on prompt keys outside the span, else 1

(:mod:`pasta_lens.kernels` has the arithmetic and its properties). What is steered and how strongly is decided
once by :func:`pasta_lens.plan.resolve_plan` (heads, one alpha per head, schedule; a profile's own alphas and
recorded schedule apply unless given); this module turns that :class:`~pasta_lens.plan.SteeringPlan` into hooks.

Nothing here touches the model: :func:`pasta_hooks` returns ``(hook_name, hook_fn)`` pairs for
``model.run_with_hooks`` / ``model.hooks``, and :func:`steer` is a thin context manager over ``model.hooks``,
which removes exactly the hooks it added (the user's own hooks stay) even when the body raises. With an
:class:`~pasta_lens.spans.Emphasis`, :func:`steer` also checks that every forward pass runs on its tokens.

Example:
    >>> em = emphasize(model, "Maria is a nurse. *Answer in JSON.*", chat=True)
    >>> logits = model.run_with_hooks(em.tokens, fwd_hooks=pasta_hooks({20: [0, 3]}, em))
    >>> with steer(model, load_profile("smollm2-135m-instruct"), em):   # its own alphas and schedule
    ...     out = model.generate(em.tokens, max_new_tokens=40, do_sample=False, prepend_bos=False)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from jaxtyping import Bool
from torch import Tensor

from pasta_lens.hook_check import require_hook_points
from pasta_lens.kernels import (
    HookFn,
    key_mask_of,
    pattern_hook_name,
    pattern_layer_hook,
    scores_hook_name,
    scores_layer_hook,
)
from pasta_lens.plan import (
    AlphaSpec,
    HeadSpec,
    ScalePosition,
    ScheduleSpec,
    SteeringPlan,
    Where,
    plan_from_spec,
    resolve_plan,
)
from pasta_lens.spans import Emphasis

EmphasisSpec = Emphasis | Bool[Tensor, "batch pos"]
"""An :class:`~pasta_lens.spans.Emphasis`, or a bool key mask ``[batch, pos]`` (True = emphasised)."""


def plan_hooks(plan: SteeringPlan, emphasis: EmphasisSpec) -> list[tuple[str, HookFn]]:
    """The forward hooks that carry out ``plan`` for ``emphasis``: one per steered layer, sorted by layer.

    On ``blocks.{L}.attn.hook_pattern`` (``plan.where == "pattern"``) or ``hook_attn_scores`` (``"scores"``).
    The plan is taken as is (already resolved and checked); :func:`pasta_hooks` is the front door.
    """
    key_mask = key_mask_of(emphasis)
    if plan.where == "scores":
        return [
            (scores_hook_name(layer), scores_layer_hook(layer, hs, alphas, key_mask, plan.scale_position))
            for layer, hs, alphas in plan.layers()
        ]
    return [
        (pattern_hook_name(layer), pattern_layer_hook(layer, hs, alphas, key_mask, plan.scale_position, plan.schedule))
        for layer, hs, alphas in plan.layers()
    ]


def pasta_hooks(
    heads: HeadSpec,
    emphasis: EmphasisSpec,
    alpha: AlphaSpec | None = None,
    scale_position: ScalePosition = "exclude",
    *,
    model: Any = None,
    allow_transfer: bool = False,
    schedule: ScheduleSpec = None,
    where: Where = "pattern",
) -> list[tuple[str, HookFn]]:
    """TransformerLens forward hooks that apply PASTA to ``heads``, one hook per steered layer.

    Args:
        heads: ``{layer: [heads]}``, ``[(layer, head), ...]``, a ``HeadProfile`` or a
            :class:`~pasta_lens.plan.SteeringPlan` (then ``alpha`` and ``schedule`` must not be given).
        emphasis: an :class:`~pasta_lens.spans.Emphasis` or a bool key mask ``[batch, pos]`` over the prompt
            (True = emphasised). One row broadcasts over any batch.
        alpha: the factor on non-emphasised prompt keys, in [``ALPHA_MIN``, 1]; or a per-head mapping. None
            (default): a profile's per-head alphas, else its ``alpha``, else 0.01 (:mod:`pasta_lens.plan`).
        scale_position: ``"exclude"`` (default, the paper's: scale keys outside the span) or ``"include"``
            (scale the span's keys: suppress it).
        model: the model the hooks are for; the heads are checked against it
            (:func:`~pasta_lens.plan.resolve_plan`). A ``HeadProfile`` *requires* it: a profile made on another
            model must not be used silently (or call ``steer(model, profile, em)``, or pass ``profile.heads`` to
            skip the check on purpose).
        allow_transfer: with ``model=``, accept a profile made on other weights of the same shape.
        schedule: which query rows are steered and how strongly (:class:`~pasta_lens.schedule.Schedule`):
            ``"all"`` (the paper's), ``"prompt"`` (the prefill only), ``"first:N"`` (the prompt and the
            first N generated tokens' rows), ``"decay:G"`` (generated token t's row uses alpha ** (G ** t)).
            Unsteered rows are bit-identical to the unsteered run. None (default): a profile's recorded
            schedule (``provenance["schedule"]``), anything else ``"all"``.
        where: ``"pattern"`` (default) rescales and renormalises ``hook_pattern``; ``"scores"`` adds
            ``log(alpha)`` to the same keys on ``hook_attn_scores``, and the model's own softmax renormalises:
            the same steering (to float rounding); schedules other than ``"all"`` are for ``"pattern"`` only.

    The mask is aligned with key positions: key ``j`` of the pattern is position ``j`` of ``emphasis.tokens``.
    Run the model on exactly those tokens or a continuation of them (teacher-forced answer tokens, generated
    tokens), whose keys keep weight 1. A pattern with fewer keys than the mask is an error; that the run's tokens
    really start with ``emphasis.tokens`` cannot be seen from the pattern: :func:`steer` checks it. With a KV cache
    each hook follows its layer's positions from the prefill on (:class:`pasta_lens.kernels.KeyPositions`), so a
    sliding-window layer's cached keys (Gemma 2/3) are steered at their true positions: add the hooks before the
    prefill and use them for one sequence at a time (a new prefill or uncached forward starts the count over).

    Returns:
        ``[(f"blocks.{L}.attn.hook_pattern", hook_fn), ...]`` (or ``hook_attn_scores``), sorted by layer.

    Raises:
        ValueError: bad heads, alpha or mask; a ``HeadProfile`` without ``model=``; a profile for another model.

    Example:
        >>> em = emphasize(model, "Maria is a nurse. *Answer in JSON.*", chat=True)
        >>> logits = model.run_with_hooks(em.tokens, fwd_hooks=pasta_hooks({20: [0, 3]}, em))
        >>> hooks = pasta_hooks(load_profile("smollm2-135m-instruct"), em, model=model)  # checked first
    """
    if model is not None:
        plan = resolve_plan(model, heads, alpha, schedule, scale_position, where, allow_transfer=allow_transfer)
        require_hook_points(model, [layer for layer, _, _ in plan.layers()], plan.where)
    else:
        plan = plan_from_spec(heads, alpha, schedule, scale_position, where)
    return plan_hooks(plan, emphasis)


def scores_hooks(
    heads: HeadSpec,
    emphasis: EmphasisSpec,
    alpha: AlphaSpec | None = None,
    scale_position: ScalePosition = "exclude",
) -> list[tuple[str, HookFn]]:
    """PASTA as an additive ``log(alpha)`` on ``blocks.{L}.attn.hook_attn_scores``: ``where="scores"``.

    The official code's form: the steered heads' pre-softmax scores of the scaled prompt keys get ``log(alpha)``
    and the model's softmax renormalises. Same arguments and checks as :func:`pasta_hooks`; the result equals
    the ``hook_pattern`` variant to float rounding. The difference is cost: the pattern edit gathers the steered
    heads, rescales, sums and divides every row; the additive edit is one broadcast addition over the layer's
    scores, which counts for long prompts. With this variant every hook on (and cache of) ``hook_pattern`` shows
    the steered pattern.

    Example:
        >>> logits = model.run_with_hooks(em.tokens, fwd_hooks=scores_hooks({20: [0, 3]}, em))
    """
    return pasta_hooks(heads, emphasis, alpha, scale_position, where="scores")


TOKENS_HOOK = "embed.hook_in"
"""The bridge's hook on the embedding's input: it sees the token ids of every forward pass."""

EMBED_HOOK = "hook_embed"
"""HookedTransformer's hook on the token embeddings ``model.embed(tokens)`` (it has no hook on the ids)."""


def tokens_check_hook(emphasis: Emphasis, embed: Callable[[Tensor], Tensor] | None = None) -> HookFn:
    """A hook that refuses a run whose tokens do not start with ``emphasis.tokens``.

    The key mask is aligned with ``emphasis.tokens``; a run on other tokens (a BOS added or dropped, another
    prompt) would steer the wrong keys without any shape error. On the bridge the hook sees the token ids
    (``embed.hook_in``); on a ``HookedTransformer`` it sees their embeddings (``hook_embed``) and compares them
    with ``embed(emphasis.tokens)``, the same module on the expected ids (bit-identical when the ids agree).
    Decode steps with a KV cache (fewer tokens than the prompt) are not checked: their prefix was checked at
    prefill.
    """

    def hook(act: Tensor, hook: Any) -> Tensor:
        n_prompt = emphasis.tokens.shape[1]
        if act.ndim < 2 or act.shape[1] < n_prompt:
            return act
        expected = emphasis.tokens.to(act.device)
        if expected.shape[0] not in (1, act.shape[0]):
            return act  # the per-layer hooks report the batch mismatch
        if embed is None:
            if act.ndim != 2 or act.dtype not in (torch.long, torch.int32, torch.int64):
                return act  # embeddings passed in directly: nothing to compare
        else:
            with torch.no_grad():
                expected = embed(expected)
        if not torch.equal(act[:, :n_prompt], expected.expand(act.shape[0], *expected.shape[1:])):
            raise ValueError(
                f"The steered run's tokens ({tuple(act.shape[:2])}) do not start with the "
                f"emphasis' {n_prompt} tokens, so the key mask would mark the wrong positions: run "
                "the model on emphasis.tokens (or a continuation of them), with the same BOS "
                "(emphasis.prepend_bos) and padding."
            )
        return act

    return hook


def tokens_check(model: Any, emphasis: Any) -> list[tuple[str, HookFn]]:
    """The token check for ``model``'s kind of hook points (none for a bare key mask or an unknown model)."""
    if not isinstance(emphasis, Emphasis):
        return []
    points = getattr(model, "hook_dict", {})
    if TOKENS_HOOK in points:
        return [(TOKENS_HOOK, tokens_check_hook(emphasis))]
    if EMBED_HOOK in points and callable(getattr(model, "embed", None)):
        return [(EMBED_HOOK, tokens_check_hook(emphasis, model.embed))]
    return []


@contextmanager
def steer(
    model: Any,
    heads: HeadSpec,
    emphasis: EmphasisSpec,
    alpha: AlphaSpec | None = None,
    scale_position: ScalePosition = "exclude",
    *,
    allow_transfer: bool = False,
    schedule: ScheduleSpec = None,
    where: Where = "pattern",
    method: str = "pasta",
    method_params: Mapping[str, Any] | None = None,
) -> Iterator[Any]:
    """Steer ``model`` inside a ``with`` block; a thin wrapper over ``model.hooks(fwd_hooks=...)``.

    The request is resolved once against ``model`` (:func:`~pasta_lens.plan.resolve_plan`: a ``HeadProfile`` is
    checked against the model's shape and weights, unless ``allow_transfer=True``, and steered at its own alphas
    and recorded schedule unless ``alpha=`` / ``schedule=`` are given; a
    :class:`~pasta_lens.plan.SteeringPlan` is steered as it is) before any hook is added. With an
    :class:`~pasta_lens.spans.Emphasis`, every forward pass is also checked to run on its tokens (or a
    continuation of them), through ``embed.hook_in`` (bridge) or ``hook_embed`` (HookedTransformer); a bare key
    mask is trusted to match. A model without the hook point of a steered layer is refused with the fix
    (:func:`pasta_lens.hook_check.require_hook_points`; whether edits there take effect is checked by
    :func:`pasta_lens.hook_check.check_steerable`, which :func:`pasta_lens.load_model` runs). On exit, normal or
    by exception, exactly the hooks added here are removed.
    Arguments as in :func:`pasta_hooks`.

    ``method`` picks another steering method of :mod:`pasta_lens.methods` by name or spec string
    (``"instaboost"``, ``"guide:delta=2"``, ...; ``heads`` may then be ``"all"``), with its parameters in
    ``method_params``; ``alpha``, ``scale_position`` and ``where`` are PASTA's. SPA (``method="spa"``) runs the
    prompt and its anchor-free copy as one doubled batch: inside the block, call
    ``model(pasta_lens.methods.spa_batch(tokens))`` and read the first half (or use :func:`pasta_lens.generate` /
    :func:`pasta_lens.methods.run`, which do it).

    Example:
        >>> with steer(model, {20: [0, 3]}, em):
        ...     out = model.generate(em.tokens, max_new_tokens=40, do_sample=False, prepend_bos=False)
        >>> with steer(model, "all", em, method="instaboost", method_params={"factor": 5}):
        ...     logits = model(em.tokens)
    """
    if method != "pasta" or method_params or isinstance(heads, str):
        from pasta_lens.methods.registry import steering_hooks  # the methods build on this module

        _, method_hooks = steering_hooks(
            model,
            heads,
            emphasis,
            method,
            method_params,
            schedule=schedule,
            allow_transfer=allow_transfer,
            alpha=alpha,
            scale_position=scale_position,
            where=where,
        )
        with model.hooks(fwd_hooks=tokens_check(model, emphasis) + method_hooks):
            yield model
        return
    plan = resolve_plan(model, heads, alpha, schedule, scale_position, where, allow_transfer=allow_transfer)
    require_hook_points(model, [layer for layer, _, _ in plan.layers()], plan.where)
    hooks = tokens_check(model, emphasis) + plan_hooks(plan, emphasis)
    with model.hooks(fwd_hooks=hooks):
        yield model
