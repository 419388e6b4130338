"""PASTA steering as TransformerLens hook functions on ``blocks.{L}.attn.hook_pattern``.

For a steered head with post-softmax attention ``A[q, k]`` and a key mask ``E`` (True = emphasised prompt
token), PASTA (Zhang et al., ICLR 2024, Eq. 2) rescales every query row:

    A'[q, k] = A[q, k] * w[k] / sum_j A[q, j] * w[j],   w[k] = alpha  if k is a prompt key outside E
                                                         w[k] = 1      otherwise (emphasised or generated keys)

which is exactly ``softmax(scores + log(w))``: the official implementation's additive ``log(alpha)`` on the
attention mask. With ``scale_position="include"`` the roles flip (``w = alpha`` on the emphasised keys), which
*suppresses* the span instead.

A schedule (:mod:`pasta_lens.schedule`, ``schedule="prompt"``, ``"first:4"``, ``"decay:0.5"``) decides per query
row whether and how strongly it is steered: the paper steers every row (``"all"``, the default), including the rows
of generated tokens.

Properties the tests pin down: alpha = 1 is a no-op; rows still sum to 1; heads that are not listed are
bit-identical to the unsteered run; padding keys (attention 0) stay 0; keys generated after the prompt are never
rescaled, so steering is identical with and without the KV cache; the arithmetic runs in fp32 and is cast back
to the pattern's dtype; for grouped-query attention the head index is the *query* head.

alpha must be at least ``ALPHA_MIN`` = 1e-30: below it the fp32 arithmetic underflows (see :data:`ALPHA_MIN`).
The key mask is aligned with key positions: key ``j`` is position ``j`` of the emphasised tokens; keys beyond the
mask are continuation tokens (generated or teacher-forced). :func:`resolve_heads` is the one check of a head set
(or a profile) against a model; :func:`steer` runs it, and checks that each forward pass runs on the emphasis'
tokens.

Cost: a hook that is the only one on its hook point, in a forward pass that builds no autograd graph (``torch.no_grad``,
``inference_mode``, generation) on an fp32 model, rescales the steered heads' slices in place; anywhere else (a
cache or another hook on the same point, gradients, bf16) it returns an edited copy, so a reference held by anyone
else never changes (:func:`may_edit_in_place`; both paths give the same numbers, bit for bit).

Nothing here touches the model: :func:`pasta_hooks` returns ``(hook_name, hook_fn)`` pairs for
``model.run_with_hooks`` / ``model.hooks``, and :func:`steer` is a thin context manager over ``model.hooks``,
which removes exactly the hooks it added (the user's own hooks stay) even when the body raises.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Literal, Optional, TypeVar, Union

import torch
from einops import rearrange
from jaxtyping import Bool, Float
from torch import Tensor

from pasta_lens.schedule import Schedule, query_positions, scheduled_weights
from pasta_lens.spans import Emphasis

Head = tuple[int, int]
"""A ``(layer, query_head)`` pair."""

HeadSpec = Union[Mapping[int, Iterable[int]], Iterable[Head], Any]
"""Heads to steer: ``{layer: [heads]}``, ``[(layer, head), ...]``, or an object with a ``heads`` attribute
holding such pairs (a :class:`pasta_lens.profile.HeadProfile`, which is also checked against the model:
see :func:`resolve_heads`)."""

AlphaSpec = Union[float, Mapping[Head, float]]
"""One alpha for every head, or a mapping ``(layer, head) -> alpha`` that covers every steered head."""

DEFAULT_ALPHA = 0.01
"""The paper's strength, used when no alpha is given and the heads carry none of their own."""

ScalePosition = Literal["exclude", "include"]
Where = Literal["pattern", "scores"]
"""Where the edit is made: ``"pattern"`` rescales ``hook_pattern`` (default); ``"scores"`` adds ``log(alpha)``
on ``hook_attn_scores`` before the softmax (same result, cheaper on long prompts)."""
HookFn = Callable[[Tensor, Any], Tensor]
T = TypeVar("T")


def pattern_hook_name(layer: int) -> str:
    """The TransformerLens hook point steered for ``layer``."""
    return f"blocks.{layer}.attn.hook_pattern"


def normalize_heads(heads: HeadSpec) -> tuple[Head, ...]:
    """Turn any accepted head specification into sorted, unique ``(layer, head)`` pairs.

    Raises:
        ValueError: the set is empty, or an entry is not a pair of non-negative integers.

    Example:
        >>> normalize_heads({21: [5], 20: [3, 0]})
        ((20, 0), (20, 3), (21, 5))
    """
    if hasattr(heads, "heads") and not isinstance(heads, Mapping):
        heads = heads.heads
    if isinstance(heads, Mapping):
        pairs = []
        for layer, hs in heads.items():
            if isinstance(hs, (str, bytes)) or not isinstance(hs, Iterable):
                raise ValueError(f"The heads of layer {layer!r} must be a list of head indices; got {hs!r}. "
                                 f"Use {{{layer!r}: [{hs!r}]}} for one head.")
            pairs += [(layer, head) for head in hs]
    elif isinstance(heads, (str, bytes)) or not isinstance(heads, Iterable):
        raise ValueError(f"Heads must be {{layer: [heads]}}, [(layer, head), ...] or a HeadProfile; got "
                         f"{type(heads).__name__} {heads!r:.80}.")
    else:
        pairs = list(heads)
    out = set()
    for pair in pairs:
        try:
            layer, head = pair
            layer, head = _as_index(layer), _as_index(head)
        except (TypeError, ValueError):
            raise ValueError(f"Each steered head must be a (layer, head) pair of non-negative integers; got "
                             f"{pair!r}. Use {{20: [0, 3]}} or [(20, 0), (20, 3)].") from None
        out.add((layer, head))
    if not out:
        raise ValueError("The head set is empty: name at least one (layer, head) to steer, "
                         "e.g. {20: [0, 3]}, or load a profile with load_profile(...).")
    return tuple(sorted(out))


def group_by_layer(pairs: Iterable[tuple[int, T]]) -> dict[int, list[T]]:
    """``{layer: [values]}`` from ``(layer, value)`` pairs: layers ascending, values in the order given.

    The shape every per-layer hook factory needs (one hook per layer, holding only its own heads).

    Example:
        >>> group_by_layer([(21, 5), (20, 0), (20, 3)])
        {20: [0, 3], 21: [5]}
    """
    grouped: dict[int, list[T]] = {}
    for layer, value in pairs:
        grouped.setdefault(layer, []).append(value)
    return dict(sorted(grouped.items()))


def _as_index(x: Any) -> int:
    if isinstance(x, bool) or int(x) != x or int(x) < 0:
        raise ValueError(x)
    return int(x)


def validate_heads(heads: tuple[Head, ...], n_layers: int, n_heads: int) -> None:
    """Raise ``ValueError`` naming the valid range if a head lies outside an ``n_layers x n_heads`` model."""
    for layer, head in heads:
        if layer >= n_layers or head >= n_heads:
            raise ValueError(f"Head ({layer}, {head}) is out of range for a model with {n_layers} layers and "
                             f"{n_heads} query heads: use layers 0..{n_layers - 1} and heads 0..{n_heads - 1}.")


def resolve_heads(model: Any, heads: HeadSpec, *, allow_transfer: bool = False) -> tuple[Head, ...]:
    """The one way a head set meets a model: normalise it and check it against ``model``.

    A profile (any object with ``validate_for``, i.e. a :class:`~pasta_lens.profile.HeadProfile`) is first
    checked with ``profile.validate_for(model, allow_transfer=allow_transfer)`` (shape always; weights unless
    ``allow_transfer=True``); then every head must lie inside ``model.cfg.n_layers x model.cfg.n_heads``.
    :func:`steer`, :func:`pasta_hooks` (with ``model=``) and :mod:`pasta_lens.analysis` call it before adding
    any hook.

    Returns:
        Sorted, unique ``(layer, head)`` pairs.

    Raises:
        ValueError: a malformed head set, a head out of range, or a profile made for another model.

    Example:
        >>> resolve_heads(model, load_profile("smollm2-135m-instruct"))   # raises on any other model
    """
    validate_for = getattr(heads, "validate_for", None)
    if callable(validate_for):
        validate_for(model, allow_transfer=allow_transfer)
    pairs = normalize_heads(heads)
    validate_heads(pairs, int(model.cfg.n_layers), int(model.cfg.n_heads))
    return pairs


ALPHA_MIN = 1e-30
"""The smallest alpha accepted.

The transform runs in fp32. A query row that sees no emphasised key (a row before the span) is rescaled as a
whole by alpha and renormalised from a sum of about alpha; below fp32's smallest normal number (1.2e-38) that sum
loses precision, and alpha = 1e-46 rounds to 0 so such rows become all zeros (they no longer sum to 1). At
1e-30 the normalising sum stays normal and the absolute error per entry is below 2**-149 / 1e-30 ~ 1e-15. Nothing
is lost by the floor: 1e-30 already weights the non-emphasised keys by exp(-69) relative to the span.
"""


def check_alpha(alpha: float, head: Union[Head, None] = None) -> float:
    """``alpha`` as a float, or ``ValueError`` unless ``ALPHA_MIN <= alpha <= 1``."""
    where = f" for head {head}" if head is not None else ""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number in (0, 1]; got {alpha!r}{where}.") from None
    if not (0.0 < a <= 1.0) or math.isnan(a):
        raise ValueError(f"alpha must be in (0, 1] (1 = no steering, smaller = stronger); got {a}{where}.")
    if a < ALPHA_MIN:
        raise ValueError(f"alpha {a:g}{where} is below the floor {ALPHA_MIN:g}: in fp32 the rescaled attention "
                         "underflows (rows that see no emphasised key would no longer sum to 1). Use alpha >= "
                         f"{ALPHA_MIN:g}; it already removes all but exp(-69) of the attention outside the span.")
    return a


def resolve_alpha(heads: HeadSpec, alpha: Optional[AlphaSpec] = None) -> AlphaSpec:
    """The alpha to steer ``heads`` with: an explicit ``alpha`` wins, else the heads' own, else 0.01.

    Precedence (the one rule :func:`pasta_hooks`, :func:`steer`, :func:`pasta_lens.generate` and the evaluation
    harness follow):

    1. ``alpha`` given (a float or a per-head mapping): used as given, also for a profile with learned alphas;
    2. ``alpha=None`` and ``heads`` is a profile with per-head alphas (``head_alphas``, e.g. made by
       ``pasta-lens profile --method learned``): that mapping;
    3. otherwise :data:`DEFAULT_ALPHA` (0.01), so ``steer(model, heads, em)`` behaves as it always did.

    Example:
        >>> resolve_alpha({20: [0]})                     # 0.01
        >>> resolve_alpha(learned_profile)               # {(20, 0): 0.03, ...}
        >>> resolve_alpha(learned_profile, alpha=0.1)    # 0.1
    """
    if alpha is not None:
        return alpha
    own = getattr(heads, "head_alphas", None) if not isinstance(heads, Mapping) else None
    if isinstance(own, Mapping) and own:
        return dict(own)
    return DEFAULT_ALPHA


def describe_alpha(alpha: AlphaSpec) -> str:
    """A short human-readable form of a resolved alpha: ``"0.01"``, or ``"per head, 0.01-0.43 (46 heads)"``."""
    if isinstance(alpha, Mapping):
        values = [float(a) for a in alpha.values()]
        return f"per head, {min(values):.3g}-{max(values):.3g} ({len(values)} heads)" if values else "per head"
    return f"{float(alpha):g}"


def resolve_schedule(heads: HeadSpec, schedule: Optional[ScheduleSpec] = None) -> Schedule:
    """The schedule to steer ``heads`` with: an explicit ``schedule`` wins, else the profile's own, else "all".

    The same precedence as :func:`resolve_alpha` (followed by :func:`pasta_hooks`, :func:`steer`,
    :func:`pasta_lens.generate`, the ``steer`` CLI and the evaluation harness):

    1. ``schedule`` given (``"all"``, ``"prompt"``, ``"first:N"``, ``"decay:G"`` or a Schedule): used as given;
    2. ``schedule=None`` and ``heads`` is a profile that records the schedule it was chosen with
       (``profile.provenance["schedule"]``, e.g. ``pasta-lens profile --select-by metric --schedules ...``):
       that one, so a profile is used the way its validation numbers were measured;
    3. otherwise ``"all"`` (every prompt and generated token, as the paper).

    Example:
        >>> resolve_schedule({20: [0]})                        # Schedule(kind='all', ...)
        >>> resolve_schedule(load_profile("smollm2-135m-instruct"))   # its recorded 'prompt'
        >>> resolve_schedule(profile, "all")                   # the paper's, whatever the profile says
    """
    if schedule is not None:
        return Schedule.parse(schedule)
    provenance = getattr(heads, "provenance", None) if not isinstance(heads, Mapping) else None
    recorded = provenance.get("schedule") if isinstance(provenance, Mapping) else None
    return Schedule.parse(recorded)


def _alphas(heads: tuple[Head, ...], alpha: AlphaSpec) -> dict[Head, float]:
    if isinstance(alpha, Mapping):
        given = {(int(k[0]), int(k[1])): v for k, v in alpha.items()}
        missing, extra = set(heads) - set(given), set(given) - set(heads)
        if missing or extra:
            raise ValueError(f"A per-head alpha mapping must cover exactly the steered heads; missing "
                             f"{sorted(missing)}, not steered {sorted(extra)}.")
    else:
        given = {h: alpha for h in heads}
    return {head: check_alpha(a, head) for head, a in given.items()}


def check_scale_position(scale_position: str) -> ScalePosition:
    """``scale_position`` itself, after checking it is ``"exclude"`` or ``"include"``."""
    if scale_position not in ("exclude", "include"):
        raise ValueError(f"scale_position must be 'exclude' or 'include'; got {scale_position!r}.")
    return scale_position  # type: ignore[return-value]


def layer_plan(pairs: tuple[Head, ...], alpha: AlphaSpec) -> list[tuple[int, list[int], list[float]]]:
    """``(layer, heads, alphas)`` per steered layer, sorted by layer: what one layer's steering needs (alphas
    checked, a per-head mapping matched to the heads). Shared by :func:`pasta_hooks`, :func:`scores_hooks` and
    :mod:`pasta_lens.hf_engine`."""
    alphas = _alphas(pairs, alpha)
    return [(layer, hs, [alphas[(layer, h)] for h in hs]) for layer, hs in group_by_layer(pairs).items()]


def key_mask_of(emphasis: Union[Emphasis, Tensor]) -> Bool[Tensor, "batch pos"]:
    """The bool key mask ``[batch, prompt]`` of an :class:`~pasta_lens.spans.Emphasis` (or a bare mask), checked.

    Raises:
        ValueError: not an Emphasis or a 2-D bool tensor, or no token is emphasised.
    """
    mask = emphasis.key_mask if isinstance(emphasis, Emphasis) else emphasis
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.ndim != 2:
        raise ValueError("emphasis must be an Emphasis (from emphasize(...)) or a bool key mask "
                         f"[batch, pos]; got {type(mask).__name__} "
                         f"{getattr(mask, 'dtype', '')} {tuple(getattr(mask, 'shape', ()))}.")
    if not bool(mask.any()):
        raise ValueError("The key mask emphasises no token; mark a span with emphasize(model, '... *span* ...').")
    return mask


_key_mask = key_mask_of  # the name the hook factories here and hf_engine use


def key_weights(
    key_mask: Bool[Tensor, "batch prompt"],
    n_keys: int,
    alpha: Float[Tensor, "head"],
    scale_position: ScalePosition = "exclude",
) -> Float[Tensor, "batch head 1 key"]:
    """The multiplicative weight of every key for each steered head (1 = untouched).

    Prompt keys (the first ``key_mask.shape[1]`` positions) get ``alpha`` outside the span ("exclude") or
    inside it ("include"); keys beyond the prompt (generated tokens) keep weight 1.
    """
    batch, n_prompt = key_mask.shape
    if n_keys < n_prompt:
        raise ValueError(f"The attention pattern has {n_keys} keys but the emphasis covers {n_prompt} prompt "
                         "positions: run the model on emphasis.tokens (or a continuation of them).")
    scaled = ~key_mask if scale_position == "exclude" else key_mask
    w = torch.ones(batch, alpha.shape[0], 1, n_keys, dtype=torch.float32, device=key_mask.device)
    prompt = torch.where(rearrange(scaled, "batch key -> batch 1 1 key"),
                         rearrange(alpha, "head -> 1 head 1 1"), 1.0)
    w[..., :n_prompt] = prompt
    return w


def rescale_rows(
    pattern: Float[Tensor, "batch head query key"],
    weights: Float[Tensor, "batch head 1 key"],
) -> Float[Tensor, "batch head query key"]:
    """``A * w / sum(A * w)`` per row, in fp32, cast back to the pattern's dtype."""
    scaled = pattern.float() * weights
    scaled = scaled / scaled.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return scaled.to(pattern.dtype)


ScheduleSpec = Union[str, Schedule, None]
"""When to steer: ``"all"`` (default), ``"prompt"``, ``"first:N"``, ``"decay:G"`` or a :class:`Schedule`."""


def scheduled_rescale(pattern: Float[Tensor, "batch head query key"], weights: Float[Tensor, "batch head 1 key"],
                      schedule: Schedule, n_prompt: int) -> Float[Tensor, "batch head query key"]:
    """:func:`rescale_rows` under a schedule: rows with exponent 0 are returned untouched (bit-identical).

    ``pattern`` holds the steered heads only; its query rows are absolute positions ``K - Q .. K - 1``.
    """
    if schedule.is_all:
        return rescale_rows(pattern, weights)
    positions = query_positions(pattern.shape[-2], pattern.shape[-1], device=pattern.device)
    exponents = schedule.exponents(positions, n_prompt)
    active = exponents > 0
    if not bool(active.any()):
        return pattern
    steered = rescale_rows(pattern, scheduled_weights(weights, exponents))
    return torch.where(active[None, None, :, None], steered, pattern)


def _layer_mask(layer: int, heads: list[int], act: Tensor, key_mask: Tensor) -> Tensor:
    """The key mask on ``act``'s device (at call time, never cached), after checking heads and batch against it."""
    batch, n_heads = act.shape[0], act.shape[1]
    if max(heads) >= n_heads:
        raise ValueError(f"Layer {layer} has {n_heads} heads; cannot steer head {max(heads)}.")
    mask = key_mask.to(act.device)
    if mask.shape[0] not in (1, batch):
        raise ValueError(f"The key mask has {mask.shape[0]} rows but the batch has {batch}: build the "
                         "emphasis from the same prompts you run (or one row to broadcast).")
    return mask


def may_edit_in_place(act: Tensor, hook: Any) -> bool:
    """Whether a hook may overwrite ``act`` in place instead of returning an edited copy.

    Only when nobody else can see the difference: no autograd graph records ``act`` (a gradient through the
    pattern, e.g. attribution profiling, needs the softmax output unchanged), ``act`` is fp32 (the edit's own
    arithmetic dtype, so both paths compute the same numbers), and this hook is the only forward hook on its
    hook point, so no cache or user hook holds a reference to the unedited tensor (``run_with_cache`` adds its
    own hook, which turns this off). The in-place path saves the copy of the layer's whole pattern that
    ``index_copy`` makes, which is what costs on long prompts.
    """
    hooks = getattr(hook, "fwd_hooks", None)
    return (act.dtype == torch.float32 and not (act.requires_grad and torch.is_grad_enabled())
            and hooks is not None and len(hooks) == 1)


def _active_rows(schedule: Schedule, n_queries: int, n_keys: int, n_prompt: int,
                 device: torch.device) -> Optional[tuple[int, int]]:
    """The steered query rows ``[lo, hi)`` when the schedule steers a contiguous block of rows at full strength
    (``all``, ``prompt``, ``first:N``), else None (``decay:G``: per-row strengths, edited out of place)."""
    if schedule.is_all:
        return 0, n_queries
    exponents = schedule.exponents(query_positions(n_queries, n_keys, device=device), n_prompt)
    if not bool(((exponents == 0) | (exponents == 1)).all()):
        return None
    rows = torch.nonzero(exponents).flatten().tolist()
    if not rows:
        return 0, 0
    lo, hi = rows[0], rows[-1] + 1
    return (lo, hi) if hi - lo == len(rows) else None


def rescale_rows_(pattern: Float[Tensor, "batch head query key"], heads: list[int],
                  weights: Float[Tensor, "batch steered 1 key"], rows: tuple[int, int]) -> None:
    """In place: :func:`rescale_rows` on each of ``heads``' query rows ``rows`` of an fp32 pattern (same
    arithmetic, so the same numbers); nothing else of ``pattern`` is touched."""
    lo, hi = rows
    for i, head in enumerate(heads):
        block = pattern[:, head, lo:hi]
        block.mul_(weights[:, i])
        block.div_(block.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny))


def _layer_hook(layer: int, heads: list[int], alphas: list[float], key_mask: Tensor,
                scale_position: ScalePosition, schedule: Schedule = Schedule()) -> HookFn:
    def hook(pattern: Float[Tensor, "batch head query key"], hook: Any) -> Float[Tensor, "batch head query key"]:
        mask = _layer_mask(layer, heads, pattern, key_mask)
        # Built from the activation's own device at call time (never cached): safe across devices.
        alpha = torch.tensor(alphas, dtype=torch.float32, device=pattern.device)
        weights = key_weights(mask, pattern.shape[-1], alpha, scale_position)
        if may_edit_in_place(pattern, hook):
            rows = _active_rows(schedule, pattern.shape[-2], pattern.shape[-1], mask.shape[1], pattern.device)
            if rows is not None:
                rescale_rows_(pattern, heads, weights, rows)
                return pattern
        idx = torch.tensor(heads, device=pattern.device)
        steered = scheduled_rescale(pattern.index_select(1, idx), weights, schedule, mask.shape[1])
        # Out of place when anyone else could see the difference: a cached or user-held reference to the
        # unsteered pattern stays unsteered, and autograd (gradient attribution) differentiates through the edit.
        return pattern.index_copy(1, idx, steered)

    return hook


def pasta_hooks(
    heads: HeadSpec,
    emphasis: Union[Emphasis, Bool[Tensor, "batch pos"]],
    alpha: Optional[AlphaSpec] = None,
    scale_position: ScalePosition = "exclude",
    *,
    model: Any = None,
    allow_transfer: bool = False,
    schedule: Optional[ScheduleSpec] = None,
    where: Where = "pattern",
) -> list[tuple[str, HookFn]]:
    """TransformerLens forward hooks that apply PASTA to ``heads``, one hook per steered layer.

    Args:
        heads: ``{layer: [heads]}``, ``[(layer, head), ...]`` or a ``HeadProfile``.
        emphasis: an :class:`~pasta_lens.spans.Emphasis` or a bool key mask ``[batch, pos]`` over the prompt
            (True = emphasised). One row broadcasts over any batch.
        alpha: the factor on non-emphasised prompt keys, in [``ALPHA_MIN``, 1]; or a per-head mapping. None
            (default): a profile's own per-head alphas (``head_alphas``) when it has them, else 0.01
            (:func:`resolve_alpha`).
        scale_position: ``"exclude"`` (default, the paper's: scale keys outside the span) or ``"include"``
            (scale the span's keys: suppress it).
        model: the model the hooks are for. When given, the heads are checked against it with
            :func:`resolve_heads`. A ``HeadProfile`` *requires* it: a profile made on another model must not be
            used silently (or call ``steer(model, profile, em)``, or pass ``profile.heads`` to skip the check on
            purpose).
        allow_transfer: with ``model=``, accept a profile made on other weights of the same shape.
        schedule: which query rows are steered and how strongly (:class:`~pasta_lens.schedule.Schedule`):
            ``"all"`` (the paper's), ``"prompt"`` (the prefill only), ``"first:N"`` (the prompt and the
            first N generated tokens' rows), ``"decay:G"`` (generated token t's row uses alpha ** (G ** t)).
            Unsteered rows are bit-identical to the unsteered run. None (default): a profile's recorded
            schedule (``provenance["schedule"]``), anything else ``"all"`` (:func:`resolve_schedule`).
        where: ``"pattern"`` (default) rescales and renormalises ``hook_pattern``; ``"scores"`` adds
            ``log(alpha)`` to the same keys on ``hook_attn_scores``, and the model's own softmax renormalises:
            the same steering (to float rounding) at the cost of one addition per score, which matters on long
            prompts (see :func:`scores_hooks`); schedules other than
            ``"all"`` are for ``"pattern"`` only.

    The mask is aligned with key positions: key ``j`` of the pattern is position ``j`` of ``emphasis.tokens``.
    Run the model on exactly those tokens or a continuation of them (teacher-forced answer tokens, generated
    tokens), whose keys keep weight 1. A pattern with fewer keys than the mask is an error; that the run's tokens
    really start with ``emphasis.tokens`` cannot be seen from the pattern: :func:`steer` checks it.

    Returns:
        ``[(f"blocks.{L}.attn.hook_pattern", hook_fn), ...]`` (or ``hook_attn_scores``), sorted by layer.

    Raises:
        ValueError: bad heads, alpha or mask; a ``HeadProfile`` without ``model=``; a profile for another model.

    Example:
        >>> em = emphasize(model, "Maria is a nurse. *Answer in JSON.*", chat=True)
        >>> logits = model.run_with_hooks(em.tokens, fwd_hooks=pasta_hooks({20: [0, 3]}, em))
        >>> hooks = pasta_hooks(load_profile("smollm2-135m-instruct"), em, model=model)  # checked first
    """
    check_scale_position(scale_position)
    alpha, schedule = resolve_alpha(heads, alpha), resolve_schedule(heads, schedule)
    if model is not None:
        pairs = resolve_heads(model, heads, allow_transfer=allow_transfer)
    elif callable(getattr(heads, "validate_for", None)):
        raise ValueError("pasta_hooks got a profile but no model to check it against (a profile made on another "
                         "model would be used silently): call pasta_hooks(profile, em, model=model), or use "
                         "steer(model, profile, em); pass profile.heads to skip the check on purpose.")
    else:
        pairs = normalize_heads(heads)
    if where == "scores":
        if Schedule.parse(schedule) != Schedule.parse("all"):
            raise ValueError("schedule= is applied on hook_pattern: use where='pattern' (the default) with a "
                             f"schedule other than 'all' (got {schedule!r}).")
        return scores_hooks(pairs, emphasis, alpha, scale_position)
    if where != "pattern":
        raise ValueError(f"where must be 'pattern' (edit hook_pattern) or 'scores' (edit hook_attn_scores); "
                         f"got {where!r}.")
    key_mask = _key_mask(emphasis)
    sched = Schedule.parse(schedule)
    return [(pattern_hook_name(layer), _layer_hook(layer, hs, alphas, key_mask, scale_position, sched))
            for layer, hs, alphas in layer_plan(pairs, alpha)]


TOKENS_HOOK = "embed.hook_in"
"""The bridge's hook on the embedding's input: it sees the token ids of every forward pass."""

EMBED_HOOK = "hook_embed"
"""HookedTransformer's hook on the token embeddings ``model.embed(tokens)`` (it has no hook on the ids)."""


def _tokens_check_hook(emphasis: Emphasis, embed: Optional[Callable[[Tensor], Tensor]] = None) -> HookFn:
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
            raise ValueError(f"The steered run's tokens ({tuple(act.shape[:2])}) do not start with the "
                             f"emphasis' {n_prompt} tokens, so the key mask would mark the wrong positions: run "
                             "the model on emphasis.tokens (or a continuation of them), with the same BOS "
                             "(emphasis.prepend_bos) and padding.")
        return act

    return hook


def _tokens_check(model: Any, emphasis: Any) -> list[tuple[str, HookFn]]:
    """The token check for ``model``'s kind of hook points (none for a bare key mask or an unknown model)."""
    if not isinstance(emphasis, Emphasis):
        return []
    points = getattr(model, "hook_dict", {})
    if TOKENS_HOOK in points:
        return [(TOKENS_HOOK, _tokens_check_hook(emphasis))]
    if EMBED_HOOK in points and callable(getattr(model, "embed", None)):
        return [(EMBED_HOOK, _tokens_check_hook(emphasis, model.embed))]
    return []


@contextmanager
def steer(
    model: Any,
    heads: HeadSpec,
    emphasis: Union[Emphasis, Bool[Tensor, "batch pos"]],
    alpha: Optional[AlphaSpec] = None,
    scale_position: ScalePosition = "exclude",
    *,
    allow_transfer: bool = False,
    schedule: Optional[ScheduleSpec] = None,
    where: Where = "pattern",
    method: str = "pasta",
    method_params: Optional[Mapping[str, Any]] = None,
) -> Iterator[Any]:
    """Steer ``model`` inside a ``with`` block; a thin wrapper over ``model.hooks(fwd_hooks=...)``.

    The heads are checked against ``model`` with :func:`resolve_heads` (a ``HeadProfile`` against the model's
    shape and weights, unless ``allow_transfer=True``, e.g. a LLaMA profile used on Vicuna) before any hook is
    added. With an :class:`~pasta_lens.spans.Emphasis`, every forward pass is also checked to run on its tokens
    (or a continuation of them), through ``embed.hook_in`` (bridge) or ``hook_embed`` (HookedTransformer); a bare key mask is
    trusted to match. ``schedule`` says which query rows are steered (see :func:`pasta_hooks`; e.g.
    ``"prompt"`` steers the prefill and no generated token; None, the default, is a profile's recorded
    schedule, else ``"all"``: :func:`resolve_schedule`). On exit, normal or by exception, exactly the hooks
    added here are removed. ``where`` is as in :func:`pasta_hooks`. ``alpha=None`` (default) steers a profile
    with per-head alphas (``profile.head_alphas``) at those, anything else at 0.01; an explicit ``alpha`` always
    wins (:func:`resolve_alpha`).

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

        _, hooks = steering_hooks(model, heads, emphasis, method, method_params, schedule=schedule,
                                  allow_transfer=allow_transfer, alpha=alpha, scale_position=scale_position,
                                  where=where)
        with model.hooks(fwd_hooks=_tokens_check(model, emphasis) + hooks):
            yield model
        return
    alpha, schedule = resolve_alpha(heads, alpha), resolve_schedule(heads, schedule)
    pairs = resolve_heads(model, heads, allow_transfer=allow_transfer)
    hooks = pasta_hooks(pairs, emphasis, alpha, scale_position, schedule=schedule, where=where)
    hooks = _tokens_check(model, emphasis) + hooks
    with model.hooks(fwd_hooks=hooks):
        yield model


# --- the additive variant on hook_attn_scores --------------------------------------------------------------

def scores_hook_name(layer: int) -> str:
    """The pre-softmax hook point used by the additive variant (``where="scores"``)."""
    return f"blocks.{layer}.attn.hook_attn_scores"


def key_bias(
    key_mask: Bool[Tensor, "batch prompt"],
    n_keys: int,
    n_heads: int,
    heads: list[int],
    log_alpha: Float[Tensor, "steered"],
    scale_position: ScalePosition = "exclude",
) -> Float[Tensor, "batch head 1 key"]:
    """``log(w)`` of :func:`key_weights` for *all* ``n_heads`` heads of a layer: 0 for unsteered heads.

    Adding it to the pre-softmax scores is PASTA: ``softmax(s + log w) = A * w / sum(A * w)``. Zeros leave the
    unsteered heads bit-identical (``x + 0.0 == x``, also for masked ``-inf`` scores).
    """
    batch, n_prompt = key_mask.shape
    if n_keys < n_prompt:
        raise ValueError(f"The attention scores have {n_keys} keys but the emphasis covers {n_prompt} prompt "
                         "positions: run the model on emphasis.tokens (or a continuation of them).")
    scaled = ~key_mask if scale_position == "exclude" else key_mask
    per_head = torch.zeros(n_heads, dtype=torch.float32, device=key_mask.device)
    per_head[torch.tensor(heads, device=key_mask.device)] = log_alpha
    bias = torch.zeros(batch, n_heads, 1, n_keys, dtype=torch.float32, device=key_mask.device)
    bias[..., :n_prompt] = scaled[:, None, None, :] * per_head[None, :, None, None]
    return bias


def _scores_layer_hook(layer: int, heads: list[int], alphas: list[float], key_mask: Tensor,
                       scale_position: ScalePosition) -> HookFn:
    def hook(scores: Float[Tensor, "batch head query key"], hook: Any) -> Float[Tensor, "batch head query key"]:
        mask = _layer_mask(layer, heads, scores, key_mask)
        n_heads = scores.shape[1]
        log_alpha = torch.tensor(alphas, dtype=torch.float32, device=scores.device).log()
        bias = key_bias(mask, scores.shape[-1], n_heads, heads, log_alpha, scale_position)
        if may_edit_in_place(scores, hook):  # only the steered heads' slices, the same additions
            for head in heads:
                scores[:, head].add_(bias[:, head])
            return scores
        # One broadcast addition, out of place (a cached reference to the unsteered scores stays unsteered;
        # autograd works): no [steered, query, key] intermediates and no renormalisation pass.
        return scores + bias.to(scores.dtype)

    return hook


def scores_hooks(
    heads: HeadSpec,
    emphasis: Union[Emphasis, Bool[Tensor, "batch pos"]],
    alpha: Optional[AlphaSpec] = None,
    scale_position: ScalePosition = "exclude",
) -> list[tuple[str, HookFn]]:
    """PASTA as an additive ``log(alpha)`` on ``blocks.{L}.attn.hook_attn_scores``: ``where="scores"``.

    The official code's form: the steered heads' pre-softmax scores of the scaled prompt keys get ``log(alpha)``
    and the model's softmax renormalises. Same arguments and checks as :func:`pasta_hooks`; the result equals
    the ``hook_pattern`` variant to float rounding (tests/test_steering_scores.py). The difference is cost: the
    pattern edit gathers the steered heads, rescales, sums and divides every row and scatters back (several
    passes over ``[batch, steered, query, key]``), the additive edit is one broadcast addition over the layer's
    scores, which is what counts for long prompts (prefill cost grows with T x T x heads).

    What you see differs: with this variant every hook on (and cache of) ``hook_pattern`` shows the steered
    pattern, while hooks of yours on ``hook_attn_scores`` see unsteered or steered scores depending on order.

    Example:
        >>> logits = model.run_with_hooks(em.tokens, fwd_hooks=scores_hooks({20: [0, 3]}, em))
    """
    check_scale_position(scale_position)
    key_mask = _key_mask(emphasis)
    return [(scores_hook_name(layer), _scores_layer_hook(layer, hs, alphas, key_mask, scale_position))
            for layer, hs, alphas in layer_plan(normalize_heads(heads), resolve_alpha(heads, alpha))]
